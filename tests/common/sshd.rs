//! A real OpenSSH server for the tests: its own host key, one client key for root,
//! listening on 127.0.0.1 (inside a test namespace when given).

use super::{kill, run, spawn_logged, wait_text};
use std::net::{TcpListener, UdpSocket};
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
}

pub fn keygen(path: &Path) {
    let o = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "awsvpc-test", "-f"])
        .arg(path));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    pub fn start(dir: &Path, ns: Option<&str>, extra_config: &str) -> Sshd {
        let port = if ns.is_some() { 2222 } else { free_tcp_port() };
        let (host_key, client_key) = (dir.join("host_key"), dir.join("client_key"));
        keygen(&host_key);
        keygen(&client_key);
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.join("authorized_keys"),
        )
        .unwrap();
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

    /// Kills the listener and every session process it started (its descendants: the
    /// relay too, as when the collector's sshd dies).
    pub fn kill_all(&mut self) {
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
