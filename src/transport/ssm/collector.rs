//! A remote collector reached through Session Manager: the relay listens on the instance's
//! loopback, a port session (`AWS-StartPortForwardingSession`, basic mode) carries its stream
//! to this machine, and [`SsmCollector`] reads it with the relay client that reads ssh's
//! stdout ([`SsmLink`] is its [`Link`]): bounded start, loss detection by the relay's
//! heartbeat ([`crate::transport::SILENCE`]), one reconnect (a new session), drop counters
//! carried across.
//!
//! Throughput: the SSM agent reads a port at most 1024 bytes at a time with a 1 ms pause
//! (`agent/session/plugins/port/port_basic.go`), so a session carries about 1 MB/s at most
//! (0.6–0.8 MB/s reported). The status bar says so, and shows the packet rate achieved.

use super::channel::{Channel, ChannelError, ChannelOptions, ChannelStats};
use super::session::Control;
use crate::log_info;
use crate::relay::stream::{Decoder, StreamError, Unpacker};
use crate::relay::RelayOptions;
use crate::transport::relay_client::{Attempt, Cut, Link, RelayClient, Words};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The relay listener's scripts, where the relay's remote side lives (`crate::relay`).
pub use crate::relay::remote::{
    base64, relay_listener_command, relay_listener_script, relay_listener_script_with, RelayAt,
    RELAY_ZLIB_LEVEL,
};
pub use crate::transport::relay_client::START_LIMIT;

/// What one session carries at most (bytes per second), for the status bar.
pub const CEILING_BYTES_PER_S: u64 = 1_000_000;
pub use super::DEFAULT_SNAPLEN;
/// How long to wait for an agent that is not online yet (an ephemeral collector's agent
/// registers tens of seconds after boot).
pub const ONLINE_WAIT: Duration = Duration::from_secs(120);
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

/// A Session Manager port session to the relay listener, as a [`Link`] of the relay client.
pub struct SsmLink {
    control: Control,
    settings: SsmSettings,
    channel: Option<Channel>,
    session_id: Option<String>,
    /// Since when the channel is open ([`START_LIMIT`] counts from there).
    opened: Instant,
    /// The channel's failure behind the last [`Cut::Tunnel`], for a failed start's sentence.
    failed: Option<ChannelError>,
    /// Inflates the relay's compressed stream (the listener asks for it) into the decoder.
    unpacker: Unpacker,
    /// What the channel delivered and the unpacker has not taken yet.
    wire: Vec<u8>,
    wire_at: usize,
    wire_end: usize,
    meter: Meter,
    /// Channel counters of earlier sessions.
    stats_before: ChannelStats,
}

/// The relay's datagrams through a Session Manager port session.
pub type SsmCollector = RelayClient<SsmLink>;

/// What one channel read may bring at most (the agent sends ≤ 1 KB per message).
const WIRE_BUFFER: usize = 64 << 10;

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
        let link = SsmLink {
            control,
            settings,
            channel: None,
            session_id: None,
            opened: Instant::now(),
            failed: None,
            unpacker: Unpacker::new(),
            wire: vec![0; WIRE_BUFFER],
            wire_at: 0,
            wire_end: 0,
            meter: Meter {
                since: Instant::now(),
                packets: 0,
                bytes_at: 0,
            },
            stats_before: ChannelStats::default(),
        };
        Self::open(Box::new(link), relay, status, stop)
    }

    /// Whether the relay's stream arrives compressed.
    pub fn compressed(&self) -> bool {
        self.link().unpacker.compressed()
    }

    /// The data channel's counters over all sessions.
    pub fn channel_stats(&self) -> ChannelStats {
        self.link().channel_stats()
    }

    /// The current session's id.
    pub fn session_id(&self) -> Option<&str> {
        self.link().session_id.as_deref()
    }
}

impl SsmLink {
    fn channel_stats(&self) -> ChannelStats {
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

    fn explain(&self, e: &ChannelError) -> String {
        explain_channel(&self.settings.instance_id, self.settings.relay_port, e)
    }

    /// A channel failure as the relay client's cut: what another session will not fix is
    /// a sentence now; the rest is a lost tunnel.
    fn cut(&mut self, e: ChannelError) -> Cut {
        match e {
            ChannelError::Unsupported(_) | ChannelError::PortUnreachable => {
                Cut::Fatal(self.explain(&e))
            }
            e => {
                let why = match &e {
                    ChannelError::Closed(why) => format!("the session ended: {why}"),
                    e => e.to_string(),
                };
                self.failed = Some(e);
                Cut::Tunnel(why)
            }
        }
    }

    /// Every [`RATE_EVERY`]: the packet and byte rate against the SSM ceiling.
    fn report_rate(&mut self, status: &dyn Fn(&str)) {
        let secs = self.meter.since.elapsed().as_secs_f64();
        if secs < RATE_EVERY.as_secs_f64() {
            return;
        }
        let s = self.channel_stats();
        let bps = (s.bytes - self.meter.bytes_at) as f64 / secs;
        let pps = self.meter.packets as f64 / secs;
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
            bytes_at: s.bytes,
        };
    }
}

impl Link for SsmLink {
    fn name(&self) -> &str {
        &self.settings.instance_id
    }

    fn words(&self) -> Words {
        Words {
            tunnel: "SSM session",
            check: "its SSM agent",
            reconnected: " over SSM",
        }
    }

    /// A reconnect (`again`) waits at most [`START_LIMIT`] for the agent: the capture's
    /// receive thread is blocked meanwhile, until a stop.
    fn connect(&mut self, a: &Attempt) -> Result<bool, String> {
        let (status, stop) = (a.status, a.stop);
        let id = self.settings.instance_id.clone();
        status(&format!("Checking the SSM agent on {id}"));
        let online_wait = if a.again {
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
                let why = self.explain(&e);
                self.end_session();
                return Err(why);
            }
        };
        self.channel = Some(channel);
        self.unpacker.reset();
        (self.wire_at, self.wire_end) = (0, 0);
        self.failed = None;
        self.opened = Instant::now();
        Ok(true)
    }

    /// Moves what the channel delivers (waiting at most `wait` when nothing is buffered)
    /// through the unpacker into the decoder.
    fn read(&mut self, into: &mut Decoder, wait: Duration) -> Result<bool, Cut> {
        if self.wire_at == self.wire_end && !self.unpacker.has_more() {
            let got = match self.channel.as_mut() {
                Some(c) => c.read_timeout(&mut self.wire, wait),
                None => Err(ChannelError::Closed("no session".into())),
            };
            let n = got.map_err(|e| self.cut(e))?;
            (self.wire_at, self.wire_end) = (0, n);
            if n == 0 {
                return Ok(false);
            }
        }
        let took = self
            .unpacker
            .feed(&self.wire[self.wire_at..self.wire_end], into)
            .map_err(|e| {
                Cut::Fatal(format!(
                    "The relay stream from {} broke: {e}.",
                    self.settings.instance_id
                ))
            })?;
        self.wire_at += took;
        Ok(true)
    }

    fn start_clock(&self) -> Option<Instant> {
        Some(self.opened)
    }

    fn not_a_relay(&self, e: &StreamError) -> String {
        format!(
            "{}: {e}; check what listens on port {} there.",
            self.settings.instance_id, self.settings.relay_port
        )
    }

    fn no_answer(&self) -> String {
        format!(
            "The relay on {} sent nothing through Session Manager within {} s; check that the relay listener runs on 127.0.0.1:{} there.",
            self.settings.instance_id,
            START_LIMIT.as_secs(),
            self.settings.relay_port
        )
    }

    fn explain_end(&mut self, _unparsed: &str) -> String {
        self.end_session();
        let e = self
            .failed
            .take()
            .unwrap_or_else(|| ChannelError::Closed("no session".into()));
        self.explain(&e)
    }

    fn close(&mut self) -> Option<String> {
        self.end_session();
        None
    }

    fn running(&mut self) -> String {
        self.meter = Meter {
            since: Instant::now(),
            packets: 0,
            bytes_at: self.channel_stats().bytes,
        };
        format!(
            "SSM session {}{}",
            self.session_id.as_deref().unwrap_or_default(),
            if self.unpacker.compressed() {
                ", stream compressed"
            } else {
                ""
            }
        )
    }

    fn progress(&mut self, delivered: usize, status: &dyn Fn(&str)) {
        self.meter.packets += delivered as u64;
        self.report_rate(status);
    }

    fn describe(&self, relay: &RelayOptions) -> String {
        format!(
            "Relay on {} (UDP {}) over SSM, about 1 MB/s at most",
            self.settings.instance_id, relay.listen_port
        )
    }
}

impl Drop for SsmLink {
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

#[cfg(test)]
mod tests {
    use super::*;

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
