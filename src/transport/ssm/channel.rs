//! A Session Manager data channel client: the WebSocket that `StartSession`'s `StreamUrl`
//! names, carrying a *port* session as a byte stream (reference §1.2–1.6).
//!
//! Blocking and single-threaded on purpose: the capture's receive thread calls
//! [`Channel::read_timeout`] in its loop, and everything the protocol needs happens inside
//! that call — acknowledging each `output_stream_data` in order, buffering a bounded number
//! that arrive early, re-acknowledging duplicates, resending our own unacknowledged input
//! after the retransmission timeout, answering pings. A receive thread that stops calling
//! stops acknowledging, so the agent holds its data back (flow control for free).
//!
//! The handshake claims [`CLIENT_VERSION`] `1.0.0`: the agent multiplexes a port session with
//! smux only when the document's type is `LocalPortForwarding` *and* the client claims
//! 1.1.70 or later (`agent/session/plugins/port/port.go`). Below that it runs *basic* mode,
//! where output payloads are the raw TCP stream of the one connection the agent made, which
//! is all a relay stream needs; smux v1 would add framing, a keepalive and no flow control.
//! The only other version gate in the agent (separate stdout/stderr) concerns shell sessions.

use super::message::{
    self, action_status, kind, payload, port_flag, Header, Message, ProcessedClientAction,
};
use crate::{log_debug, log_info};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message as Frame, WebSocket};

/// The plugin version awsvpc claims in the handshake: below 1.1.70, so port sessions run in
/// basic mode (no smux).
pub const CLIENT_VERSION: &str = "1.0.0";
/// Input payloads are cut to this size, as the plugin does for port sessions.
pub const CHUNK: usize = 1024;
/// Received bytes held for the reader; beyond this, new output is not acknowledged so the
/// agent keeps it.
const READY_LIMIT: usize = 8 << 20;
/// Our input messages awaiting acknowledgement; beyond this, writes wait.
const UNACKED_LIMIT: usize = 1000;
/// Resends of one message before the channel counts as lost (about a minute at the 1 s
/// RTO ceiling).
const MAX_RESENDS: u32 = 60;
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ChannelOptions {
    pub client_version: String,
    /// TCP connect, TLS and the WebSocket upgrade.
    pub connect_timeout: Duration,
    /// From the token to the agent's HandshakeComplete.
    pub handshake_timeout: Duration,
    /// Output messages kept that arrived ahead of a missing one (each ≤ 1 KB).
    pub reorder_limit: usize,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            client_version: CLIENT_VERSION.into(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            reorder_limit: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// TCP, TLS or the WebSocket upgrade failed.
    Connect(String),
    /// The gateway closed the channel before the agent's handshake: the token was refused.
    Refused(String),
    /// The session ended (`channel_closed`, a close frame); the text is the service's.
    Closed(String),
    /// The agent could not connect to the port on the instance.
    PortUnreachable,
    /// The session needs something awsvpc does not do (KMS encryption, a non-port session).
    Unsupported(String),
    Timeout(String),
    /// The connection broke.
    Lost(String),
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::Connect(s) => write!(f, "cannot open the data channel: {s}"),
            ChannelError::Refused(s) => write!(f, "the data channel was refused: {s}"),
            ChannelError::Closed(s) => write!(f, "the session ended: {s}"),
            ChannelError::PortUnreachable => {
                write!(f, "the SSM agent could not connect to the port")
            }
            ChannelError::Unsupported(s) => write!(f, "the session needs {s}"),
            ChannelError::Timeout(s) => write!(f, "{s}"),
            ChannelError::Lost(s) => write!(f, "the data channel broke: {s}"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Counters since the channel opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// `output_stream_data` messages taken in order.
    pub messages: u64,
    /// Output payload bytes delivered.
    pub bytes: u64,
    /// Output messages seen again (re-acknowledged, not delivered twice).
    pub duplicates: u64,
    /// Output messages that arrived ahead of a missing one and were buffered.
    pub reordered: u64,
    pub acks_sent: u64,
    /// Our input messages sent again after the retransmission timeout.
    pub retransmits: u64,
}

struct Pending {
    seq: i64,
    bytes: Vec<u8>,
    sent: Instant,
    resends: u32,
}

/// The plugin's and agent's retransmission timeout: Jacobson/Karels with RTT₀ 100 ms,
/// RTTVAR₀ 0, RTO₀ 200 ms, α 1/8, β 1/4, 10 ms granularity, 1 s ceiling (§1.4).
#[derive(Debug, Clone, Copy)]
struct Rto {
    srtt: f64,
    rttvar: f64,
    rto: Duration,
}

impl Default for Rto {
    fn default() -> Self {
        Rto {
            srtt: 0.1,
            rttvar: 0.0,
            rto: Duration::from_millis(200),
        }
    }
}

impl Rto {
    fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_secs_f64();
        self.rttvar = 0.75 * self.rttvar + 0.25 * (self.srtt - r).abs();
        self.srtt = 0.875 * self.srtt + 0.125 * r;
        let rto = self.srtt + (4.0 * self.rttvar).max(0.010);
        self.rto = Duration::from_secs_f64(rto.min(1.0));
    }
}

struct Early {
    payload_type: u32,
    payload: Vec<u8>,
}

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// An open data channel of a port session.
pub struct Channel {
    ws: Ws,
    opts: ChannelOptions,
    /// Next output sequence number to deliver.
    next_in: i64,
    early: BTreeMap<i64, Early>,
    /// Next input sequence number to send.
    next_out: i64,
    unacked: VecDeque<Pending>,
    rto: Rto,
    ready: VecDeque<u8>,
    handshake_seen: bool,
    open: bool,
    closed: Option<String>,
    /// A failure found while handling a message, reported once the bytes before it are read.
    failed: Option<ChannelError>,
    read_timeout: Option<Duration>,
    pub stats: ChannelStats,
    agent_version: String,
    session_properties: serde_json::Value,
    customer_message: String,
    /// The gateway's last text frame (it explains refusals in JSON text).
    gateway_said: Option<String>,
}

impl Channel {
    /// Dials `url` (`wss://…` from StartSession, or `ws://` in tests), sends the token and
    /// completes the agent's handshake.
    pub fn open(url: &str, token: &str, opts: &ChannelOptions) -> Result<Channel, ChannelError> {
        let started = Instant::now();
        let request = url
            .into_client_request()
            .map_err(|e| ChannelError::Connect(format!("bad stream URL: {e}")))?;
        let uri = request.uri();
        let host = uri
            .host()
            .ok_or_else(|| ChannelError::Connect("the stream URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("ws") {
            80
        } else {
            443
        });
        let tcp = connect_tcp(&host, port, opts.connect_timeout)?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(opts.connect_timeout));
        let _ = tcp.set_write_timeout(Some(opts.connect_timeout));
        let ws = match tungstenite::client_tls_with_config(request, tcp, None, None) {
            Ok((ws, _response)) => ws,
            Err(HandshakeError::Interrupted(_)) => {
                return Err(ChannelError::Connect(format!(
                    "{host}:{port} did not complete the WebSocket upgrade within {} s",
                    opts.connect_timeout.as_secs()
                )))
            }
            Err(HandshakeError::Failure(e)) => return Err(ChannelError::Connect(upgrade_error(e))),
        };
        let mut c = Channel {
            ws,
            opts: opts.clone(),
            next_in: 0,
            early: BTreeMap::new(),
            next_out: 0,
            unacked: VecDeque::new(),
            rto: Rto::default(),
            ready: VecDeque::new(),
            handshake_seen: false,
            open: false,
            closed: None,
            failed: None,
            read_timeout: None,
            stats: ChannelStats::default(),
            agent_version: String::new(),
            session_properties: serde_json::Value::Null,
            customer_message: String::new(),
            gateway_said: None,
        };
        c.set_write_timeout(WRITE_TIMEOUT);
        let hello = message::OpenDataChannel {
            message_schema_version: "1.0".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            token_value: token.to_string(),
            client_id: uuid::Uuid::new_v4().to_string(),
            client_version: opts.client_version.clone(),
        };
        let text = serde_json::to_string(&hello).unwrap_or_default();
        c.ws.send(Frame::text(text))
            .map_err(|e| ChannelError::Connect(format!("sending the token failed: {e}")))?;
        let deadline = started + opts.handshake_timeout;
        while !c.open {
            if let Some(e) = c.failed.take() {
                return Err(e);
            }
            if let Some(why) = c.closed.take() {
                return Err(if c.handshake_seen {
                    ChannelError::Closed(why)
                } else {
                    ChannelError::Refused(c.gateway_said.take().unwrap_or(why))
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ChannelError::Timeout(if c.handshake_seen {
                    "the SSM agent started the handshake but did not complete it".into()
                } else {
                    format!(
                        "no handshake from the SSM agent within {} s of opening the data channel",
                        opts.handshake_timeout.as_secs()
                    )
                }));
            }
            c.pump(left.min(Duration::from_millis(200)))?;
        }
        log_info!(
            "SSM data channel open (agent {}, session properties {}){}",
            c.agent_version,
            c.session_properties,
            if c.customer_message.is_empty() {
                String::new()
            } else {
                format!(": {}", c.customer_message.trim())
            }
        );
        Ok(c)
    }

    /// The agent's version from its handshake.
    pub fn agent_version(&self) -> &str {
        &self.agent_version
    }

    /// Reads what arrived, waiting at most `wait`. `Ok(0)`: nothing yet. After the session
    /// ended, the bytes that came before the end are still returned, then the error.
    pub fn read_timeout(&mut self, buf: &mut [u8], wait: Duration) -> Result<usize, ChannelError> {
        let deadline = Instant::now() + wait;
        loop {
            if !self.ready.is_empty() {
                let n = buf.len().min(self.ready.len());
                let (a, b) = self.ready.as_slices();
                let from_a = n.min(a.len());
                buf[..from_a].copy_from_slice(&a[..from_a]);
                buf[from_a..n].copy_from_slice(&b[..n - from_a]);
                self.ready.drain(..n);
                return Ok(n);
            }
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            if let Some(why) = &self.closed {
                return Err(ChannelError::Closed(why.clone()));
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(0);
            }
            self.pump(left)?;
        }
    }

    /// Sends `data` as `input_stream_data` (≤ [`CHUNK`]-byte messages), each kept until
    /// acknowledged and resent after the retransmission timeout.
    pub fn send(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        for chunk in data.chunks(CHUNK) {
            let until = Instant::now() + Duration::from_secs(30);
            while self.unacked.len() >= UNACKED_LIMIT {
                if Instant::now() > until {
                    return Err(ChannelError::Timeout(
                        "the SSM agent stopped acknowledging input".into(),
                    ));
                }
                self.pump(Duration::from_millis(100))?;
                if let Some(why) = &self.closed {
                    return Err(ChannelError::Closed(why.clone()));
                }
            }
            self.send_input(payload::OUTPUT, chunk)?;
        }
        Ok(())
    }

    /// Asks the agent to end the session (flag TerminateSession) and closes the WebSocket;
    /// best effort, without waiting.
    pub fn close(&mut self) {
        if self.closed.is_none() {
            let _ = self.send_input(
                payload::FLAG,
                &message::flag_payload(port_flag::TERMINATE_SESSION),
            );
        }
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
        self.closed.get_or_insert_with(|| "closed by awsvpc".into());
    }

    fn stream(&self) -> Option<&TcpStream> {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(s) => Some(s),
            MaybeTlsStream::Rustls(s) => Some(&s.sock),
            _ => None,
        }
    }

    fn set_write_timeout(&mut self, t: Duration) {
        if let Some(s) = self.stream() {
            let _ = s.set_write_timeout(Some(t));
        }
    }

    fn set_read_timeout(&mut self, t: Duration) {
        let t = t.max(Duration::from_millis(1));
        if self.read_timeout != Some(t) {
            if let Some(s) = self.stream() {
                let _ = s.set_read_timeout(Some(t));
            }
            self.read_timeout = Some(t);
        }
    }

    /// Reads at most one WebSocket message (waiting up to `wait`), handles it, resends
    /// what is overdue and flushes.
    fn pump(&mut self, wait: Duration) -> Result<(), ChannelError> {
        // Never wait past the head's retransmission time.
        let wait = match self.unacked.front() {
            Some(p) => wait.min(
                (p.sent + self.rto.rto)
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10)),
            ),
            None => wait,
        };
        self.set_read_timeout(wait);
        match self.ws.read() {
            Ok(Frame::Binary(b)) => self.on_binary(&b)?,
            Ok(Frame::Text(t)) => {
                // The gateway speaks JSON text only for errors.
                log_info!("SSM data channel said: {}", t.as_str());
                self.gateway_said = Some(t.as_str().trim().to_string());
            }
            Ok(Frame::Close(f)) => {
                let why = match f {
                    Some(f) if !f.reason.is_empty() => format!("{} ({})", f.reason, f.code),
                    Some(f) => format!("close code {}", f.code),
                    None => "the gateway closed the connection".into(),
                };
                self.closed.get_or_insert(why);
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                self.closed
                    .get_or_insert_with(|| "the gateway closed the connection".into());
            }
            Err(e) => {
                if self.closed.is_some() {
                    return Ok(());
                }
                return Err(ChannelError::Lost(e.to_string()));
            }
        }
        self.resend_overdue()?;
        self.flush()
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        match self.ws.flush() {
            Ok(()) => Ok(()),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(_) if self.closed.is_some() => Ok(()),
            Err(e) => Err(ChannelError::Lost(e.to_string())),
        }
    }

    fn write_frame(&mut self, bytes: Vec<u8>) -> Result<(), ChannelError> {
        match self.ws.write(Frame::Binary(bytes.into())) {
            Ok(()) => Ok(()),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(()) // kept in tungstenite's buffer, written on the next flush
            }
            Err(_) if self.closed.is_some() => Ok(()),
            Err(e) => Err(ChannelError::Lost(e.to_string())),
        }
    }

    fn send_input(&mut self, payload_type: u32, data: &[u8]) -> Result<(), ChannelError> {
        let seq = self.next_out;
        self.next_out += 1;
        let bytes = message::encode(
            &Header {
                message_type: kind::INPUT_STREAM_DATA,
                schema_version: 1,
                created_ms: message::now_ms(),
                sequence_number: seq,
                flags: 0,
                message_id: message::new_id(),
                payload_type,
            },
            data,
        );
        self.unacked.push_back(Pending {
            seq,
            bytes: bytes.clone(),
            sent: Instant::now(),
            resends: 0,
        });
        self.write_frame(bytes)?;
        self.flush()
    }

    /// Resends the oldest unacknowledged input if its timeout passed (head only, as the
    /// plugin and agent do).
    fn resend_overdue(&mut self) -> Result<(), ChannelError> {
        let rto = self.rto.rto;
        let Some(head) = self.unacked.front_mut() else {
            return Ok(());
        };
        if head.sent.elapsed() < rto {
            return Ok(());
        }
        head.resends += 1;
        head.sent = Instant::now();
        if head.resends > MAX_RESENDS {
            return Err(ChannelError::Lost(format!(
                "input message {} was never acknowledged",
                head.seq
            )));
        }
        let bytes = head.bytes.clone();
        self.stats.retransmits += 1;
        log_debug!("SSM: resending input {}", self.unacked[0].seq);
        self.write_frame(bytes)
    }

    fn on_binary(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        let m = match Message::new_checked(data) {
            Ok(m) => m,
            Err(e) => {
                log_info!("SSM: ignoring a malformed message: {e}");
                return Ok(());
            }
        };
        if let Err(e) = m.validate() {
            // Not acknowledged: the agent sends it again.
            log_info!("SSM: ignoring a {} message: {e}", m.message_type());
            return Ok(());
        }
        match m.message_type() {
            kind::OUTPUT_STREAM_DATA => self.on_output(&m),
            kind::ACKNOWLEDGE => {
                self.on_ack(m.payload());
                Ok(())
            }
            kind::CHANNEL_CLOSED => {
                let c: message::ChannelClosed =
                    serde_json::from_slice(m.payload()).unwrap_or_default();
                let why = if c.output.trim().is_empty() {
                    "the session was closed".to_string()
                } else {
                    c.output.trim().to_string()
                };
                log_info!("SSM: channel_closed: {why}");
                self.closed.get_or_insert(why);
                Ok(())
            }
            kind::START_PUBLICATION | kind::PAUSE_PUBLICATION => {
                log_debug!("SSM: {}", m.message_type());
                Ok(())
            }
            other => {
                log_debug!("SSM: ignoring message type {other:?}");
                Ok(())
            }
        }
    }

    fn ack(&mut self, m: &Message<&[u8]>) -> Result<(), ChannelError> {
        let bytes = message::encode_ack(m, message::new_id(), message::now_ms());
        self.stats.acks_sent += 1;
        self.write_frame(bytes)
    }

    fn on_output(&mut self, m: &Message<&[u8]>) -> Result<(), ChannelError> {
        let seq = m.sequence_number();
        if seq < self.next_in {
            // Our acknowledgement was lost or late: say it again, deliver nothing.
            self.stats.duplicates += 1;
            return self.ack(m);
        }
        if seq > self.next_in {
            if self.early.contains_key(&seq) {
                self.stats.duplicates += 1;
                return self.ack(m);
            }
            if self.early.len() >= self.opts.reorder_limit {
                return Ok(()); // not acknowledged: the agent resends it
            }
            self.early.insert(
                seq,
                Early {
                    payload_type: m.payload_type(),
                    payload: m.payload().to_vec(),
                },
            );
            self.stats.reordered += 1;
            return self.ack(m);
        }
        if m.payload_type() == payload::OUTPUT && self.ready.len() >= READY_LIMIT {
            return Ok(()); // the reader is behind: leave it with the agent
        }
        self.ack(m)?;
        self.next_in += 1;
        self.deliver(m.payload_type(), m.payload())?;
        while let Some(e) = self.early.remove(&self.next_in) {
            self.next_in += 1;
            self.deliver(e.payload_type, &e.payload)?;
        }
        Ok(())
    }

    fn deliver(&mut self, payload_type: u32, data: &[u8]) -> Result<(), ChannelError> {
        self.stats.messages += 1;
        match payload_type {
            payload::OUTPUT => {
                self.stats.bytes += data.len() as u64;
                self.ready.extend(data);
            }
            payload::HANDSHAKE_REQUEST => self.on_handshake_request(data)?,
            payload::HANDSHAKE_COMPLETE => {
                let done: message::HandshakeComplete =
                    serde_json::from_slice(data).unwrap_or(message::HandshakeComplete {
                        handshake_time_to_complete: 0,
                        customer_message: String::new(),
                    });
                self.customer_message = done.customer_message;
                self.open = true;
            }
            payload::ENC_CHALLENGE_REQUEST => {
                self.failed
                    .get_or_insert(ChannelError::Unsupported("KMS session encryption".into()));
            }
            payload::FLAG => {
                if message::parse_flag(data) == Some(port_flag::CONNECT_TO_PORT_ERROR) {
                    self.failed.get_or_insert(ChannelError::PortUnreachable);
                }
            }
            payload::ERROR | payload::STDERR => {
                log_info!("SSM agent: {}", String::from_utf8_lossy(data).trim_end());
            }
            other => log_debug!("SSM: ignoring payload type {other}"),
        }
        Ok(())
    }

    fn on_handshake_request(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        self.handshake_seen = true;
        let req: message::HandshakeRequest = serde_json::from_slice(data).map_err(|e| {
            ChannelError::Lost(format!("the agent's handshake request is not JSON: {e}"))
        })?;
        self.agent_version = req.agent_version.clone();
        let mut processed = Vec::new();
        let mut problem = None;
        for a in &req.requested_client_actions {
            let (status, error) = match a.action_type.as_str() {
                "SessionType" => {
                    let t = a.action_parameters["SessionType"].as_str().unwrap_or("");
                    self.session_properties = a.action_parameters["Properties"].clone();
                    if t == "Port" {
                        (action_status::SUCCESS, String::new())
                    } else {
                        let e = format!("a {t:?} session (awsvpc needs a port session)");
                        problem.get_or_insert(ChannelError::Unsupported(e.clone()));
                        (action_status::FAILED, e)
                    }
                }
                "KMSEncryption" => {
                    let key = a.action_parameters["KMSKeyId"].as_str().unwrap_or("?");
                    let e = format!("KMS session encryption (key {key})");
                    problem.get_or_insert(ChannelError::Unsupported(e.clone()));
                    (action_status::UNSUPPORTED, e)
                }
                other => {
                    let e = format!("the handshake action {other}");
                    problem.get_or_insert(ChannelError::Unsupported(e.clone()));
                    (action_status::UNSUPPORTED, e)
                }
            };
            processed.push(ProcessedClientAction {
                action_type: a.action_type.clone(),
                action_status: status,
                action_result: serde_json::Value::Null,
                error,
            });
        }
        let errors: Vec<String> = processed
            .iter()
            .filter(|p| !p.error.is_empty())
            .map(|p| p.error.clone())
            .collect();
        let resp = message::HandshakeResponse {
            client_version: self.opts.client_version.clone(),
            processed_client_actions: processed,
            errors: (!errors.is_empty()).then_some(errors),
        };
        let body = serde_json::to_vec(&resp).unwrap_or_default();
        self.send_input(payload::HANDSHAKE_RESPONSE, &body)?;
        match problem {
            Some(p) => Err(p),
            None => Ok(()),
        }
    }

    fn on_ack(&mut self, data: &[u8]) {
        let Ok(a) = serde_json::from_slice::<message::AcknowledgeContent>(data) else {
            log_debug!("SSM: ignoring an acknowledgement that is not JSON");
            return;
        };
        // The agent matches by sequence number only; so do we.
        if let Some(i) = self.unacked.iter().position(|p| p.seq == a.sequence_number) {
            let p = self.unacked.remove(i).expect("index from position");
            if p.resends == 0 {
                self.rto.sample(p.sent.elapsed()); // Karn: only never-resent messages
            }
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.close();
    }
}

/// Blocking reads for a byte-stream consumer: waits for data; the end of the session is
/// end of file.
impl Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.read_timeout(buf, Duration::from_secs(1)) {
                Ok(0) if !buf.is_empty() => continue,
                Ok(n) => return Ok(n),
                Err(ChannelError::Closed(_)) => return Ok(0),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

impl Write for Channel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Channel::flush(self).map_err(io::Error::other)
    }
}

fn connect_tcp(host: &str, port: u16, limit: Duration) -> Result<TcpStream, ChannelError> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ChannelError::Connect(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, limit) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(ChannelError::Connect(match last {
        Some(e) => format!("cannot connect to {host} port {port}: {e}"),
        None => format!("{host} has no address"),
    }))
}

fn upgrade_error(e: tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(r) => {
            let body = r
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .unwrap_or_default();
            format!(
                "the gateway answered the WebSocket upgrade with HTTP {}{}",
                r.status(),
                if body.is_empty() {
                    String::new()
                } else {
                    format!(" ({body})")
                }
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmission_timeout_follows_the_reference() {
        let mut r = Rto::default();
        assert_eq!(r.rto, Duration::from_millis(200));
        r.sample(Duration::from_millis(100));
        // rttvar 0, srtt 0.1 → 0.1 + max(0.01, 0) = 110 ms
        assert_eq!(r.rto.as_millis(), 110);
        for _ in 0..50 {
            r.sample(Duration::from_secs(5));
        }
        assert_eq!(r.rto, Duration::from_secs(1), "capped at 1 s");
    }
}
