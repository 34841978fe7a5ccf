//! SSH to an ephemeral collector: an instance awsvpc launched for one capture, whose user
//! data (cloud-init `ssh_keys` and `ssh_authorized_keys`) carries an ed25519 **host** key
//! and a **client** key that awsvpc generated in memory for that capture.
//!
//! Why an in-process client (russh) here, and the system `ssh` for an existing collector
//! (`super::ssh`): nothing about this host is in the user's `~/.ssh/config` or known_hosts,
//! and both keys exist only in this process. The host key is pinned rather than trusted on
//! first use: only that ed25519 key is accepted, and anything else at the address is
//! refused with both fingerprints, without retrying. The login offers the generated client
//! key only (no agent, no key files, no password). Neither key is written to disk by
//! awsvpc.
//!
//! The SSH session is a task on the capture's one tokio runtime (the mirror's, given to
//! [`SshCollector::connect_pinned_on`]) that hands the relay's stream to the relay client
//! ([`crate::transport::relay_client`]) in at most [`PIECES`] pieces of one channel message
//! each (≤ [`MAX_PACKET`] bytes, 1 MiB in all), so the relay, the stream decoder, loss
//! detection and the one reconnect are the code that serves the system ssh. When the reader
//! falls behind, the pieces are all taken, the task stops taking channel data, and the
//! pressure reaches the SSH window and the TCP connection.
//!
//! While the instance boots, refused, reset, unreachable and timed-out connections are
//! retried every [`RETRY`] until [`PinnedSettings::boot_wait`], with the status bar
//! counting; each failure after that is one sentence naming the likely fix.

use crate::relay::remote::remote_command;
use crate::relay::{RelayOptions, SOURCE};
use crate::transport::inflow::{Incoming, Inflow, Piece};
use crate::transport::relay_client::{Link, RelayClient, START_LIMIT};
use crate::transport::ssh_link::{capitalized, no_python3, SshLink, SshSession};
use crate::{log_info, log_msg};
use russh::client;
use russh::keys::{
    Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use russh::{cipher, ChannelMsg, Disconnect};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Between two connection attempts while the collector boots.
pub const RETRY: Duration = Duration::from_secs(2);
/// One TCP connection attempt.
const ATTEMPT: Duration = Duration::from_secs(3);
/// How long a reconnect (the collector already booted) waits for sshd to answer again.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(10);
/// The SSH channel window: russh's client never enlarges it on request (`adjust_window` is
/// ignored), and a tunnel carries at most one window per round trip (16 MiB at 100 ms is
/// 160 MiB/s, above the relay's rate).
const WINDOW: u32 = 16 << 20;
/// The largest SSH packet the collector may send: big enough that a burst of mirrored
/// packets travels in few packets, well under OpenSSH's limits.
const MAX_PACKET: u32 = 64 << 10;
/// Keepalives after this long without a word from the collector; three unanswered end the
/// session (as `ServerAliveInterval=2`, `ServerAliveCountMax=3` for the system ssh).
const KEEPALIVE: Duration = Duration::from_secs(2);
/// Lines of the relay's stderr kept to explain its end.
const STDERR_TAIL: usize = 40;
/// Channel messages waiting for the receive thread, at most.
const PIECES: usize = 16;

/// A capture's SSH keys, generated in memory: the client key awsvpc logs in with and the
/// collector's host key (both ed25519). The private halves never leave this process except
/// the host key, in the collector's user data; awsvpc writes neither to disk.
pub struct CollectorKeys {
    client: Arc<PrivateKey>,
    host: PrivateKey,
    host_pem: Zeroizing<String>,
    host_line: String,
    client_line: String,
}

impl CollectorKeys {
    /// New random keys from the operating system's generator.
    pub fn generate() -> Result<Self, String> {
        let fail = |e: russh::keys::ssh_key::Error| {
            format!("Cannot generate the collector's SSH keys: {e}.")
        };
        let mut rng = rand::rng();
        let client = PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(fail)?;
        let mut host = PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(fail)?;
        host.set_comment("awsvpc-collector-host");
        let host_pem = host
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(fail)?;
        let host_line = host.public_key().to_openssh().map_err(fail)?;
        let mut client_public = client.public_key().clone();
        client_public.set_comment("");
        let client_line = client_public.to_openssh().map_err(fail)?;
        Ok(CollectorKeys {
            client: Arc::new(client),
            host,
            host_pem,
            host_line,
            client_line,
        })
    }

    /// The client key as an authorized_keys line (`ssh-ed25519 AAAA… comment`), for
    /// cloud-init's `ssh_authorized_keys`.
    pub fn client_public_line(&self, comment: &str) -> String {
        let comment = comment.trim();
        if comment.is_empty() {
            self.client_line.clone()
        } else {
            format!("{} {comment}", self.client_line)
        }
    }

    /// The host's private key in OpenSSH's PEM format (unencrypted), for cloud-init's
    /// `ssh_keys: ed25519_private`. The returned text is wiped from memory when dropped.
    pub fn host_private_openssh(&self) -> Zeroizing<String> {
        self.host_pem.clone()
    }

    /// The host's public key line, for cloud-init's `ssh_keys: ed25519_public`.
    pub fn host_public_line(&self) -> String {
        self.host_line.clone()
    }

    /// The host key's fingerprint as OpenSSH prints it ("SHA256:…").
    pub fn host_fingerprint(&self) -> String {
        fingerprint(self.host.public_key())
    }

    /// The client key's fingerprint ("SHA256:…"), as sshd logs an accepted login.
    pub fn client_fingerprint(&self) -> String {
        fingerprint(self.client.public_key())
    }

    fn host_public(&self) -> &PublicKey {
        self.host.public_key()
    }
}

impl fmt::Debug for CollectorKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectorKeys")
            .field("host", &self.host_fingerprint())
            .field("client", &self.client_fingerprint())
            .finish_non_exhaustive()
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// How to reach an ephemeral collector.
#[derive(Debug, Clone)]
pub struct PinnedSettings {
    /// Its IP address (or a name that resolves to it).
    pub address: String,
    pub port: u16,
    pub user: String,
    pub keys: Arc<CollectorKeys>,
    /// How long sshd may take to answer the first time (the instance boots).
    pub boot_wait: Duration,
    /// The collector as sentences name it, e.g. "the collector i-0abc (10.0.1.5)".
    pub label: String,
}

/// What the session thread learned, shared with the reader.
#[derive(Debug, Default)]
struct State {
    /// Since when the first connection attempt failed (the collector is booting).
    waiting_since: Option<Instant>,
    /// The TCP connection that is (being) logged into.
    connected_at: Option<Instant>,
    /// A failure already worded for the user.
    sentence: Option<String>,
    exit: Option<u32>,
    signal: Option<String>,
    stderr: Vec<String>,
    /// How the SSH session ended, when it ended with an error.
    error: Option<String>,
}

/// What explains a pinned session's end.
struct Ending(State);

impl Ending {
    fn last_line(&self) -> Option<String> {
        let s = &self.0;
        s.error
            .clone()
            .or_else(|| s.stderr.last().cloned())
            .or_else(|| s.exit.map(|c| format!("the relay exited with status {c}")))
            .or_else(|| {
                s.signal
                    .clone()
                    .map(|g| format!("the relay was killed by SIG{g}"))
            })
    }
}

/// How to reach an ephemeral collector, and the runtime its sessions run on.
pub(crate) struct Pinned {
    settings: PinnedSettings,
    rt: Arc<tokio::runtime::Runtime>,
}

/// One SSH session running the relay, read through an [`Inflow`].
struct Session {
    incoming: Incoming,
    cancel: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    rt: Arc<tokio::runtime::Runtime>,
    state: Arc<Mutex<State>>,
    label: String,
    started: Instant,
}

impl Session {
    /// Starts connecting in a task; the stream arrives through its [`Inflow`], and its end
    /// comes with what explains it in [`Session::finish`]. `again`: a reconnect, which waits
    /// [`RECONNECT_WAIT`] instead of the boot wait.
    fn spawn(pinned: &Pinned, relay: &RelayOptions, again: bool) -> Session {
        let settings = &pinned.settings;
        let room = Arc::new(tokio::sync::Notify::new());
        let taken = room.clone();
        let (tx, inflow) = Inflow::channel(PIECES, move |_| taken.notify_one());
        let state = Arc::new(Mutex::new(State::default()));
        let (cancel, cancelled) = tokio::sync::oneshot::channel();
        let job = Job {
            settings: settings.clone(),
            command: remote_command(relay),
            wait: if again {
                RECONNECT_WAIT
            } else {
                settings.boot_wait
            },
            state: state.clone(),
        };
        let theirs = Outlet { tx, room };
        let task = pinned.rt.spawn(async move {
            tokio::select! {
                _ = job.work(theirs) => {}
                // Dropping the session's handle and channel ends russh's own task too.
                _ = cancelled => {}
            }
        });
        Session {
            incoming: Incoming::Thread(inflow),
            cancel: Some(cancel),
            task: Some(task),
            rt: pinned.rt.clone(),
            state,
            label: settings.label.clone(),
            started: Instant::now(),
        }
    }

    fn connected_at(&self) -> Option<Instant> {
        self.state.lock().unwrap().connected_at
    }

    fn waiting(&self) -> Option<String> {
        let s = self.state.lock().unwrap();
        (s.connected_at.is_none() && s.waiting_since.is_some()).then(|| {
            format!(
                "Waiting for SSH on {}: {} s",
                self.label,
                self.started.elapsed().as_secs()
            )
        })
    }

    /// Ends the session (`kill`: at once; else it is given 5 s to end by itself) and
    /// returns what explains its end.
    fn finish(mut self, kill: bool) -> Ending {
        if !kill {
            self.wait_task(Duration::from_secs(5));
        }
        self.stop();
        Ending(std::mem::take(&mut *self.state.lock().unwrap()))
    }

    /// Waits at most `limit` for the session's task to end.
    fn wait_task(&mut self, limit: Duration) {
        let Some(task) = self.task.as_mut() else {
            return;
        };
        // The relay client blocks only from plain threads; inside the runtime, do not wait.
        if tokio::runtime::Handle::try_current().is_err() {
            // The timer is made inside the runtime: it needs the runtime's clock.
            let ended = self
                .rt
                .block_on(async { tokio::time::timeout(limit, task).await });
            // A finished task's handle must not be awaited again.
            if ended.is_ok() {
                self.task = None;
            }
        }
    }

    fn stop(&mut self) {
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
        self.wait_task(Duration::from_secs(1));
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pinned client as an SSH session of the relay client's [`SshLink`].
impl SshSession for Session {
    type Settings = Pinned;

    fn name(p: &Pinned) -> &str {
        &p.settings.label
    }

    fn spawn(p: &Pinned, relay: &RelayOptions, again: bool) -> Result<Self, String> {
        Ok(Session::spawn(p, relay, again))
    }

    fn incoming(&mut self) -> &mut Incoming {
        &mut self.incoming
    }

    fn start_clock(&self) -> Option<Instant> {
        self.connected_at()
    }

    fn waiting(&self) -> Option<String> {
        Session::waiting(self)
    }

    fn no_answer(p: &Pinned) -> String {
        let p = &p.settings;
        format!(
            "{} accepted a TCP connection on port {} but did not start the relay over SSH within {} s; check that it finished booting (its console output) and that nothing else answers at {}.",
            capitalized(&p.label),
            p.port,
            START_LIMIT.as_secs(),
            p.address
        )
    }

    fn explain_end(self, p: &Pinned, unparsed: &str) -> String {
        explain(&p.settings, self.finish(false), unparsed)
    }

    fn kill(self) -> Option<String> {
        self.finish(true).last_line()
    }
}

impl RelayClient<dyn Link> {
    /// Connects to an ephemeral collector awsvpc launched with `settings.keys` in its user
    /// data, waiting up to `settings.boot_wait` for its sshd, and starts the relay as
    /// [`crate::transport::ssh::SshCollector::connect`] does. Only the pinned host key is
    /// accepted; the login uses the generated client key only. `None` when `stop` was set
    /// while connecting.
    ///
    /// The session runs on a runtime of its own; a capture gives its one runtime instead
    /// ([`RelayClient::connect_pinned_on`]).
    pub fn connect_pinned(
        settings: PinnedSettings,
        relay: RelayOptions,
        status: &dyn Fn(&str),
        stop: &AtomicBool,
    ) -> Result<Option<Self>, String> {
        // Multi-thread (one worker): the session's task runs while the caller blocks elsewhere.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ssh-pinned")
            .enable_all()
            .build()
            .map_err(|e| format!("Cannot start the SSH client: {e}."))?;
        Self::connect_pinned_on(Arc::new(rt), settings, relay, status, stop)
    }

    /// [`RelayClient::connect_pinned`], its sessions tasks on `rt` (a multi-thread runtime,
    /// which drives them while the relay client blocks on its own thread).
    pub fn connect_pinned_on(
        rt: Arc<tokio::runtime::Runtime>,
        settings: PinnedSettings,
        relay: RelayOptions,
        status: &dyn Fn(&str),
        stop: &AtomicBool,
    ) -> Result<Option<Self>, String> {
        let link = SshLink::<Session>::new(Pinned { settings, rt });
        Self::open(Box::new(link), relay, status, stop)
    }
}

/// The session thread's end of the [`Inflow`]: a channel message waits (without blocking the
/// runtime) while all [`PIECES`] are taken. Dropping it is the reader's end of file.
struct Outlet {
    tx: SyncSender<Piece>,
    room: Arc<tokio::sync::Notify>,
}

impl Outlet {
    /// Hands `buf` to the reader; fails only when the reader is gone.
    async fn send(&self, buf: Vec<u8>) -> Result<(), ()> {
        let len = buf.len();
        let mut piece = Piece::Data { buf, at: 0, len };
        loop {
            match self.tx.try_send(piece) {
                Ok(()) => return Ok(()),
                // The reader wakes `room` as it empties each piece (a wake before this
                // wait is kept, so none is missed).
                Err(TrySendError::Full(p)) => {
                    piece = p;
                    self.room.notified().await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(()),
            }
        }
    }
}

/// Why one connection attempt did not give a session.
enum Attempt {
    /// Nothing (usable) answers yet: the collector may still be booting.
    Retry(String),
    /// Worded for the user; another attempt will not help.
    Fatal(String),
}

/// The session thread's work.
struct Job {
    settings: PinnedSettings,
    command: String,
    wait: Duration,
    state: Arc<Mutex<State>>,
}

impl Job {
    fn fail(&self, sentence: String) {
        log_info!("SSH to {}: {sentence}", self.settings.label);
        self.state.lock().unwrap().sentence = Some(sentence);
    }

    async fn work(&self, theirs: Outlet) {
        let s = &self.settings;
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut attempts = 0u32;
        let (handle, mut channel) = loop {
            let began = tokio::time::Instant::now();
            attempts += 1;
            match self.attempt().await {
                Ok(pair) => break pair,
                Err(Attempt::Fatal(sentence)) => return self.fail(sentence),
                Err(Attempt::Retry(why)) => {
                    {
                        let mut st = self.state.lock().unwrap();
                        st.connected_at = None;
                        st.waiting_since.get_or_insert_with(Instant::now);
                    }
                    log_info!(
                        "SSH to {} ({}:{}), attempt {attempts}: {why}",
                        s.label,
                        s.address,
                        s.port
                    );
                    if tokio::time::Instant::now() >= deadline {
                        return self.fail(unreachable(s, self.wait, &why));
                    }
                    tokio::time::sleep_until((began + RETRY).min(deadline)).await;
                }
            }
        };
        let mut stderr = Vec::new();
        let mut eof = false;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => match theirs.send(data.to_vec()).await {
                    Ok(()) => {}
                    // The reader is gone.
                    Err(()) => break,
                },
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    stderr.extend_from_slice(&data);
                    self.stderr_lines(&mut stderr, false);
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    self.state.lock().unwrap().exit = Some(exit_status);
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    self.state.lock().unwrap().signal = Some(format!("{signal_name:?}"));
                }
                ChannelMsg::Failure => {
                    return self.fail(format!(
                        "{} refused to run the relay's command over SSH; check its sshd configuration (ForceCommand, a restricted shell).",
                        capitalized(&s.label)
                    ));
                }
                ChannelMsg::Eof => eof = true,
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        self.stderr_lines(&mut stderr, true);
        if handle.is_closed() {
            // The connection itself ended (keepalives unanswered, reset): say how.
            let mut handle = handle;
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(1), &mut handle).await {
                log_info!("SSH session with {} ended: {e}", s.label);
                self.state.lock().unwrap().error = Some(describe_error(&e));
            }
        } else {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                handle.disconnect(Disconnect::ByApplication, "", "en"),
            )
            .await;
        }
        log_info!(
            "SSH channel to {} closed{}",
            s.label,
            if eof { " after the relay's EOF" } else { "" }
        );
        // Dropping `theirs` now gives the reader its EOF, after everything above is set.
        drop(theirs);
    }

    /// Logs and keeps the whole lines of the relay's stderr (`all`: the rest too).
    fn stderr_lines(&self, buf: &mut Vec<u8>, all: bool) {
        let end = if all {
            buf.len()
        } else {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => return,
            }
        };
        let text = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let mut st = self.state.lock().unwrap();
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            log_info!("ssh: {line}");
            if st.stderr.len() == STDERR_TAIL {
                st.stderr.remove(0);
            }
            st.stderr.push(line.to_string());
        }
    }

    /// One connection: TCP, the SSH handshake with the pinned host key, the login, and the
    /// relay started with its source on stdin.
    async fn attempt(&self) -> Result<(client::Handle<Pin>, russh::Channel<client::Msg>), Attempt> {
        let s = &self.settings;
        let addr = resolve(s)?;
        let tcp = match tokio::time::timeout(ATTEMPT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(Attempt::Retry(io_reason(&e))),
            Err(_) => return Err(Attempt::Retry("connection timed out".into())),
        };
        self.state.lock().unwrap().connected_at = Some(Instant::now());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let pin = Pin {
            expected: s.keys.host_public().clone(),
            seen: seen.clone(),
        };
        let mut handle = match client::connect_stream(Arc::new(config()), tcp, pin).await {
            Ok(h) => h,
            Err(e) => {
                if let Some(presented) = seen.lock().unwrap().refused.take() {
                    return Err(Attempt::Fatal(mismatch(s, &presented)));
                }
                return Err(match e {
                    russh::Error::NoCommonAlgo {
                        kind: russh::AlgorithmKind::Key,
                        ..
                    } => Attempt::Fatal(format!(
                        "{} at {} port {} has no ed25519 host key, so it is not the collector awsvpc configured (something else answers at that address, possibly an attack); awsvpc refused to connect.",
                        capitalized(&s.label),
                        s.address,
                        s.port
                    )),
                    // sshd not (fully) up yet: it accepted and closed, or reset.
                    russh::Error::IO(_) | russh::Error::HUP | russh::Error::Disconnect => {
                        Attempt::Retry(format!("SSH handshake: {}", describe_error(&e)))
                    }
                    e => Attempt::Fatal(format!(
                        "SSH to {} at {} port {} failed during the handshake: {}.",
                        s.label,
                        s.address,
                        s.port,
                        describe_error(&e)
                    )),
                });
            }
        };
        let key = PrivateKeyWithHashAlg::new(s.keys.client.clone(), None);
        let session_failed = |what: &str, e: russh::Error| {
            Attempt::Fatal(format!(
                "SSH to {} failed {what}: {}.",
                s.label,
                describe_error(&e)
            ))
        };
        match handle.authenticate_publickey(s.user.clone(), key).await {
            Ok(r) if r.success() => {}
            Ok(_) => {
                return Err(Attempt::Fatal(format!(
                    "{} presented its pinned host key but refused awsvpc's login as {} with the generated key ({}): cloud-init did not install that key, so check the instance's user data and its /var/log/cloud-init-output.log.",
                    capitalized(&s.label),
                    s.user,
                    s.keys.client_fingerprint()
                )))
            }
            Err(e) => return Err(session_failed("during the login", e)),
        }
        let cipher = seen.lock().unwrap().cipher.clone();
        log_msg!(
            "SSH to {} ({}:{}): host key {} as pinned, logged in as {} ({cipher})",
            s.label,
            s.address,
            s.port,
            s.keys.host_fingerprint(),
            s.user
        );
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| session_failed("opening a session channel", e))?;
        log_info!("running {:?} on {}", self.command, s.label);
        channel
            .exec(true, self.command.as_bytes())
            .await
            .map_err(|e| session_failed("starting the relay", e))?;
        // The relay (< 16 KB) fits the window: this does not wait for the remote side.
        channel
            .data(SOURCE.as_bytes())
            .await
            .map_err(|e| session_failed("sending the relay", e))?;
        channel
            .eof()
            .await
            .map_err(|e| session_failed("sending the relay", e))?;
        Ok((handle, channel))
    }
}

fn resolve(s: &PinnedSettings) -> Result<SocketAddr, Attempt> {
    if let Ok(ip) = s.address.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, s.port));
    }
    match (s.address.as_str(), s.port).to_socket_addrs() {
        Ok(mut a) => a
            .next()
            .ok_or_else(|| Attempt::Retry(format!("{} has no address", s.address))),
        // A name that does not resolve yet (a new instance's DNS record) may later.
        Err(e) => Err(Attempt::Retry(format!("{}: {e}", s.address))),
    }
}

/// The client's configuration: large window, ed25519 host keys only, AES-GCM first when the
/// CPU has AES instructions (else ChaCha20-Poly1305 is faster), keepalives.
fn config() -> client::Config {
    let ciphers: &'static [cipher::Name] = if aes_in_hardware() {
        &[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
        ]
    } else {
        &[
            cipher::CHACHA20_POLY1305,
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
        ]
    };
    client::Config {
        window_size: WINDOW,
        maximum_packet_size: MAX_PACKET,
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: 3,
        preferred: russh::Preferred {
            key: std::borrow::Cow::Borrowed(&[Algorithm::Ed25519]),
            cipher: std::borrow::Cow::Borrowed(ciphers),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// What the handler saw during the handshake.
#[derive(Default)]
struct Seen {
    /// The fingerprint of a host key that was not the pinned one.
    refused: Option<String>,
    cipher: String,
}

/// The handler: accepts the pinned ed25519 host key and nothing else.
struct Pin {
    expected: PublicKey,
    seen: Arc<Mutex<Seen>>,
}

impl client::Handler for Pin {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(c) => {
                self.seen.lock().unwrap().refused = Some(format!(
                    "a certificate for {}",
                    c.public_key().fingerprint(HashAlg::Sha256)
                ));
                return Ok(false);
            }
        };
        let ok = presented.algorithm() == Algorithm::Ed25519
            && presented.key_data() == self.expected.key_data();
        if !ok {
            self.seen.lock().unwrap().refused = Some(fingerprint(presented));
        }
        Ok(ok)
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.seen.lock().unwrap().cipher = names.cipher.as_ref().to_string();
        Ok(())
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "connection timed out".into(),
        io::ErrorKind::HostUnreachable => "no route to host".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

fn describe_error(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io_reason(io),
        russh::Error::HUP | russh::Error::Disconnect => "the connection closed".into(),
        russh::Error::KeepaliveTimeout => "keepalives unanswered".into(),
        e => e.to_string().trim_end_matches('.').to_string(),
    }
}

/// The sentence for a host key that is not the pinned one.
fn mismatch(s: &PinnedSettings, presented: &str) -> String {
    format!(
        "The SSH host key at {} port {} is {presented}, not {}, the key awsvpc generated for {}: something else answers at that address (possibly an attack), so awsvpc refused to connect.",
        s.address,
        s.port,
        s.keys.host_fingerprint(),
        s.label
    )
}

/// The sentence for a collector whose sshd never answered within the wait.
fn unreachable(s: &PinnedSettings, waited: Duration, last: &str) -> String {
    format!(
        "No SSH answer from {} at {} port {} within {} s ({last}); check that its security group allows TCP {} from this machine, that its subnet reaches you (a public IP and a route to an internet gateway, or your VPN), or use --connect ssm.",
        s.label,
        s.address,
        s.port,
        waited.as_secs(),
        s.port
    )
}

/// A pinned session's end as the user's one sentence.
fn explain(s: &PinnedSettings, ending: Ending, stdout_text: &str) -> String {
    let e = ending.0;
    if let Some(sentence) = e.sentence {
        return sentence;
    }
    let all = e.stderr.join("\n");
    if e.exit == Some(127) && (all.contains("python3") || all.is_empty()) {
        return no_python3(&capitalized(&s.label));
    }
    let said = e
        .stderr
        .last()
        .cloned()
        .or(e.error.clone())
        .or_else(|| (!stdout_text.is_empty()).then(|| stdout_text.to_string()))
        .unwrap_or_else(|| "no message".into());
    let said = said.trim().trim_end_matches('.');
    let who = s.label.as_str();
    match (e.exit, e.signal) {
        (Some(c), _) => {
            format!("The relay on {who} exited with status {c} before starting: {said}.")
        }
        (None, Some(g)) => {
            format!("The relay on {who} was killed by SIG{g} before starting: {said}.")
        }
        (None, None) => format!("The relay on {who} ended before starting: {said}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_ed25519_in_openssh_formats() {
        let k = CollectorKeys::generate().unwrap();
        let pem = k.host_private_openssh();
        assert!(
            pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
            "{}",
            &pem[..40]
        );
        let parsed = PrivateKey::from_openssh(pem.as_bytes()).unwrap();
        assert_eq!(parsed.public_key().key_data(), k.host_public().key_data());
        assert!(k.host_public_line().starts_with("ssh-ed25519 AAAA"));
        let line = k.client_public_line("awsvpc capture 1");
        assert!(
            line.starts_with("ssh-ed25519 AAAA") && line.ends_with(" awsvpc capture 1"),
            "{line}"
        );
        assert_eq!(line.splitn(3, ' ').nth(2), Some("awsvpc capture 1"));
        assert_eq!(
            PublicKey::from_openssh(&line).unwrap().key_data(),
            k.client.public_key().key_data()
        );
        assert!(k.host_fingerprint().starts_with("SHA256:"));
        assert_ne!(k.host_fingerprint(), k.client_fingerprint());
        let other = CollectorKeys::generate().unwrap();
        assert_ne!(
            other.host_fingerprint(),
            k.host_fingerprint(),
            "random keys"
        );
        let dbg = format!("{k:?}");
        assert!(
            dbg.contains(&k.host_fingerprint()) && !dbg.contains("PRIVATE"),
            "{dbg}"
        );
    }

    fn settings() -> PinnedSettings {
        PinnedSettings {
            address: "10.0.1.5".into(),
            port: 22,
            user: "ec2-user".into(),
            keys: Arc::new(CollectorKeys::generate().unwrap()),
            boot_wait: Duration::from_secs(120),
            label: "the collector i-0abc (10.0.1.5)".into(),
        }
    }

    #[test]
    fn failures_are_one_sentence() {
        let s = settings();
        let m = mismatch(&s, "SHA256:other");
        assert!(
            m.contains("SHA256:other") && m.contains(&s.keys.host_fingerprint()),
            "{m}"
        );
        assert!(
            m.contains("possibly an attack") && m.contains("refused to connect"),
            "{m}"
        );
        let u = unreachable(&s, Duration::from_secs(120), "connection timed out");
        assert!(
            u.contains("10.0.1.5 port 22")
                && u.contains("security group")
                && u.contains("--connect ssm"),
            "{u}"
        );
        let py = explain(
            &s,
            Ending(State {
                exit: Some(127),
                stderr: vec!["sh: 1: exec: python3: not found".into()],
                ..Default::default()
            }),
            "",
        );
        assert!(py.contains("has no python3"), "{py}");
        let other = explain(
            &s,
            Ending(State {
                exit: Some(1),
                stderr: vec!["Traceback: boom".into()],
                ..Default::default()
            }),
            "",
        );
        assert!(
            other.contains("status 1") && other.contains("boom"),
            "{other}"
        );
        for m in [m, u, py, other] {
            assert!(!m.contains('\n') && m.ends_with('.'), "{m}");
        }
    }
}
