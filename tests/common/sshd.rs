//! A real OpenSSH server for the tests: its own host key, one client key for root,
//! listening on 127.0.0.1 (inside a test namespace when given). Or, as cloud-init would set
//! up an ephemeral collector, a given host key and authorized_keys ([`Sshd::start_with`]).

use super::{kill, run, spawn_logged, wait_text};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// A real sshd with its own host key, accepting one client key for root, on 127.0.0.1 (in a
/// namespace when given).
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    /// An empty client config, so the machine's ~/.ssh/config cannot change the test.
    pub ssh_config: PathBuf,
    /// sshd's own log (`-e`).
    pub log: PathBuf,
}

pub fn keygen(path: &Path) {
    let o = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "awsvpc-test", "-f"])
        .arg(path));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A collector without python3: an unprivileged user whose shell is plain sh (no rc files).
/// Returns its name and the sshd_config line that gives its sessions a PATH with a shell
/// but no python (a folder made under `dir`).
pub fn nopython_user(dir: &Path) -> (&'static str, String) {
    let user = "awsvpc-nopython";
    if !run(Command::new("id").arg(user)).status.success() {
        let o = run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/bin/sh",
            user,
        ]));
        assert!(
            o.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Not locked: sshd without PAM refuses locked accounts even for key logins.
    assert!(run(Command::new("usermod").args(["-p", "*", user]))
        .status
        .success());
    let bin_dir = dir.join("nopython");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin_dir.join("sh")).unwrap();
    (user, format!("SetEnv PATH={}", bin_dir.display()))
}

/// Lets an unprivileged user's sshd session read the authorized_keys in `dir` (it reads
/// them as that user).
pub fn share_authorized_keys(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.to_path_buf(), dir.join("authorized_keys")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[allow(unused_imports)] // not every test binary uses both
pub use super::ports::{free_tcp_port, free_udp_port};

impl Sshd {
    pub fn start(dir: &Path, ns: Option<&str>, extra_config: &str) -> Sshd {
        let (host_key, client_key) = (dir.join("host_key"), dir.join("client_key"));
        keygen(&host_key);
        keygen(&client_key);
        let authorized = std::fs::read_to_string(client_key.with_extension("pub")).unwrap();
        Self::launch(
            dir,
            ns,
            None,
            extra_config,
            &host_key,
            &authorized,
            client_key,
        )
    }

    /// An sshd with the host key `host_key_pem` (OpenSSH PEM) and `authorized_keys`, as
    /// cloud-init's `ssh_keys` and `ssh_authorized_keys` would install them, on `port`
    /// (default: a free one, or 2222 in a namespace). `client_key` is then empty: the
    /// client's key is the caller's.
    pub fn start_with(
        dir: &Path,
        ns: Option<&str>,
        port: Option<u16>,
        extra_config: &str,
        host_key_pem: &str,
        authorized_keys: &str,
    ) -> Sshd {
        use std::os::unix::fs::OpenOptionsExt;
        let host_key = dir.join("host_key");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&host_key)
            .unwrap();
        std::io::Write::write_all(&mut f, host_key_pem.as_bytes()).unwrap();
        drop(f);
        let public = run(Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&host_key));
        assert!(
            public.status.success(),
            "{}",
            String::from_utf8_lossy(&public.stderr)
        );
        std::fs::write(host_key.with_extension("pub"), &public.stdout).unwrap();
        Self::launch(
            dir,
            ns,
            port,
            extra_config,
            &host_key,
            authorized_keys,
            PathBuf::new(),
        )
    }

    fn launch(
        dir: &Path,
        ns: Option<&str>,
        port: Option<u16>,
        extra_config: &str,
        host_key: &Path,
        authorized_keys: &str,
        client_key: PathBuf,
    ) -> Sshd {
        let port = port.unwrap_or_else(|| if ns.is_some() { 2222 } else { free_tcp_port() });
        std::fs::write(dir.join("authorized_keys"), authorized_keys).unwrap();
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
        )
        .unwrap();
        let ssh_config = dir.join("ssh_config");
        std::fs::write(&ssh_config, "").unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PidFile {}\nLogLevel INFO\n{extra_config}\n",
                host_key.display(),
                dir.join("authorized_keys").display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        // The privilege-separation directory Debian's sshd expects.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut c = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "/usr/sbin/sshd"]);
                c
            }
            None => Command::new("/usr/sbin/sshd"),
        };
        c.args(["-D", "-e", "-f"]).arg(&config);
        let log = dir.join("sshd.log");
        let child = spawn_logged(c, &log);
        wait_text(&log, "Server listening on 127.0.0.1");
        Sshd {
            child,
            port,
            client_key,
            known_hosts,
            ssh_config,
            log,
        }
    }

    /// The awsvpc arguments that reach this sshd.
    pub fn args(&self) -> Vec<String> {
        [
            "--collector",
            "host",
            "--connect",
            "ssh",
            "--ssh-host",
            "127.0.0.1",
            "--ssh-user",
            "root",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--ssh-port".into(),
            self.port.to_string(),
            "--ssh-key".into(),
            self.client_key.display().to_string(),
            "--ssh-known-hosts".into(),
            self.known_hosts.display().to_string(),
        ])
        .collect()
    }

    /// Kills every session process the listener started (its descendants: the relay too),
    /// as when a session dies on the collector; the listener keeps accepting.
    pub fn kill_sessions(&self) -> usize {
        let all = self.sessions();
        for p in &all {
            kill(*p, libc::SIGKILL);
        }
        all.len()
    }

    /// The listener's descendants: session processes and what they run.
    pub fn sessions(&self) -> Vec<u32> {
        fn descendants(pid: u32, out: &mut Vec<u32>) {
            let o = run(Command::new("pgrep").args(["-P", &pid.to_string()]));
            for c in String::from_utf8_lossy(&o.stdout).lines() {
                if let Ok(c) = c.trim().parse() {
                    descendants(c, out);
                    out.push(c);
                }
            }
        }
        let mut all = Vec::new();
        descendants(self.child.id(), &mut all);
        all
    }

    /// Kills the listener and every session process it started (its descendants: the
    /// relay too, as when the collector's sshd dies).
    pub fn kill_all(&mut self) {
        let all = self.sessions();
        // `ip netns exec` execs sshd, so the child is sshd itself.
        kill(self.child.id(), libc::SIGKILL);
        for p in all {
            kill(p, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_all();
    }
}
