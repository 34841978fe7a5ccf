//! A loopback test peer that plays the Session Manager gateway and the SSM agent (reference
//! `transports.md` §3 items 1–5): it requires the OpenDataChannel frame with the session
//! token, runs the agent's handshake (SessionType Port, LocalPortForwarding; it refuses a
//! client that claims a version that would make the agent multiplex with smux), dials the
//! port "on the instance", and forwards that TCP stream as `output_stream_data` in ≤ 1024-byte
//! messages with SYN on sequence 0 and the agent's 1 ms pause per read, checking every
//! acknowledgement, resending unacknowledged output after a timeout, and injecting faults
//! (out-of-order, duplicates, withheld messages and acknowledgements, a frozen session).
//!
//! Its framing is its own, written from the reference's offset table (module `wire`), not
//! awsvpc's codec: a test is not awsvpc's encoder agreeing with its decoder.

use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
use aws_sdk_ssm::operation::start_session::StartSessionOutput;
use aws_sdk_ssm::operation::terminate_session::TerminateSessionOutput;
use aws_sdk_ssm::primitives::DateTime;
use aws_sdk_ssm::types::{InstanceInformation, PingStatus};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use awsvpc::transport::ssm::session::Control;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message as Frame;

/// The instance the peer says it forwards for.
pub const INSTANCE: &str = "i-0123456789abcdef0";
/// The session token the peer requires in OpenDataChannel.
pub const TOKEN: &str = "token-for-s-1";

/// The data channel message, framed from the reference's table (§1.3) by explicit offsets.
mod wire {
    use sha2::{Digest, Sha256};

    // off len field
    //   0   4 HeaderLength (116)      4  32 MessageType (space padded)
    //  36   4 SchemaVersion          40   8 CreatedDate (ms)
    //  48   8 SequenceNumber         56   8 Flags
    //  64  16 MessageId (LSB half first)
    //  80  32 PayloadDigest (SHA-256) 112 4 PayloadType   116 4 PayloadLength   120 payload
    fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
        b[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    pub fn build(kind: &str, seq: i64, flags: u64, ptype: u32, id: [u8; 16], p: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 120 + p.len()];
        put(&mut b, 0, &116u32.to_be_bytes());
        put(&mut b, 4, &[b' '; 32]);
        put(&mut b, 4, kind.as_bytes());
        put(&mut b, 36, &1u32.to_be_bytes());
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        put(&mut b, 40, &ms.to_be_bytes());
        put(&mut b, 48, &seq.to_be_bytes());
        put(&mut b, 56, &flags.to_be_bytes());
        put(&mut b, 64, &id[8..16]);
        put(&mut b, 72, &id[0..8]);
        put(&mut b, 80, &Sha256::digest(p));
        put(&mut b, 112, &ptype.to_be_bytes());
        put(&mut b, 116, &(p.len() as u32).to_be_bytes());
        put(&mut b, 120, p);
        b
    }

    pub struct Msg {
        pub kind: String,
        pub seq: i64,
        pub flags: u64,
        pub ptype: u32,
        /// Canonical byte order (halves swapped back).
        pub id: [u8; 16],
        pub payload: Vec<u8>,
    }

    /// Parses and checks a message from awsvpc exactly as the reference lays it out.
    pub fn parse(b: &[u8]) -> Result<Msg, String> {
        if b.len() < 120 {
            return Err(format!("{} bytes", b.len()));
        }
        if u32_at(b, 0) != 116 {
            return Err(format!("HeaderLength {}", u32_at(b, 0)));
        }
        let t = &b[4..36];
        let n = t.iter().position(|&c| c == b' ').unwrap_or(32);
        if t[n..].iter().any(|&c| c != b' ') {
            return Err(format!("MessageType not space-padded: {t:?}"));
        }
        if u32_at(b, 36) != 1 {
            return Err("SchemaVersion".into());
        }
        if u64_at(b, 40) < 1_600_000_000_000 {
            return Err("CreatedDate is not in milliseconds".into());
        }
        let len = u32_at(b, 116) as usize;
        if b.len() != 120 + len {
            return Err(format!("PayloadLength {len} for {} bytes", b.len()));
        }
        let payload = b[120..].to_vec();
        if b[80..112] != Sha256::digest(&payload)[..] {
            return Err("PayloadDigest".into());
        }
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&b[64..72]);
        id[..8].copy_from_slice(&b[72..80]);
        // Version 4 / RFC 4122 variant, seen at wire bytes 78 and 64 only if the halves
        // were swapped.
        if b[78] >> 4 != 4 || b[64] >> 6 != 2 {
            return Err(format!("MessageId halves not swapped: {:02x?}", &b[64..80]));
        }
        Ok(Msg {
            kind: String::from_utf8_lossy(&t[..n]).to_string(),
            seq: u64_at(b, 48) as i64,
            flags: u64_at(b, 56),
            ptype: u32_at(b, 112),
            id,
            payload,
        })
    }

    pub fn uuid_text(id: &[u8; 16]) -> String {
        let h: String = id.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

#[derive(Clone, Default)]
pub struct Faults {
    /// Send data message k+1 before k when k % n == n-1.
    pub swap_every: usize,
    /// Send data message k twice when k % n == n-1.
    pub duplicate_every: usize,
    /// Do not send data message k (k % n == n-1) until its retransmission.
    pub withhold_every: usize,
    /// Do not acknowledge the first data input, so awsvpc must resend it.
    pub withhold_first_input_ack: bool,
    /// On the first connection: after this many data messages, send and forward nothing.
    pub freeze_after: Option<usize>,
    /// Forward as fast as possible instead of the agent's 1 ms pause per read.
    pub unpaced: bool,
}

#[derive(Default, Debug)]
pub struct Report {
    pub connections: usize,
    pub tokens_refused: usize,
    pub client_versions: Vec<String>,
    pub handshake_responses: Vec<serde_json::Value>,
    pub data_sent: usize,
    pub resent: usize,
    pub acks: usize,
    pub duplicate_inputs: usize,
    /// Input bytes forwarded to the port.
    pub input: Vec<u8>,
    pub terminate_flags: usize,
    /// Output still unacknowledged when a connection ended.
    pub unacked_at_end: usize,
    pub problems: Vec<String>,
}

pub struct Peer {
    pub url: String,
    pub report: Arc<Mutex<Report>>,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Peer {
    pub fn start(target: SocketAddr, faults: Faults, connect_retry: Duration) -> Peer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "ws://127.0.0.1:{}/v1/data-channel/s-1?role=publish_subscribe&cell-number=AAAA",
            l.local_addr().unwrap().port()
        );
        l.set_nonblocking(true).unwrap();
        let report = Arc::new(Mutex::new(Report::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (report.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((tcp, _)) => {
                        let (r, s, f) = (r.clone(), s.clone(), faults.clone());
                        let first = n == 0;
                        n += 1;
                        conns.push(std::thread::spawn(move || {
                            let mut c = Conn::new(r.clone(), s, f, first);
                            if let Err(e) = c.run(tcp, target, connect_retry) {
                                r.lock().unwrap().problems.push(e);
                            }
                            r.lock().unwrap().unacked_at_end += c.pending.len();
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Peer {
            url,
            report,
            stop,
            thread: Some(thread),
        }
    }
}

struct Pending {
    seq: i64,
    bytes: Vec<u8>,
    sent: Instant,
}

/// One WebSocket connection: the gateway and the agent's side of one session.
struct Conn {
    report: Arc<Mutex<Report>>,
    stop: Arc<AtomicBool>,
    faults: Faults,
    first: bool,
    out_seq: i64,
    ids: HashMap<i64, [u8; 16]>,
    pending: VecDeque<Pending>,
    next_id: u64,
    next_in: i64,
    early_input: std::collections::BTreeMap<i64, wire::Msg>,
    data_index: usize,
    held: Option<Vec<u8>>,
    handshake_done: bool,
    tcp: Option<TcpStream>,
    ended: bool,
    first_input_ack_withheld: bool,
}

type Ws = tungstenite::WebSocket<TcpStream>;

/// Reads until awsvpc closes (at most 2 s), so nothing it sent is reset unread.
fn linger(ws: &mut Ws) {
    let until = Instant::now() + Duration::from_secs(2);
    let _ = ws.get_ref().set_nonblocking(true);
    while Instant::now() < until {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return,
        }
    }
}

fn vcmp(a: &str, b: &str) -> std::cmp::Ordering {
    let p = |s: &str| -> Vec<u64> { s.split('.').map(|x| x.parse().unwrap_or(0)).collect() };
    p(a).cmp(&p(b))
}

impl Conn {
    fn new(report: Arc<Mutex<Report>>, stop: Arc<AtomicBool>, faults: Faults, first: bool) -> Self {
        Conn {
            report,
            stop,
            faults,
            first,
            out_seq: 0,
            ids: HashMap::new(),
            pending: VecDeque::new(),
            next_id: 1,
            next_in: 0,
            early_input: Default::default(),
            data_index: 0,
            held: None,
            handshake_done: false,
            tcp: None,
            ended: false,
            first_input_ack_withheld: false,
        }
    }

    fn id(&mut self) -> [u8; 16] {
        self.next_id += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_id.to_be_bytes());
        id[8..].copy_from_slice(&(self.next_id * 7919).to_be_bytes());
        id[6] = 0x40 | (id[6] & 0x0f);
        id[8] = 0x80 | (id[8] & 0x3f);
        id
    }

    fn frozen(&self) -> bool {
        self.first
            && self
                .faults
                .freeze_after
                .is_some_and(|n| self.data_index >= n)
    }

    /// A failed send ends the connection (awsvpc closed it), which is not a finding.
    fn send_raw(&mut self, ws: &mut Ws, bytes: Vec<u8>) -> Result<(), String> {
        match ws.send(Frame::Binary(bytes.into())) {
            Ok(()) => {}
            // Non-blocking: kept by tungstenite and flushed on the next turn.
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.ended = true,
        }
        Ok(())
    }

    /// Sends output_stream_data as the agent does (SYN on sequence 0), with the faults.
    fn send_output(&mut self, ws: &mut Ws, ptype: u32, payload: &[u8]) -> Result<(), String> {
        let seq = self.out_seq;
        self.out_seq += 1;
        let id = self.id();
        self.ids.insert(seq, id);
        let flags = if seq == 0 { 1 } else { 0 };
        let bytes = wire::build("output_stream_data", seq, flags, ptype, id, payload);
        self.pending.push_back(Pending {
            seq,
            bytes: bytes.clone(),
            sent: Instant::now(),
        });
        if ptype != 1 {
            return self.send_raw(ws, bytes);
        }
        let k = self.data_index;
        self.data_index += 1;
        self.report.lock().unwrap().data_sent += 1;
        let hit = |n: usize| n > 0 && k % n == n - 1;
        if hit(self.faults.withhold_every) {
            return Ok(()); // sent only when the retransmission timer fires
        }
        if let Some(h) = self.held.take() {
            self.send_raw(ws, bytes.clone())?;
            self.send_raw(ws, h)?;
        } else if hit(self.faults.swap_every) {
            self.held = Some(bytes.clone());
        } else {
            self.send_raw(ws, bytes.clone())?;
        }
        if hit(self.faults.duplicate_every) {
            self.send_raw(ws, bytes)?;
        }
        Ok(())
    }

    fn ack_input(&mut self, ws: &mut Ws, m: &wire::Msg) -> Result<(), String> {
        let body = serde_json::json!({
            "AcknowledgedMessageType": m.kind,
            "AcknowledgedMessageId": wire::uuid_text(&m.id),
            "AcknowledgedMessageSequenceNumber": m.seq,
            "IsSequentialMessage": true,
        });
        let id = self.id();
        let bytes = wire::build("acknowledge", 0, 3, 0, id, body.to_string().as_bytes());
        self.send_raw(ws, bytes)
    }

    fn on_message(&mut self, ws: &mut Ws, raw: &[u8]) -> Result<(), String> {
        let m = wire::parse(raw).map_err(|e| format!("bad message from awsvpc: {e}"))?;
        match m.kind.as_str() {
            "acknowledge" => {
                if m.seq != 0 || m.flags != 3 || m.ptype != 0 {
                    return Err(format!(
                        "acknowledge with seq {} flags {} type {}",
                        m.seq, m.flags, m.ptype
                    ));
                }
                let a: serde_json::Value =
                    serde_json::from_slice(&m.payload).map_err(|e| format!("ack JSON: {e}"))?;
                let seq = a["AcknowledgedMessageSequenceNumber"]
                    .as_i64()
                    .ok_or("ack without sequence number")?;
                let want = self.ids.get(&seq).map(wire::uuid_text);
                if a["AcknowledgedMessageType"] != "output_stream_data"
                    || a["IsSequentialMessage"] != true
                    || a["AcknowledgedMessageId"].as_str().map(str::to_string) != want
                {
                    return Err(format!("wrong acknowledgement {a} (sent id {want:?})"));
                }
                self.pending.retain(|p| p.seq != seq);
                self.report.lock().unwrap().acks += 1;
            }
            "input_stream_data" => {
                if m.flags != 0 {
                    return Err(format!("input flags {}", m.flags));
                }
                let withhold = self.faults.withhold_first_input_ack
                    && m.ptype == 1
                    && !self.first_input_ack_withheld;
                if withhold {
                    self.first_input_ack_withheld = true;
                    return Ok(()); // not processed either: awsvpc must resend it
                }
                self.ack_input(ws, &m)?;
                if m.seq < self.next_in {
                    self.report.lock().unwrap().duplicate_inputs += 1;
                    return Ok(());
                }
                if m.seq > self.next_in {
                    self.early_input.insert(m.seq, m); // as the agent: buffered, acknowledged
                    return Ok(());
                }
                self.next_in += 1;
                self.process_input(m)?;
                while let Some(e) = self.early_input.remove(&self.next_in) {
                    self.next_in += 1;
                    self.process_input(e)?;
                }
            }
            other => return Err(format!("unexpected message type {other}")),
        }
        Ok(())
    }

    fn process_input(&mut self, m: wire::Msg) -> Result<(), String> {
        match m.ptype {
            6 => {
                let v: serde_json::Value = serde_json::from_slice(&m.payload)
                    .map_err(|e| format!("handshake response JSON: {e}"))?;
                let cv = v["ClientVersion"].as_str().unwrap_or("").to_string();
                let mut r = self.report.lock().unwrap();
                r.client_versions.push(cv.clone());
                r.handshake_responses.push(v.clone());
                drop(r);
                // The agent's rule (port.go): smux iff LocalPortForwarding and
                // ClientVersion >= 1.1.70. This peer is a basic-mode agent.
                if vcmp(&cv, "1.1.70") != std::cmp::Ordering::Less {
                    return Err(format!("client {cv} would get smux"));
                }
                let a = &v["ProcessedClientActions"][0];
                if a["ActionType"] != "SessionType" || a["ActionStatus"] != 1 {
                    return Err(format!("handshake refused: {v}"));
                }
                self.handshake_done = true;
            }
            1 => {
                self.report.lock().unwrap().input.extend(&m.payload);
                if let Some(t) = self.tcp.as_mut() {
                    let _ = t.write_all(&m.payload);
                }
            }
            10 => {
                if m.payload == [0, 0, 0, 2] {
                    self.report.lock().unwrap().terminate_flags += 1;
                    self.ended = true;
                }
            }
            other => return Err(format!("unexpected input payload type {other}")),
        }
        Ok(())
    }

    /// Reads what awsvpc sent (without waiting). False when the connection ended.
    fn read_ws(&mut self, ws: &mut Ws) -> Result<bool, String> {
        loop {
            match ws.read() {
                Ok(Frame::Binary(b)) => self.on_message(ws, &b)?,
                Ok(Frame::Close(_)) => return Ok(false),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(true)
                }
                Err(_) => return Ok(false),
            }
        }
    }

    // tungstenite's header callback returns its own (large) error type.
    #[allow(clippy::result_large_err)]
    fn run(&mut self, tcp: TcpStream, target: SocketAddr, retry: Duration) -> Result<(), String> {
        tcp.set_nonblocking(false).unwrap();
        tcp.set_nodelay(true).unwrap(); // as Go's net package does
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The session's port: the agent takes it from the session document; here an emulator
        // that knows it may append `port=N` to the stream URL it hands out.
        let mut uri = String::new();
        let mut ws = tungstenite::accept_hdr(
            tcp,
            |req: &tungstenite::handshake::server::Request,
             resp: tungstenite::handshake::server::Response| {
                uri = req.uri().to_string();
                Ok(resp)
            },
        )
        .map_err(|e| format!("upgrade: {e}"))?;
        let port = uri
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("port=")?.parse::<u16>().ok());
        let target = SocketAddr::new(target.ip(), port.unwrap_or(target.port()));
        self.report.lock().unwrap().connections += 1;
        // 1. OpenDataChannel: a text frame with the token.
        let first = ws.read().map_err(|e| format!("no OpenDataChannel: {e}"))?;
        let Frame::Text(t) = first else {
            return Err(format!("first frame is not text: {first:?}"));
        };
        let open: serde_json::Value =
            serde_json::from_str(t.as_str()).map_err(|e| format!("OpenDataChannel: {e}"))?;
        if open["MessageSchemaVersion"] != "1.0" || open["RequestId"].as_str().is_none() {
            return Err(format!("OpenDataChannel fields: {open}"));
        }
        if open["TokenValue"] != TOKEN {
            self.report.lock().unwrap().tokens_refused += 1;
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "Authentication failed: invalid token".into(),
            }));
            let _ = ws.flush();
            linger(&mut ws);
            return Ok(());
        }
        ws.get_ref().set_nonblocking(true).unwrap();
        // 2. The agent's handshake.
        let request = serde_json::json!({
            "AgentVersion": "3.3.987.0",
            "RequestedClientActions": [{
                "ActionType": "SessionType",
                "ActionParameters": {"SessionType": "Port", "Properties": {
                    "portNumber": target.port().to_string(), "type": "LocalPortForwarding"}}
            }]
        });
        let t0 = Instant::now();
        self.send_output(&mut ws, 5, request.to_string().as_bytes())?;
        while !self.handshake_done {
            if t0.elapsed() > Duration::from_secs(15) || !self.read_ws(&mut ws)? {
                return Err("no handshake response within 15 s".into());
            }
            self.resend(&mut ws)?;
            std::thread::sleep(Duration::from_millis(1));
        }
        // 3. HandshakeComplete, then the port plugin starts: basic mode dials the port.
        let done = serde_json::json!({"HandshakeTimeToComplete": t0.elapsed().as_nanos() as i64, "CustomerMessage": ""});
        self.send_output(&mut ws, 7, done.to_string().as_bytes())?;
        let until = Instant::now() + retry;
        let tcp = loop {
            match TcpStream::connect(target) {
                Ok(t) => break t,
                Err(e) if Instant::now() >= until => {
                    let closed = serde_json::json!({
                        "MessageId": "00000000-0000-4000-8000-000000000000",
                        "CreatedDate": "2024-10-15T00:00:00.000Z",
                        "DestinationId": INSTANCE, "SessionId": "s-1",
                        "MessageType": "channel_closed", "SchemaVersion": 1,
                        "Output": format!("Unable to connect to specified port: {e}"),
                    });
                    let id = self.id();
                    let b =
                        wire::build("channel_closed", 0, 0, 0, id, closed.to_string().as_bytes());
                    self.send_raw(&mut ws, b)?;
                    linger(&mut ws);
                    return Ok(());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        tcp.set_nonblocking(true).unwrap();
        self.tcp = Some(tcp);
        // 4. Forward: ≤ 1024 bytes per message, one read per loop, then 1 ms (port_basic.go).
        let mut buf = [0u8; 1024];
        while !self.stop.load(Ordering::Relaxed) && !self.ended {
            if !self.read_ws(&mut ws)? {
                break;
            }
            if self.frozen() {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let n = match self.tcp.as_mut().unwrap().read(&mut buf) {
                Ok(0) => {
                    self.tcp = None;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(_) => break,
            };
            if n > 0 {
                self.send_output(&mut ws, 1, &buf[..n])?;
            }
            self.resend(&mut ws)?;
            let _ = ws.flush();
            if !self.faults.unpaced || n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Let the last acknowledgements arrive.
        let until = Instant::now() + Duration::from_millis(500);
        while !self.pending.is_empty() && Instant::now() < until && !self.frozen() {
            if !self.read_ws(&mut ws)? {
                break;
            }
            self.resend(&mut ws)?;
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = ws.close(None);
        let _ = ws.flush();
        Ok(())
    }

    /// The agent's retransmission: only the oldest unacknowledged message, after 300 ms.
    fn resend(&mut self, ws: &mut Ws) -> Result<(), String> {
        let Some(p) = self.pending.front_mut() else {
            return Ok(());
        };
        if p.sent.elapsed() < Duration::from_millis(300) {
            return Ok(());
        }
        p.sent = Instant::now();
        let b = p.bytes.clone();
        self.report.lock().unwrap().resent += 1;
        self.send_raw(ws, b)
    }
}

/// The control plane: the SDK's mocks, counting calls; StartSession returns `url` and
/// `token`.
pub struct Calls {
    pub starts: AtomicUsize,
    pub terminates: AtomicUsize,
    pub documents: Mutex<Vec<String>>,
}

pub fn control(url: &str, token: &str, ping: Option<PingStatus>, calls: Arc<Calls>) -> Control {
    let describe =
        mock!(aws_sdk_ssm::Client::describe_instance_information).then_output(move || {
            let mut out = DescribeInstanceInformationOutput::builder();
            if let Some(p) = ping.clone() {
                out = out.instance_information_list(
                    InstanceInformation::builder()
                        .instance_id(INSTANCE)
                        .ping_status(p)
                        .agent_version("3.3.987.0")
                        .last_ping_date_time(DateTime::from_secs(1_728_950_400))
                        .build(),
                );
            }
            out.build()
        });
    let (u, t, c) = (url.to_string(), token.to_string(), calls.clone());
    let start = mock!(aws_sdk_ssm::Client::start_session).then_compute_output(move |req| {
        let n = c.starts.fetch_add(1, Ordering::SeqCst) + 1;
        c.documents.lock().unwrap().push(format!(
            "{} {} {:?}",
            req.target().unwrap_or(""),
            req.document_name().unwrap_or(""),
            req.parameters()
        ));
        StartSessionOutput::builder()
            .session_id(format!("s-{n}"))
            .token_value(&t)
            .stream_url(&u)
            .build()
    });
    let c = calls.clone();
    let terminate = mock!(aws_sdk_ssm::Client::terminate_session).then_compute_output(move |req| {
        c.terminates.fetch_add(1, Ordering::SeqCst);
        TerminateSessionOutput::builder()
            .session_id(req.session_id().unwrap_or(""))
            .build()
    });
    let rules = [describe, start, terminate];
    let client = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &rules);
    Control::new(client, None).unwrap()
}

pub fn calls() -> Arc<Calls> {
    Arc::new(Calls {
        starts: AtomicUsize::new(0),
        terminates: AtomicUsize::new(0),
        documents: Mutex::new(Vec::new()),
    })
}
