//! A remote collector reached through Session Manager: the relay listens on the instance's
//! loopback, a port session (`AWS-StartPortForwardingSession`, basic mode) carries its stream
//! to this machine, and [`SsmCollector`] reads it like the SSH transport reads ssh's stdout:
//! bounded start, loss detection by the relay's heartbeat ([`SILENCE`]), one reconnect (a new
//! session), drop counters carried across.
//!
//! Throughput: the SSM agent reads a port at most 1024 bytes at a time with a 1 ms pause
//! (`agent/session/plugins/port/port_basic.go`), so a session carries about 1 MB/s at most
//! (0.6–0.8 MB/s reported). The status bar says so, and shows the packet rate achieved.

use super::channel::{Channel, ChannelError, ChannelOptions, ChannelStats};
use super::session::Control;
use crate::collector::{Batch, DatagramSource};
use crate::relay::stream::{Decoder, Kind, StreamError, Unpacker};
use crate::relay::{RelayOptions, SOURCE};
use crate::transport::{RECONNECT_GRACE, SILENCE};
use crate::{log_info, log_msg};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one session carries at most (bytes per second), for the status bar.
pub const CEILING_BYTES_PER_S: u64 = 1_000_000;
pub use super::DEFAULT_SNAPLEN;
/// How long a new session may take from StartSession to the relay's stream header.
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// How long to wait for an agent that is not online yet (an ephemeral collector's agent
/// registers tens of seconds after boot).
pub const ONLINE_WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);
const RATE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SsmSettings {
    /// The collector instance (`i-…`).
    pub instance_id: String,
    /// TCP port on the instance's loopback where the relay listener waits
    /// ([`relay_listener_command`]).
    pub relay_port: u16,
    pub channel: ChannelOptions,
    pub online_wait: Duration,
    /// Polling interval of DescribeInstanceInformation while waiting.
    pub online_poll: Duration,
}

impl SsmSettings {
    pub fn new(instance_id: &str, relay_port: u16) -> Self {
        SsmSettings {
            instance_id: instance_id.to_string(),
            relay_port,
            channel: ChannelOptions::default(),
            online_wait: ONLINE_WAIT,
            online_poll: Duration::from_secs(5),
        }
    }
}

/// The packets/s and bytes/s over the last interval.
struct Meter {
    since: Instant,
    packets: u64,
    bytes_at: u64,
}

/// The relay's datagrams through a Session Manager port session.
pub struct SsmCollector {
    control: Control,
    settings: SsmSettings,
    relay: RelayOptions,
    channel: Option<Channel>,
    session_id: Option<String>,
    decoder: Decoder,
    /// Inflates the relay's compressed stream (the listener asks for it) into `decoder`.
    unpacker: Unpacker,
    /// What the channel delivered and the unpacker has not taken yet.
    wire: Vec<u8>,
    wire_at: usize,
    wire_end: usize,
    drops_before: u64,
    drops_now: u32,
    last_seen: Instant,
    last_call: Instant,
    reconnected_at: Option<Instant>,
    meter: Meter,
    /// Channel counters of earlier sessions.
    stats_before: ChannelStats,
    /// The capture's stop flag, for the reconnect's waits.
    stop: Option<Arc<AtomicBool>>,
}

/// How reading the session failed.
enum Read {
    Channel(ChannelError),
    Stream(StreamError),
}

/// What one channel read may bring at most (the agent sends ≤ 1 KB per message).
const WIRE_BUFFER: usize = 64 << 10;

enum Lost {
    Tunnel(String),
    Fatal(String),
}

impl SsmCollector {
    /// Checks the agent, opens a session to the relay listener and waits (bounded) for the
    /// relay's stream. `None` when `stop` was set meanwhile.
    pub fn connect(
        control: Control,
        settings: SsmSettings,
        relay: RelayOptions,
        status: &dyn Fn(&str),
        stop: &AtomicBool,
    ) -> Result<Option<Self>, String> {
        let mut c = SsmCollector {
            control,
            settings,
            relay,
            channel: None,
            session_id: None,
            decoder: Decoder::new(),
            unpacker: Unpacker::new(),
            wire: vec![0; WIRE_BUFFER],
            wire_at: 0,
            wire_end: 0,
            drops_before: 0,
            drops_now: 0,
            last_seen: Instant::now(),
            last_call: Instant::now(),
            reconnected_at: None,
            meter: Meter {
                since: Instant::now(),
                packets: 0,
                bytes_at: 0,
            },
            stats_before: ChannelStats::default(),
            stop: None,
        };
        match c.start(status, Some(stop), false) {
            Ok(true) => Ok(Some(c)),
            Ok(false) => Ok(None),
            Err(_) if stop.load(Ordering::Relaxed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the relay's stream arrives compressed.
    pub fn compressed(&self) -> bool {
        self.unpacker.compressed()
    }

    /// The data channel's counters over all sessions.
    pub fn channel_stats(&self) -> ChannelStats {
        let now = self.channel.as_ref().map(|c| c.stats).unwrap_or_default();
        let b = self.stats_before;
        ChannelStats {
            messages: b.messages + now.messages,
            bytes: b.bytes + now.bytes,
            duplicates: b.duplicates + now.duplicates,
            reordered: b.reordered + now.reordered,
            acks_sent: b.acks_sent + now.acks_sent,
            retransmits: b.retransmits + now.retransmits,
        }
    }

    /// The current session's id.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// `Ok(false)`: stopped. A reconnect (`again`) waits at most [`START_LIMIT`] for the
    /// agent: the capture's receive thread is blocked meanwhile, until a stop.
    fn start(
        &mut self,
        status: &dyn Fn(&str),
        stop: Option<&AtomicBool>,
        again: bool,
    ) -> Result<bool, String> {
        let id = self.settings.instance_id.clone();
        status(&format!("Checking the SSM agent on {id}"));
        let online_wait = if again {
            self.settings.online_wait.min(START_LIMIT)
        } else {
            self.settings.online_wait
        };
        let Some(agent) =
            self.control
                .wait_online(&id, online_wait, self.settings.online_poll, status, stop)?
        else {
            return Ok(false);
        };
        status(&format!(
            "Opening a Session Manager session to {id} (SSM carries about 1 MB/s at most)"
        ));
        let s = self.control.start(&id, self.settings.relay_port)?;
        log_info!(
            "SSM session {} to {id} (agent {agent}), port {}",
            s.session_id,
            self.settings.relay_port
        );
        self.session_id = Some(s.session_id.clone());
        let channel = match Channel::open(&s.stream_url, &s.token, &self.settings.channel) {
            Ok(c) => c,
            Err(e) => {
                let why = explain_channel(&id, self.settings.relay_port, &e);
                return Err(self.fail_start(why));
            }
        };
        self.channel = Some(channel);
        self.decoder.reset();
        self.unpacker.reset();
        (self.wire_at, self.wire_end) = (0, 0);
        let started = Instant::now();
        loop {
            match self.decoder.find_start() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    let why = format!(
                        "{id}: {e}; check what listens on port {} there.",
                        self.settings.relay_port
                    );
                    return Err(self.fail_start(why));
                }
            }
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                self.fail_start(String::new());
                return Ok(false);
            }
            if started.elapsed() > START_LIMIT {
                let why = format!(
                    "The relay on {id} sent nothing through Session Manager within {} s; check that the relay listener runs on 127.0.0.1:{} there.",
                    START_LIMIT.as_secs(),
                    self.settings.relay_port
                );
                return Err(self.fail_start(why));
            }
            match self.read_more(POLL) {
                Ok(()) => {}
                Err(Read::Channel(e)) => {
                    let why = explain_channel(&id, self.settings.relay_port, &e);
                    return Err(self.fail_start(why));
                }
                Err(Read::Stream(e)) => {
                    let why = format!("The relay stream from {id} broke: {e}.");
                    return Err(self.fail_start(why));
                }
            }
        }
        self.last_seen = Instant::now();
        self.meter = Meter {
            since: Instant::now(),
            packets: 0,
            bytes_at: self.channel_stats().bytes,
        };
        log_msg!(
            "relay running on {id} (UDP {}:{}) over SSM session {}{}",
            self.relay.listen_addr,
            self.relay.listen_port,
            s.session_id,
            if self.unpacker.compressed() {
                ", stream compressed"
            } else {
                ""
            }
        );
        Ok(true)
    }

    /// Ends the session after a failed start; returns `why`.
    fn fail_start(&mut self, why: String) -> String {
        self.end_session();
        why
    }

    fn end_session(&mut self) {
        if let Some(mut c) = self.channel.take() {
            let s = c.stats;
            self.stats_before.messages += s.messages;
            self.stats_before.bytes += s.bytes;
            self.stats_before.duplicates += s.duplicates;
            self.stats_before.reordered += s.reordered;
            self.stats_before.acks_sent += s.acks_sent;
            self.stats_before.retransmits += s.retransmits;
            c.close();
        }
        if let Some(id) = self.session_id.take() {
            self.control.terminate(&id);
        }
    }

    /// Moves what the channel delivers (waiting at most `wait` when nothing is buffered)
    /// through the unpacker into the decoder.
    fn read_more(&mut self, wait: Duration) -> Result<(), Read> {
        if self.wire_at == self.wire_end && !self.unpacker.has_more() {
            let Some(c) = self.channel.as_mut() else {
                return Err(Read::Channel(ChannelError::Closed("no session".into())));
            };
            let n = c
                .read_timeout(&mut self.wire, wait)
                .map_err(Read::Channel)?;
            (self.wire_at, self.wire_end) = (0, n);
            if n == 0 {
                return Ok(());
            }
        }
        let took = self
            .unpacker
            .feed(&self.wire[self.wire_at..self.wire_end], &mut self.decoder)
            .map_err(Read::Stream)?;
        self.wire_at += took;
        Ok(())
    }

    fn drain(&mut self, batch: &mut Batch) -> Result<(), Lost> {
        while !batch.is_full() {
            let r = match self.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    return Err(Lost::Fatal(format!(
                        "The relay stream from {} broke: {e}.",
                        self.settings.instance_id
                    )))
                }
            };
            self.last_seen = Instant::now();
            self.drops_now = r.drops();
            match r.kind() {
                Kind::Datagram => {
                    if let Some(src) = r.source() {
                        batch.push(r.payload(), src, r.time());
                        self.meter.packets += 1;
                    }
                }
                Kind::Heartbeat | Kind::Other(_) => {}
                Kind::Error => {
                    let text = String::from_utf8_lossy(r.payload()).trim().to_string();
                    return Err(Lost::Fatal(format!(
                        "The relay on {} stopped: {}.",
                        self.settings.instance_id,
                        text.trim_end_matches('.')
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every [`RATE_EVERY`]: the packet and byte rate against the SSM ceiling.
    fn report_rate(&mut self, status: &dyn Fn(&str)) {
        let secs = self.meter.since.elapsed().as_secs_f64();
        if secs < RATE_EVERY.as_secs_f64() {
            return;
        }
        let bytes = self.channel_stats().bytes;
        let bps = (bytes - self.meter.bytes_at) as f64 / secs;
        let pps = self.meter.packets as f64 / secs;
        let s = self.channel_stats();
        log_info!(
            "SSM channel: {} messages, {} duplicates, {} reordered, {} retransmitted",
            s.messages,
            s.duplicates,
            s.reordered,
            s.retransmits
        );
        status(&format!(
            "Capturing over SSM from {}: {:.0} packets/s, {:.0} kB/s of about {} kB/s that SSM carries at most{}",
            self.settings.instance_id,
            pps,
            bps / 1000.0,
            CEILING_BYTES_PER_S / 1000,
            if bps > 0.6 * CEILING_BYTES_PER_S as f64 {
                "; near that limit the collector drops packets: set a snaplen or a narrower capture filter"
            } else {
                ""
            }
        ));
        self.meter = Meter {
            since: Instant::now(),
            packets: 0,
            bytes_at: bytes,
        };
    }

    fn recover(&mut self, lost: Lost, status: &dyn Fn(&str)) -> io::Result<()> {
        let why = match lost {
            Lost::Fatal(m) => return Err(io::Error::other(m)),
            Lost::Tunnel(why) => why,
        };
        let id = self.settings.instance_id.clone();
        self.end_session();
        if self
            .reconnected_at
            .is_some_and(|t| t.elapsed() < RECONNECT_GRACE)
        {
            return Err(io::Error::other(format!(
                "The SSM session to {id} was lost again ({why}) soon after a reconnect; the capture stopped. Check the collector and its SSM agent."
            )));
        }
        log_msg!("SSM session to {id} lost: {why}; reconnecting once");
        status(&format!("SSM session to {id} lost ({why}); reconnecting"));
        self.drops_before += u64::from(self.drops_now);
        self.drops_now = 0;
        self.reconnected_at = Some(Instant::now());
        let stop = self.stop.clone();
        match self.start(status, stop.as_deref(), true) {
            Ok(false) => Err(io::Error::other(format!(
                "stopped while reconnecting to {id}"
            ))),
            Err(_) if stop.is_some_and(|s| s.load(Ordering::Relaxed)) => Err(io::Error::other(
                format!("stopped while reconnecting to {id}"),
            )),
            Ok(true) => {
                status(&format!("Reconnected to {id} over SSM; capturing"));
                Ok(())
            }
            Err(e) => Err(io::Error::other(format!(
                "The SSM session to {id} was lost ({why}) and reconnecting failed: {}",
                e.trim_end_matches('.').to_string() + "."
            ))),
        }
    }
}

impl DatagramSource for SsmCollector {
    fn recv_batch(&mut self, batch: &mut Batch, status: &dyn Fn(&str)) -> io::Result<usize> {
        batch.clear();
        // Not called for a while (the capture was busy): silence meanwhile is not a loss.
        if self.last_call.elapsed() > SILENCE {
            self.last_seen = Instant::now();
        }
        self.last_call = Instant::now();
        let deadline = Instant::now() + POLL;
        loop {
            if let Err(lost) = self.drain(batch) {
                if batch.is_empty() {
                    self.recover(lost, status)?;
                    continue;
                }
                return Ok(batch.len());
            }
            self.report_rate(status);
            if !batch.is_empty() || self.decoder.has_record() {
                return Ok(batch.len());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if self.last_seen.elapsed() > SILENCE {
                    let lost = Lost::Tunnel(format!("nothing for {} s", SILENCE.as_secs()));
                    self.recover(lost, status)?;
                    continue;
                }
                return Ok(0);
            }
            match self.read_more(left) {
                Ok(()) => {}
                Err(Read::Stream(e)) => {
                    let why = format!(
                        "The relay stream from {} broke: {e}.",
                        self.settings.instance_id
                    );
                    self.recover(Lost::Fatal(why), status)?;
                }
                Err(Read::Channel(
                    e @ (ChannelError::Unsupported(_) | ChannelError::PortUnreachable),
                )) => {
                    let why =
                        explain_channel(&self.settings.instance_id, self.settings.relay_port, &e);
                    self.recover(Lost::Fatal(why), status)?;
                }
                Err(Read::Channel(ChannelError::Closed(why))) => {
                    self.recover(Lost::Tunnel(format!("the session ended: {why}")), status)?
                }
                Err(Read::Channel(e)) => self.recover(Lost::Tunnel(e.to_string()), status)?,
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
            "Relay on {} (UDP {}) over SSM, about 1 MB/s at most",
            self.settings.instance_id, self.relay.listen_port
        )
    }
}

impl Drop for SsmCollector {
    fn drop(&mut self) {
        self.end_session();
    }
}

/// A data-channel failure as the user's sentence.
pub fn explain_channel(instance: &str, port: u16, e: &ChannelError) -> String {
    let tidy = |s: &str| s.trim().trim_end_matches('.').to_string();
    match e {
        ChannelError::Connect(s) => format!(
            "Cannot open the Session Manager data channel to {instance} ({}); check that this machine reaches ssmmessages.<region>.amazonaws.com on TCP 443 (firewall, proxy).",
            tidy(s)
        ),
        ChannelError::Refused(s) => format!(
            "Session Manager refused the data channel to {instance} ({}): the session token was rejected or expired; start the capture again.",
            tidy(s)
        ),
        ChannelError::Closed(s) => format!(
            "The Session Manager session to {instance} ended before the relay started ({}); check that the relay listener runs on 127.0.0.1:{port} there.",
            tidy(s)
        ),
        ChannelError::PortUnreachable => format!(
            "The SSM agent on {instance} could not connect to the relay on 127.0.0.1:{port}; start the relay listener there first."
        ),
        ChannelError::Unsupported(s) => format!(
            "The Session Manager session to {instance} needs {}, which awsvpc does not support; turn off KMS encryption in the Session Manager preferences or use --connect ssh.",
            tidy(s)
        ),
        ChannelError::Timeout(s) => format!(
            "The SSM agent on {instance} did not complete the session ({}); check the agent's log (/var/log/amazon/ssm/amazon-ssm-agent.log) and update the agent.",
            tidy(s)
        ),
        ChannelError::Lost(s) => format!(
            "The Session Manager data channel to {instance} broke ({}); start the capture again.",
            tidy(s)
        ),
    }
}

/// Buffers on the collector, kept small over SSM. The session carries ~1 MB/s, so what
/// does not fit must be dropped (and counted) at once: measured with the loopback agent
/// (benches/ssm_throughput.rs), the relay's default 8 MiB socket buffer and a TCP send
/// buffer left to autotune held ~20 s of packets when the mirror offered more than the
/// session carries, so every packet arrived ~20 s late. 1 MiB of datagrams (~700 whole
/// frames) and 64 KiB of stream keep a burst, not a backlog.
const RELAY_RCVBUF: u32 = 1 << 20;
const RELAY_SNDBUF: u32 = 64 << 10;
/// zlib level of the relay's stream over SSM (see benches/ssm_throughput.rs).
pub const RELAY_ZLIB_LEVEL: u32 = 6;

/// Where the relay listener takes the relay from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayAt<'a> {
    /// Inside the listener script (base64): one self-contained command.
    Inline,
    /// A file on the instance (the collector's user data writes it).
    File(&'a str),
}

/// The relay listener, in Python (3.6+, standard library). Started as root (Run Command),
/// it first becomes `nobody`: neither it nor the relay needs a privilege. It accepts connections on
/// 127.0.0.1:`tcp_port` and runs the embedded relay for each with the connection as its
/// stdout (each later relay waits for the previous one's UDP port, as after a lost SSH
/// tunnel). It exits after `idle_exit_s` seconds with no relay running (0: never). `relay.py`
/// itself is unchanged: it only ever writes to its stdout.
pub fn relay_listener_script(
    relay: &RelayOptions,
    tcp_port: u16,
    idle_exit_s: u32,
    at: RelayAt,
) -> String {
    relay_listener_script_with(relay, tcp_port, idle_exit_s, at, RELAY_ZLIB_LEVEL)
}

/// [`relay_listener_script`] with another zlib level (0: an uncompressed stream; for the
/// benchmark's comparison).
pub fn relay_listener_script_with(
    relay: &RelayOptions,
    tcp_port: u16,
    idle_exit_s: u32,
    at: RelayAt,
    zlib_level: u32,
) -> String {
    let mut relay = relay.clone();
    relay.bind_wait_s = relay.bind_wait_s.max(15);
    let mut args = relay.args();
    args.extend(["--rcvbuf".to_string(), RELAY_RCVBUF.to_string()]);
    // Over ~1 MB/s, headers compress: more packets through the same session.
    if zlib_level > 0 {
        args.extend(["--zlib".to_string(), zlib_level.to_string()]);
    }
    let args = args
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(",");
    let source = match at {
        RelayAt::Inline => format!(
            "base64.b64decode(\"{}\").decode()",
            base64(SOURCE.as_bytes())
        ),
        RelayAt::File(path) => format!("open(\"{path}\").read()"),
    };
    format!(
        r#"import base64,os,socket,subprocess,sys,time
S={source}
A=[{args}]
if os.getuid()==0:
    import pwd
    u=pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(u.pw_gid)
    os.setuid(u.pw_uid)
l=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
l.bind(("127.0.0.1",{tcp_port}))
l.listen(4)
l.settimeout(1.0)
kids=[]
idle=time.time()
while True:
    try:
        c,_=l.accept()
    except socket.timeout:
        kids=[k for k in kids if k.poll() is None]
        if kids:
            idle=time.time()
        elif {idle_exit_s}>0 and time.time()-idle>{idle_exit_s}:
            sys.exit(0)
        continue
    c.setsockopt(socket.SOL_SOCKET,socket.SO_SNDBUF,{RELAY_SNDBUF})
    kids.append(subprocess.Popen([sys.executable,"-c",S]+A,stdin=subprocess.DEVNULL,stdout=c.fileno()))
    c.close()
    idle=time.time()
"#
    )
}

/// A shell command (for SSM `SendCommand` with `AWS-RunShellScript`) that starts
/// [`relay_listener_script`] with the relay inline in the background and returns. The
/// script contains no single quote.
pub fn relay_listener_command(relay: &RelayOptions, tcp_port: u16, idle_exit_s: u32) -> String {
    format!(
        "nohup python3 -c '{}' </dev/null >/dev/null 2>&1 &",
        relay_listener_script(relay, tcp_port, idle_exit_s, RelayAt::Inline)
    )
}

/// Standard base64 (RFC 4648, padded).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn the_listener_command_quotes_safely() {
        let r = RelayOptions {
            listen_addr: "0.0.0.0".parse().unwrap(),
            listen_port: 4789,
            snaplen: Some(DEFAULT_SNAPLEN),
            bind_wait_s: 0,
        };
        let script = relay_listener_script(&r, 4790, 600, RelayAt::Inline);
        assert!(!script.contains('\''));
        assert!(script.contains(r#""--bind-wait","15""#));
        assert!(script.contains(r#""--snaplen","136""#));
        let cmd = relay_listener_command(&r, 4790, 600);
        assert!(cmd.starts_with("nohup python3 -c '") && cmd.ends_with(" &"));
    }

    #[test]
    fn channel_errors_are_one_sentence() {
        for e in [
            ChannelError::Connect("x".into()),
            ChannelError::Refused("bad token.".into()),
            ChannelError::Closed("y".into()),
            ChannelError::PortUnreachable,
            ChannelError::Unsupported("KMS session encryption (key k)".into()),
            ChannelError::Timeout("t".into()),
            ChannelError::Lost("l".into()),
        ] {
            let s = explain_channel("i-0abc", 4790, &e);
            assert!(
                s.contains("i-0abc") && s.ends_with('.') && !s.contains('\n'),
                "{s}"
            );
            assert!(!s.contains(".."), "{s}");
        }
    }
}
