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
//! The same collector also reaches an ephemeral collector awsvpc launched itself, with an
//! in-process SSH client and a pinned host key ([`SshCollector::connect_pinned`],
//! `super::pinned`): only how a connection is made and how its failure is explained differ
//! ([`Session`]); the relay, the stream, loss detection and the reconnect are shared.

use crate::collector::{Batch, DatagramSource};
use crate::relay::stream::{Decoder, Kind};
use crate::relay::{RelayOptions, SOURCE};
#[cfg(feature = "aws")]
use crate::transport::pinned::{self, PinnedSettings};
use crate::transport::{RECONNECT_GRACE, SILENCE};
use crate::{log_info, log_msg};
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a new connection may take to start the relay (TCP, SSH handshake, python).
pub const START_LIMIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT_S: u32 = 10;
const POLL_MS: i32 = 100;

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
    /// The ssh program (`AWSVPC_SSH`, default `ssh`).
    pub program: String,
}

impl SshSettings {
    fn base(&self) -> Command {
        let program = if self.program.is_empty() {
            "ssh"
        } else {
            &self.program
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

/// The remote command that runs the relay, whose source follows on stdin.
pub(crate) fn remote_command(relay: &RelayOptions) -> String {
    format!("exec python3 - {}", relay.args().join(" "))
}

/// One ssh process running the relay.
struct Process {
    child: Child,
    stdout: ChildStdout,
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
                "The ssh client is not installed or not on PATH; install OpenSSH's client (or set AWSVPC_SSH to its path).".to_string()
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
        // The relay is < 16 KB: it fits the pipe, so this never blocks on a peer that does
        // not read. A failure here (ssh already gone) is explained by ssh's stderr.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(SOURCE.as_bytes());
        }
        let stdout = child.stdout.take().expect("piped");
        set_nonblocking(stdout.as_raw_fd());
        crate::sys::widen_pipe(&stdout);
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

/// One connection running the relay: a system ssh process, or an in-process SSH session to
/// an ephemeral collector. Either way its stream is read from a pollable descriptor.
enum Session {
    Process(Process),
    #[cfg(feature = "aws")]
    Pinned(pinned::Session),
}

/// What a connection left to explain its end with.
enum Ending {
    Process(Option<ExitStatus>, Vec<String>),
    #[cfg(feature = "aws")]
    Pinned(pinned::Ending),
}

impl Session {
    fn fd(&self) -> RawFd {
        match self {
            Session::Process(p) => p.stdout.as_raw_fd(),
            #[cfg(feature = "aws")]
            Session::Pinned(p) => p.fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Session::Process(p) => p.stdout.read(buf),
            #[cfg(feature = "aws")]
            Session::Pinned(p) => p.read(buf),
        }
    }

    /// Since when [`START_LIMIT`] counts; `None` while still waiting for the collector to
    /// boot (that wait has its own bound).
    fn start_clock(&self) -> Option<Instant> {
        match self {
            Session::Process(p) => Some(p.spawned),
            #[cfg(feature = "aws")]
            Session::Pinned(p) => p.connected_at(),
        }
    }

    /// The status bar's text while the connection is not made yet, if it has one.
    fn waiting(&self) -> Option<String> {
        match self {
            Session::Process(_) => None,
            #[cfg(feature = "aws")]
            Session::Pinned(p) => p.waiting(),
        }
    }

    /// Ends the connection (`kill`: at once) and collects what explains its end.
    fn finish(self, kill: bool) -> Ending {
        match self {
            Session::Process(p) => {
                let (status, lines) = p.finish(kill);
                Ending::Process(status, lines)
            }
            #[cfg(feature = "aws")]
            Session::Pinned(p) => Ending::Pinned(p.finish(kill)),
        }
    }
}

impl Ending {
    /// The last thing the remote side or the client said, for a lost tunnel's detail.
    fn last_line(&self) -> Option<String> {
        match self {
            Ending::Process(_, lines) => lines.last().cloned(),
            #[cfg(feature = "aws")]
            Ending::Pinned(e) => e.last_line(),
        }
    }
}

/// Where the relay runs, and how it is reached.
enum Target {
    /// An existing collector, through the user's ssh.
    System(SshSettings),
    /// An ephemeral collector awsvpc launched, with its generated keys.
    #[cfg(feature = "aws")]
    Pinned(PinnedSettings),
}

impl Target {
    /// The collector as sentences name it.
    fn name(&self) -> &str {
        match self {
            Target::System(s) => &s.host,
            #[cfg(feature = "aws")]
            Target::Pinned(p) => &p.label,
        }
    }

    /// Connects and starts the relay. `again`: a reconnect to a collector already up.
    fn spawn(&self, relay: &RelayOptions, again: bool) -> Result<Session, String> {
        let _ = again;
        match self {
            Target::System(s) => Process::spawn(s, relay).map(Session::Process),
            #[cfg(feature = "aws")]
            Target::Pinned(p) => pinned::Session::spawn(p, relay, again).map(Session::Pinned),
        }
    }

    /// The sentence for a connection that did not start the relay within [`START_LIMIT`].
    fn no_answer(&self) -> String {
        let limit = START_LIMIT.as_secs();
        match self {
            Target::System(s) => format!(
                "No answer from the collector {host} over SSH within {limit} s; check that it is reachable and that sshd answers (try: ssh {host} true).",
                host = s.host
            ),
            #[cfg(feature = "aws")]
            Target::Pinned(p) => format!(
                "{} accepted a TCP connection on port {} but did not start the relay over SSH within {limit} s; check that it finished booting (its console output) and that nothing else answers at {}.",
                capitalized(&p.label),
                p.port,
                p.address
            ),
        }
    }

    /// A connection's end as the user's one sentence.
    fn explain(&self, ending: Ending, stdout_text: &str) -> String {
        match (self, ending) {
            (Target::System(s), Ending::Process(status, lines)) => {
                explain_failure(s, status, &lines, stdout_text)
            }
            #[cfg(feature = "aws")]
            (Target::Pinned(p), Ending::Pinned(e)) => pinned::explain(p, e, stdout_text),
            #[cfg(feature = "aws")]
            _ => unreachable!("a session is of its target's kind"),
        }
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

pub(crate) fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Waits up to `ms` for `fd` to become readable (or closed).
fn poll_readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// A remote collector reached over SSH: the relay's datagrams, kernel timestamps and drop
/// counts, with loss detection (silence or EOF) and one reconnect.
pub struct SshCollector {
    target: Target,
    relay: RelayOptions,
    session: Option<Session>,
    decoder: Decoder,
    /// Drops counted by earlier relay processes (each starts at zero).
    drops_before: u64,
    drops_now: u32,
    last_seen: Instant,
    reconnected_at: Option<Instant>,
    /// The capture's stop flag, for the reconnect's wait.
    stop: Option<Arc<AtomicBool>>,
}

/// How a read of the stream ended.
enum Lost {
    /// EOF or silence: the tunnel may come back.
    Tunnel(String),
    /// The relay or the stream said something that another attempt will not fix.
    Fatal(String),
}

impl SshCollector {
    /// Connects and starts the relay, waiting (bounded) for its stream to begin.
    /// `None` when `stop` was set while connecting.
    pub fn connect(
        settings: SshSettings,
        relay: RelayOptions,
        status: &dyn Fn(&str),
        stop: &AtomicBool,
    ) -> Result<Option<Self>, String> {
        Self::open(Target::System(settings), relay, status, stop)
    }

    /// Connects to an ephemeral collector awsvpc launched with `settings.keys` in its user
    /// data, waiting up to `settings.boot_wait` for its sshd, and starts the relay as
    /// [`SshCollector::connect`] does. Only the pinned host key is accepted; the login uses
    /// the generated client key only. `None` when `stop` was set while connecting.
    #[cfg(feature = "aws")]
    pub fn connect_pinned(
        settings: PinnedSettings,
        relay: RelayOptions,
        status: &dyn Fn(&str),
        stop: &AtomicBool,
    ) -> Result<Option<Self>, String> {
        Self::open(Target::Pinned(settings), relay, status, stop)
    }

    fn open(
        target: Target,
        relay: RelayOptions,
        status: &dyn Fn(&str),
        stop: &AtomicBool,
    ) -> Result<Option<Self>, String> {
        let mut c = SshCollector {
            target,
            relay,
            session: None,
            decoder: Decoder::new(),
            drops_before: 0,
            drops_now: 0,
            last_seen: Instant::now(),
            reconnected_at: None,
            stop: None,
        };
        match c.start(status, Some(stop), false) {
            Ok(()) => Ok(Some(c)),
            Err(_) if stop.load(Ordering::Relaxed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `again`: a reconnect to a collector already up.
    fn start(
        &mut self,
        status: &dyn Fn(&str),
        stop: Option<&AtomicBool>,
        again: bool,
    ) -> Result<(), String> {
        let host = self.target.name().to_string();
        status(&format!(
            "Connecting to {host} over SSH and starting the relay"
        ));
        self.decoder.reset();
        let session = self.target.spawn(&self.relay, again)?;
        let fd = session.fd();
        self.session = Some(session);
        let mut told = Instant::now();
        loop {
            match self.decoder.find_start() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    let why = format!(
                        "{}: {e}; check that its login shell starts commands without prompting.",
                        capitalized(&host)
                    );
                    return Err(self.fail_start(Some(why)));
                }
            }
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return Err(self.fail_start(Some("stopped".into())));
            }
            let session = self.session.as_ref().expect("set above");
            if told.elapsed() >= Duration::from_secs(1) {
                if let Some(text) = session.waiting() {
                    status(&text);
                    told = Instant::now();
                }
            }
            if session
                .start_clock()
                .is_some_and(|t| t.elapsed() > START_LIMIT)
            {
                let why = self.target.no_answer();
                return Err(self.fail_start(Some(why)));
            }
            if poll_readable(fd, POLL_MS) {
                match self.read_more() {
                    Ok(0) => return Err(self.fail_start(None)),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err(self.fail_start(None)),
                }
            }
        }
        if self.decoder.skipped > 0 {
            log_msg!(
                "the collector printed {} bytes before the relay started (a login banner?); skipped",
                self.decoder.skipped
            );
        }
        self.last_seen = Instant::now();
        log_msg!(
            "relay running on {host} (UDP {}:{}) over SSH",
            self.relay.listen_addr,
            self.relay.listen_port
        );
        Ok(())
    }

    /// Ends a failed start. `why` is already the user's sentence; without one, what ssh
    /// said becomes the sentence.
    fn fail_start(&mut self, why: Option<String>) -> String {
        let text = self.decoder.unparsed_text();
        // Without a sentence of our own, the connection ended by itself: let it finish
        // saying why.
        let ending = self.session.take().map(|s| s.finish(why.is_some()));
        match (why, ending) {
            (Some(why), _) => why,
            (None, Some(e)) => self.target.explain(e, &text),
            (None, None) => format!("The connection to {} closed.", self.target.name()),
        }
    }

    fn read_more(&mut self) -> io::Result<usize> {
        let Some(s) = self.session.as_mut() else {
            return Ok(0);
        };
        let space = self.decoder.space();
        let n = s.read(space)?;
        self.decoder.filled(n);
        Ok(n)
    }

    /// Moves whole records into `batch`.
    fn drain(&mut self, batch: &mut Batch) -> Result<(), Lost> {
        while !batch.is_full() {
            let r = match self.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    return Err(Lost::Fatal(format!(
                        "The relay stream from {} broke: {e}.",
                        self.target.name()
                    )))
                }
            };
            self.last_seen = Instant::now();
            self.drops_now = r.drops();
            match r.kind() {
                Kind::Datagram => {
                    if let Some(src) = r.source() {
                        batch.push(r.payload(), src, r.time());
                    }
                }
                Kind::Heartbeat | Kind::Other(_) => {}
                Kind::Error => {
                    let text = String::from_utf8_lossy(r.payload()).trim().to_string();
                    return Err(Lost::Fatal(relay_error(self.target.name(), &text)));
                }
            }
        }
        Ok(())
    }

    fn recover(&mut self, lost: Lost, status: &dyn Fn(&str)) -> io::Result<()> {
        let why = match lost {
            Lost::Fatal(m) => return Err(io::Error::other(m)),
            Lost::Tunnel(why) => why,
        };
        let host = self.target.name().to_string();
        let last = self.session.take().and_then(|s| s.finish(true).last_line());
        let detail = last.map(|l| format!(" ({l})")).unwrap_or_default();
        if self
            .reconnected_at
            .is_some_and(|t| t.elapsed() < RECONNECT_GRACE)
        {
            return Err(io::Error::other(format!(
                "The SSH tunnel to {host} was lost again ({why}{detail}) soon after a reconnect; the capture stopped. Check the collector and the network path."
            )));
        }
        log_msg!("SSH tunnel to {host} lost: {why}{detail}; reconnecting once");
        status(&format!("SSH tunnel to {host} lost ({why}); reconnecting"));
        self.drops_before += u64::from(self.drops_now);
        self.drops_now = 0;
        self.reconnected_at = Some(Instant::now());
        // The lost relay keeps the port until its write watchdog (10 s) notices.
        self.relay.bind_wait_s = 15;
        let stop = self.stop.clone();
        match self.start(status, stop.as_deref(), true) {
            Ok(()) => {
                status(&format!("Reconnected to {host}; capturing"));
                Ok(())
            }
            Err(_) if stop.is_some_and(|s| s.load(Ordering::Relaxed)) => Err(io::Error::other(
                format!("stopped while reconnecting to {host}"),
            )),
            Err(e) => Err(io::Error::other(format!(
                "The SSH tunnel to {host} was lost ({why}) and reconnecting failed: {}",
                e.trim_end_matches('.').to_string() + "."
            ))),
        }
    }
}

impl DatagramSource for SshCollector {
    fn recv_batch(&mut self, batch: &mut Batch, status: &dyn Fn(&str)) -> io::Result<usize> {
        batch.clear();
        let deadline = Instant::now() + Duration::from_millis(POLL_MS as u64);
        loop {
            if let Err(lost) = self.drain(batch) {
                if batch.is_empty() {
                    self.recover(lost, status)?;
                    continue;
                }
                // Deliver what arrived first; the loss shows again on the next call.
                return Ok(batch.len());
            }
            if !batch.is_empty() || self.decoder.has_record() {
                return Ok(batch.len());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(fd) = self.session.as_ref().map(Session::fd) else {
                return Err(io::Error::other("the SSH tunnel is closed"));
            };
            // Silence counts only once the pipe is empty: what queued up while awsvpc was
            // busy (provisioning) is not a loss.
            if !poll_readable(fd, left.as_millis() as i32) {
                if self.last_seen.elapsed() > SILENCE {
                    let lost = Lost::Tunnel(format!("nothing for {} s", SILENCE.as_secs()));
                    self.recover(lost, status)?;
                    continue;
                }
                if left.is_zero() {
                    return Ok(0);
                }
                continue;
            }
            match self.read_more() {
                Ok(0) => {
                    let lost = Lost::Tunnel("the connection closed".into());
                    self.recover(lost, status)?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.recover(Lost::Tunnel(e.to_string()), status)?,
            }
        }
    }

    fn drops(&self) -> u64 {
        self.drops_before + u64::from(self.drops_now)
    }

    fn watch_stop(&mut self, stop: Arc<AtomicBool>) {
        self.stop = Some(stop);
    }

    fn describe(&self) -> String {
        format!(
            "Relay on {} (UDP {}) over SSH",
            self.target.name(),
            self.relay.listen_port
        )
    }
}

/// The relay's own error record (bind failures) as the user's sentence.
fn relay_error(host: &str, text: &str) -> String {
    let text = text.trim_end_matches('.');
    format!("The relay on {host} stopped: {text}.")
}

/// ssh's stderr and exit status as one sentence that names the problem and the fix.
fn explain_failure(
    settings: &SshSettings,
    status: Option<ExitStatus>,
    stderr: &[String],
    stdout_text: &str,
) -> String {
    let host = &settings.host;
    let all = stderr.join("\n");
    let code = status.and_then(|s| s.code());
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
    if code == Some(127) && (has("python3") || all.is_empty()) {
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

/// `name` at the start of a sentence.
pub(crate) fn capitalized(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The sentence for a collector without python3 (`exec python3` exited 127); `who` begins
/// it ("The collector …").
pub(crate) fn no_python3(who: &str) -> String {
    format!(
        "{who} has no python3, which the relay needs; install it (sudo dnf install python3, or sudo apt install python3-minimal) or use an Amazon Linux 2023 or Ubuntu 22.04+ collector."
    )
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
    use std::os::unix::process::ExitStatusExt;

    fn explain(code: i32, stderr: &[&str]) -> String {
        let s = SshSettings {
            host: "collector.invalid".into(),
            program: "/nonexistent/ssh".into(),
            ..Default::default()
        };
        let lines: Vec<String> = stderr.iter().map(|s| s.to_string()).collect();
        explain_failure(&s, Some(ExitStatus::from_raw(code << 8)), &lines, "")
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
