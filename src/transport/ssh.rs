//! SSH to an existing collector with the system `ssh` client.
//!
//! Why the system client and not an SSH library for this mode: a long-lived collector is
//! reached the way the user already reaches it, so `~/.ssh/config` must hold in full
//! (Include, Match, ProxyJump, ProxyCommand, certificates, FIDO keys, the agent), which only
//! OpenSSH itself implements; Windows 10+ and macOS ship the same client. awsvpc runs it
//! non-interactively (BatchMode) with strict host key checking: an unknown or changed host
//! key is refused with its fingerprint, never learned.
//!
//! The relay's source goes to the remote `python3 -` on stdin; its stream comes back on
//! stdout; ssh's stderr goes to the log (never to Wireshark) and explains failures.
//!
//! The same relay client ([`crate::transport::relay_client`]) also reaches an ephemeral
//! collector awsvpc launched itself, with an in-process SSH client and a pinned host key
//! ([`SshCollector::connect_pinned`], `super::pinned`): only how a connection is made and
//! how its failure is explained differ (each an [`SshSession`] of one [`SshLink`]); the relay, the stream, loss
//! detection and the reconnect are shared.
//!
//! ssh's stdout is read by the receive thread straight into the decoder's buffer where the
//! OS can wait on a pipe with a deadline ([`crate::sys::TimedPipe`]: Unix), so what waits
//! for it is the 1 MiB pipe and the decoder's buffer. Elsewhere (Windows) a thread of its
//! own reads it into [`PIECES`] × [`PIECE`] bytes, and the decoder decodes from each piece
//! itself (it adopts the piece as its buffer, giving its own back).

use crate::log_info;
use crate::relay::remote::remote_command;
use crate::relay::{source_for, RelayOptions};
use crate::transport::inflow::Incoming;
use crate::transport::relay_client::{Link, RelayClient};
use crate::transport::ssh_link::{no_python3, SshLink, SshSession};
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::transport::relay_client::START_LIMIT;
const CONNECT_TIMEOUT_S: u32 = 10;
/// Where ssh's stdout is read on a thread, it waits for the receive thread in at most this
/// many pieces of [`PIECE`] bytes (512 KiB in all): the reader thread stops reading when
/// all are full, the pipe fills and ssh stops taking channel data.
pub const PIECES: usize = 4;
pub const PIECE: usize = 128 << 10;
/// After a small read of ssh's stdout, the reader lets this much more gather in the
/// pipe: reading every ssh write as it came doubled awsvpc's CPU per packet at 128-byte
/// frames (benches/ssh_throughput.sh). The relay waits as long after a small batch; the
/// timestamps are the kernel's, so this costs no accuracy, at most 1 ms of display delay.
const GATHER: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Default)]
pub struct SshSettings {
    /// A host name, address or `~/.ssh/config` alias.
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key: Option<PathBuf>,
    /// Replaces the user's and system known_hosts files.
    pub known_hosts: Option<PathBuf>,
    /// `ssh -F`: another config file (labs and tests; `AWSVPC_SSH_CONFIG`).
    pub config: Option<PathBuf>,
    /// The ssh program (`AWSVPC_SSH`, default the system's OpenSSH client).
    pub program: String,
    /// The host is an instance captured on itself (`crate::plan::onhost`), not a collector: what
    /// the sentences call it.
    pub on_host: bool,
}

impl SshSettings {
    fn base(&self) -> Command {
        // The system OpenSSH client (Windows' own in System32\OpenSSH): `crate::sys`.
        let program = if self.program.is_empty() {
            crate::sys::dirs::system_ssh()
        } else {
            self.program.clone().into()
        };
        let mut c = Command::new(program);
        if let Some(f) = &self.config {
            c.arg("-F").arg(f);
        }
        // Non-interactive: no prompt can reach the user, so none may be asked. Strict: an
        // unknown host is refused, not learned.
        c.args([
            "-T",
            "-x",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .args(["-o", &format!("ConnectTimeout={CONNECT_TIMEOUT_S}")])
        .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"])
        .args(["-o", "LogLevel=ERROR"]);
        if let Some(k) = &self.known_hosts {
            c.arg("-o")
                .arg(format!(
                    "UserKnownHostsFile={}",
                    option_value(&k.to_string_lossy())
                ))
                .args(["-o", "GlobalKnownHostsFile=/dev/null"]);
        }
        if let Some(p) = self.port {
            c.arg("-p").arg(p.to_string());
        }
        if let Some(u) = &self.user {
            c.arg("-l").arg(u);
        }
        if let Some(k) = &self.key {
            // ssh expands %-tokens in identity file names, those of -i too.
            c.arg("-i")
                .arg(k.to_string_lossy().replace('%', "%%"))
                .args(["-o", "IdentitiesOnly=yes"]);
        }
        c
    }

    /// The effective host name, port, user and known_hosts files after `~/.ssh/config`
    /// (`ssh -G`, which makes no connection).
    fn effective(&self) -> Effective {
        let mut e = Effective {
            hostname: self.host.clone(),
            port: self.port.unwrap_or(22),
            user: self.user.clone().unwrap_or_default(),
            known_hosts: self
                .known_hosts
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.ssh/known_hosts".into()),
        };
        let mut c = self.base();
        c.arg("-G").arg("--").arg(&self.host);
        if let Ok(o) = c.stdin(Stdio::null()).stderr(Stdio::null()).output() {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                match line.split_once(' ') {
                    Some(("hostname", v)) => e.hostname = v.to_string(),
                    Some(("port", v)) => e.port = v.parse().unwrap_or(e.port),
                    Some(("user", v)) => e.user = v.to_string(),
                    // ssh -G prints a list of files space-separated; the user's own file
                    // name may hold spaces, so it is kept as given.
                    Some(("userknownhostsfile", v)) if self.known_hosts.is_none() => {
                        e.known_hosts = v.split(' ').next().unwrap_or(v).to_string()
                    }
                    _ => {}
                }
            }
        }
        e
    }
}

/// A file name as the value of `ssh -o Key=value`: ssh splits the value into words (a
/// known_hosts option takes several files) and expands %-tokens, so it is double-quoted
/// with `\` and `"` escaped and `%` doubled.
fn option_value(path: &str) -> String {
    let mut v = String::with_capacity(path.len() + 2);
    v.push('"');
    for c in path.chars() {
        match c {
            '\\' | '"' => {
                v.push('\\');
                v.push(c);
            }
            '%' => v.push_str("%%"),
            c => v.push(c),
        }
    }
    v.push('"');
    v
}

#[derive(Debug, Clone)]
struct Effective {
    hostname: String,
    port: u16,
    user: String,
    known_hosts: String,
}

/// One ssh process running the relay.
struct Process {
    child: Child,
    stdout: Incoming,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    spawned: Instant,
}

impl Process {
    fn spawn(settings: &SshSettings, relay: &RelayOptions) -> Result<Process, String> {
        let remote = remote_command(relay);
        let mut c = settings.base();
        c.arg("--")
            .arg(&settings.host)
            .arg(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        log_info!("running {c:?}");
        let mut child = c.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                format!(
                    "The ssh client is not installed or not on PATH; {} (or set AWSVPC_SSH to its path).",
                    crate::sys::dirs::SSH_INSTALL_HINT
                )
            } else {
                format!("Cannot start ssh: {e}.")
            }
        })?;
        // If awsvpc is killed, its guardian ends this ssh.
        crate::sys::guardian::watch_child(child.id());
        crate::sys::bind_child(&child);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr.clone();
        let err = child.stderr.take().expect("piped");
        let stderr_reader = std::thread::Builder::new()
            .name("ssh-stderr".into())
            .spawn(move || {
                for line in io::BufReader::new(err).lines().map_while(Result::ok) {
                    let line = line.trim_end().to_string();
                    if line.is_empty() {
                        continue;
                    }
                    log_info!("ssh: {line}");
                    let mut t = tail.lock().unwrap();
                    if t.len() == 40 {
                        t.remove(0);
                    }
                    t.push(line);
                }
            })
            .ok();
        // From a thread: with its on-host part the relay is over 16 KB, more than some pipes
        // hold before ssh reads. A failure (ssh already gone) is explained by ssh's stderr.
        if let Some(mut stdin) = child.stdin.take() {
            let source = source_for(relay).into_owned();
            let _ = std::thread::Builder::new()
                .name("ssh-stdin".into())
                .spawn(move || {
                    let _ = stdin.write_all(source.as_bytes());
                });
        }
        let stdout = child.stdout.take().expect("piped");
        // A 1 MiB pipe absorbs the reader's scheduling delays (on a busy machine,
        // milliseconds: 64 KiB is 0.4 ms at 1500-byte frames) instead of stalling ssh.
        // (A no-op where a pipe cannot grow: `crate::sys`.)
        crate::sys::widen_pipe(&stdout);
        let stdout = Incoming::child("ssh-stdout", stdout, PIECES, PIECE, GATHER)
            .map_err(|e| format!("Cannot start a thread to read ssh: {e}."))?;
        Ok(Process {
            child,
            stdout,
            stderr,
            stderr_reader,
            spawned: Instant::now(),
        })
    }

    /// Ends the process and collects its exit status and stderr.
    fn finish(mut self, kill: bool) -> (Option<ExitStatus>, Vec<String>) {
        if kill {
            let _ = self.child.kill();
        }
        let status = wait_timeout(&mut self.child, Duration::from_secs(5));
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        let lines = std::mem::take(&mut *self.stderr.lock().unwrap());
        (status, lines)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Closing our end makes sshd close the channel; the relay exits on its next write.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// The system ssh as an SSH session of the relay client's [`SshLink`].
impl SshSession for Process {
    type Settings = SshSettings;

    fn name(settings: &SshSettings) -> &str {
        &settings.host
    }

    fn spawn(settings: &SshSettings, relay: &RelayOptions, _again: bool) -> Result<Self, String> {
        Process::spawn(settings, relay)
    }

    fn incoming(&mut self) -> &mut Incoming {
        &mut self.stdout
    }

    fn start_clock(&self) -> Option<Instant> {
        Some(self.spawned)
    }

    fn no_answer(settings: &SshSettings) -> String {
        format!(
            "No answer from the collector {host} over SSH within {limit} s; check that it is reachable and that sshd answers (try: ssh {host} true).",
            host = settings.host,
            limit = START_LIMIT.as_secs()
        )
    }

    fn explain_end(self, settings: &SshSettings, unparsed: &str) -> String {
        let (status, lines) = self.finish(false);
        explain_failure(settings, status.and_then(|s| s.code()), &lines, unparsed)
    }

    fn kill(self) -> Option<String> {
        self.finish(true).1.pop()
    }
}

/// A remote collector reached over SSH: the system ssh ([`SshCollector::connect`]) or the
/// pinned in-process client ([`SshCollector::connect_pinned`]), behind one relay client.
pub type SshCollector = RelayClient<dyn Link>;

impl SshCollector {
    /// Connects and starts the relay, waiting (bounded) for its stream to begin.
    /// `None` when `stop` was set while connecting.
    pub fn connect(
        settings: SshSettings,
        relay: RelayOptions,
        status: &dyn Fn(&str),
        stop: &AtomicBool,
    ) -> Result<Option<Self>, String> {
        let link = SshLink::<Process>::new(settings);
        Self::open(Box::new(link), relay, status, stop)
    }
}

/// ssh's stderr and exit code as one sentence that names the problem and the fix.
fn explain_failure(
    settings: &SshSettings,
    code: Option<i32>,
    stderr: &[String],
    stdout_text: &str,
) -> String {
    let host = &settings.host;
    let all = stderr.join("\n");
    let e = settings.effective();
    let has = |s: &str| all.contains(s);
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("Host key for") && has("has changed") {
        let fp = fingerprint_in(&all).unwrap_or_else(|| "a different key".into());
        return format!(
            "The SSH host key of {host} does not match {} (it now presents {fp}): possibly an attack, so awsvpc refused to connect; if the collector was rebuilt, remove the old key with ssh-keygen -R '{}' and verify the new one.",
            e.known_hosts,
            known_hosts_name(&e.hostname, e.port)
        );
    }
    if has("Host key verification failed") || has("host key is known") {
        return match scan_host_key(&e.hostname, e.port) {
            Some((fp, line)) => format!(
                "The SSH host key of {host} is not in {} and awsvpc does not trust a host on first use; if {fp} is the collector's key, add this line to {}: {line}",
                e.known_hosts, e.known_hosts
            ),
            None => format!(
                "The SSH host key of {host} is not in {} and awsvpc does not trust a host on first use; connect once with ssh {host} to check and record its fingerprint.",
                e.known_hosts
            ),
        };
    }
    if has("Permission denied") {
        return format!(
            "{host} refused the SSH login as {} ({}); set --ssh-user and --ssh-key, or load the key into ssh-agent.",
            if e.user.is_empty() { "this user" } else { &e.user },
            all.lines().rev().find(|l| l.contains("Permission denied")).unwrap_or("").trim()
        );
    }
    if has("Connection refused") {
        return format!(
            "Nothing accepts SSH connections on {} port {} (connection refused); check --ssh-host and --ssh-port, and that sshd runs on the collector.",
            e.hostname, e.port
        );
    }
    if has("Could not resolve hostname") {
        return format!("The collector's host name {host} does not resolve; check --ssh-host.");
    }
    if has("timed out") || has("No route to host") || has("Network is unreachable") {
        return format!(
            "The collector {} port {} is unreachable over SSH ({}); check the address, its security group (TCP {} from this machine) and your VPN.",
            e.hostname,
            e.port,
            stderr.last().map(|s| s.trim()).unwrap_or("no answer"),
            e.port
        );
    }
    // An on-host relay needs root for its packet socket; `sudo -n` never prompts.
    if has("sudo: a password is required") || has("sudo: a terminal is required") {
        return format!(
            "On-host capture needs root on {host}, and its SSH user may not run sudo without a password; log in as root (User root in ~/.ssh/config), allow that user passwordless sudo for python3, or use --on-host-connect ssm."
        );
    }
    if has("sudo: not found") || has("sudo: command not found") {
        return format!(
            "On-host capture needs root on {host}, which has no sudo for its SSH user; log in as root (User root in ~/.ssh/config) or use --on-host-connect ssm."
        );
    }
    if code == Some(127) && (has("python3") || all.is_empty()) {
        if settings.on_host {
            return format!(
                "The instance {host} has no python3, which on-host capture runs there; install it (sudo dnf install python3, or sudo apt install python3-minimal)."
            );
        }
        return no_python3(&format!("The collector {host}"));
    }
    let said = stderr
        .last()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| (!stdout_text.is_empty()).then(|| stdout_text.to_string()))
        .unwrap_or_else(|| "no message".into());
    match code {
        Some(255) => format!("SSH to {host} failed: {}.", said.trim_end_matches('.')),
        Some(c) => format!(
            "The relay on {host} exited with status {c} before starting: {}.",
            said.trim_end_matches('.')
        ),
        None => format!(
            "The relay on {host} ended before starting: {}.",
            said.trim_end_matches('.')
        ),
    }
}

fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// "SHA256:…" from ssh's changed-key warning.
fn fingerprint_in(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(|w| w.trim_end_matches('.').to_string())
}

/// The host's key as a known_hosts line and its fingerprint, fetched with ssh-keyscan (the
/// user decides whether to trust it; awsvpc never writes known_hosts).
fn scan_host_key(host: &str, port: u16) -> Option<(String, String)> {
    let out = Command::new("ssh-keyscan")
        .args(["-T", "5", "-p", &port.to_string(), "--", host])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let line = lines
        .iter()
        .find(|l| l.contains("ssh-ed25519"))
        .or(lines.first())?
        .to_string();
    let mut kg = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    kg.stdin.take()?.write_all(line.as_bytes()).ok()?;
    let o = kg.wait_with_output().ok()?;
    let fp = fingerprint_in(&String::from_utf8_lossy(&o.stdout))?;
    Some((fp, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain(code: i32, stderr: &[&str]) -> String {
        let s = SshSettings {
            host: "collector.invalid".into(),
            program: "/nonexistent/ssh".into(),
            ..Default::default()
        };
        let lines: Vec<String> = stderr.iter().map(|s| s.to_string()).collect();
        explain_failure(&s, Some(code), &lines, "")
    }

    /// The real ssh's own parser (`ssh -G` prints the configuration it would use, after
    /// its word splitting and %-token expansion, and connects nowhere) reads back exactly
    /// the known_hosts file given, whatever its name holds.
    #[test]
    fn ssh_reads_back_file_names_with_spaces_quotes_and_percent() {
        if std::process::Command::new("ssh")
            .arg("-V")
            .output()
            .is_err()
        {
            return;
        }
        let known = r#"/tmp/Zoë's dir/known "hosts" %h\x 100%"#;
        let s = SshSettings {
            host: "collector.invalid".into(),
            known_hosts: Some(known.into()),
            config: Some("/dev/null".into()),
            ..Default::default()
        };
        let mut c = s.base();
        c.arg("-G").arg("--").arg(&s.host);
        let out = c
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let read = text
            .lines()
            .find_map(|l| l.strip_prefix("userknownhostsfile "))
            .unwrap_or_default();
        assert_eq!(read, known, "{text}");
    }

    #[test]
    fn failures_become_one_sentence_with_the_fix() {
        let cases: &[(i32, &[&str], &str)] = &[
            (
                255,
                &["ssh: connect to host collector.invalid port 22: Connection refused"],
                "--ssh-port",
            ),
            (
                255,
                &["ssh: Could not resolve hostname collector.invalid: Name or service not known"],
                "does not resolve",
            ),
            (
                255,
                &["ssh: connect to host 10.9.9.9 port 22: Connection timed out"],
                "security group",
            ),
            (
                255,
                &["ec2-user@collector.invalid: Permission denied (publickey)."],
                "--ssh-key",
            ),
            (
                127,
                &["bash: line 1: exec: python3: not found"],
                "no python3",
            ),
            (
                255,
                &[
                    "@@@@@@@@@@@",
                    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
                    "The fingerprint for the ED25519 key sent by the remote host is",
                    "SHA256:abcDEF123.",
                    "Host key verification failed.",
                ],
                "SHA256:abcDEF123",
            ),
            (1, &["Traceback: boom"], "status 1"),
        ];
        for (code, lines, want) in cases {
            let m = explain(*code, lines);
            assert!(m.contains(want), "{lines:?} -> {m}");
            assert!(!m.contains('\n'), "{m}");
            assert!(m.ends_with('.') || m.contains(": "), "{m}");
        }
    }
}
