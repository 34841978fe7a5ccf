//! The relay stream: what `relay.py` writes on a remote collector and awsvpc reads back
//! through a transport. Integers big-endian unless marked LE:
//!
//! ```text
//! stream  = "AWSVPCR\x01" record* | "AWSVPCZ\x01" zlib(record*)
//! record  = kind:u8 family:u8 length:u16 drops:u32 time_ns:u64 src_port:u16 reserved:u16
//!           src_addr:16 body
//! kind    = 1 datagram   body = payload[length]
//!         | 2 heartbeat  no body
//!         | 3 error      body = UTF-8 sentence[length]; the relay exits
//!         | 4 batch      length = count k (1..=64), family = the socket's (4 or 6),
//!                        time_ns = the relay's clock at receipt, drops = 0; body =
//!                        len:u32le[k] sockaddr[k] control:56[k] datagram[len[0]] ...
//! ```
//!
//! `drops` is the collector socket's cumulative kernel drop counter (SO_RXQ_OVFL) and
//! `time_ns` the kernel receive time (SO_TIMESTAMPNS), so timing and loss are the
//! collector's, not the tunnel's. A batch is what one `recvmmsg(2)` returned, in the
//! kernel's own little-endian layout (64-bit Linux): the relay slices the buffers the kernel
//! filled and runs no Python per datagram. Each sockaddr is a `sockaddr_in` (16 bytes) or,
//! for family 6, a `sockaddr_in6` (28); each control area holds the kernel's control
//! messages (SCM_TIMESTAMPNS, and SO_RXQ_OVFL once the socket has dropped), zero-filled
//! after the last. The compressed form (`relay.py --zlib`, for Session Manager's ~1 MB/s)
//! is one zlib stream, sync-flushed after every write; [`Unpacker`] turns either form into
//! what [`Decoder`] reads, and [`Decoder::next_record`] hands out one [`Item`] per datagram
//! whichever record carried it. Views are bounds checked and never panic on input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

pub const MAGIC: &[u8; 8] = b"AWSVPCR\x01";
/// The header of the compressed stream.
pub const MAGIC_Z: &[u8; 8] = b"AWSVPCZ\x01";
pub const HEADER_LEN: usize = 36;
/// The largest record: a header and a whole UDP payload.
pub const MAX_RECORD: usize = HEADER_LEN + u16::MAX as usize;
/// The most datagrams in one batch record.
pub const MAX_BATCH: usize = 64;
/// The control-message area of each datagram in a batch: SCM_TIMESTAMPNS (32 bytes) and
/// SO_RXQ_OVFL (24), as `CMSG_SPACE` lays them out on 64-bit Linux.
pub const CONTROL_LEN: usize = 56;
/// The largest sockaddr in a batch (`sockaddr_in6`).
const SOCKADDR_MAX: usize = 28;
/// Bytes scanned for the stream header before giving up: a login shell may print a banner
/// before the relay starts.
const MAGIC_SEARCH: usize = 64 * 1024;
/// The decoder's fixed buffer: the memory bound of a remote capture's receive side.
const BUFFER: usize = 4 << 20;
/// The kind byte of a batch record (see the module documentation).
const BATCH: u8 = 4;
/// Linux's values in a batch's sockaddrs and control messages (the same on every
/// architecture the relay's batch path runs on).
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOL_SOCKET: i32 = 1;
const SCM_TIMESTAMPNS: i32 = 35;
const SO_RXQ_OVFL: i32 = 40;

/// The little-endian u32 at the start of `b` (the kernel's byte order in a batch).
fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

mod field {
    use std::ops::Range;
    pub const KIND: usize = 0;
    pub const FAMILY: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const DROPS: Range<usize> = 4..8;
    pub const TIME: Range<usize> = 8..16;
    pub const SRC_PORT: Range<usize> = 16..18;
    pub const SRC_ADDR: Range<usize> = 20..36;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Datagram,
    Heartbeat,
    Error,
    /// A later relay's record kind: skipped.
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The peer did not start the relay stream; the text is what it sent instead.
    NotARelay(String),
    /// A datagram record with an address family other than 4 or 6.
    BadFamily(u8),
    /// The compressed stream does not inflate.
    BadCompression(String),
    /// A batch record that no relay writes (too many datagrams, or one too long).
    BadBatch(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::NotARelay(got) => write!(
                f,
                "the collector did not start the awsvpc relay (its output began with {got:?})"
            ),
            StreamError::BadFamily(x) => {
                write!(f, "the relay stream is corrupt (address family {x})")
            }
            StreamError::BadCompression(e) => {
                write!(f, "the relay's compressed stream is corrupt ({e})")
            }
            StreamError::BadBatch(e) => write!(f, "the relay stream is corrupt ({e})"),
        }
    }
}

/// A view of one whole record.
#[derive(Debug, Clone, Copy)]
pub struct Record<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Record<T> {
    /// `None` unless `buffer` holds a whole record (header and payload).
    pub fn new_checked(buffer: T) -> Option<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return None;
        }
        let r = Record { buffer };
        (r.buffer.as_ref().len() >= r.total_len()).then_some(r)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        u16::from_be_bytes([self.b()[r.start], self.b()[r.start + 1]])
    }

    pub fn kind(&self) -> Kind {
        match self.b()[field::KIND] {
            1 => Kind::Datagram,
            2 => Kind::Heartbeat,
            3 => Kind::Error,
            x => Kind::Other(x),
        }
    }

    pub fn family(&self) -> u8 {
        self.b()[field::FAMILY]
    }

    pub fn length(&self) -> usize {
        self.u16_at(field::LENGTH) as usize
    }

    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.length()
    }

    pub fn drops(&self) -> u32 {
        let d = &self.b()[field::DROPS];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Kernel receive time on the collector, since the Unix epoch.
    pub fn time(&self) -> Duration {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.b()[field::TIME]);
        Duration::from_nanos(u64::from_be_bytes(t))
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// The mirror source's address (the outer IP source the session's packets come from).
    pub fn source(&self) -> Option<IpAddr> {
        let a = &self.b()[field::SRC_ADDR];
        match self.family() {
            4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(a);
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.total_len()]
    }
}

impl<'a> Record<&'a [u8]> {
    fn payload_ref(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer;
        &b[HEADER_LEN..self.total_len()]
    }
}

/// One record as the transports use it: a datagram (from a kind-1 record or a batch), a
/// heartbeat, an error, or a later relay's kind.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    kind: Kind,
    drops: u32,
    time: Duration,
    source: Option<(IpAddr, u16)>,
    payload: &'a [u8],
}

impl<'a> Item<'a> {
    fn from_record(r: &Record<&'a [u8]>) -> Self {
        Item {
            kind: r.kind(),
            drops: r.drops(),
            time: r.time(),
            source: r.source().map(|a| (a, r.src_port())),
            payload: r.payload_ref(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The collector socket's cumulative kernel drop counter, as last reported.
    pub fn drops(&self) -> u32 {
        self.drops
    }

    /// Kernel receive time on the collector, since the Unix epoch.
    pub fn time(&self) -> Duration {
        self.time
    }

    /// The mirror source's address (a datagram's outer IP source).
    pub fn source(&self) -> Option<IpAddr> {
        self.source.map(|(a, _)| a)
    }

    pub fn src_port(&self) -> u16 {
        self.source.map_or(0, |(_, p)| p)
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// The datagram descriptions of the batch being handed out, copied out of the stream
/// buffer (which moves on) into a fixed array.
struct BatchState {
    meta: Box<[u8; MAX_BATCH * (4 + SOCKADDR_MAX + CONTROL_LEN)]>,
    count: usize,
    next: usize,
    addr_len: usize,
    /// The relay's clock at receipt: the time of a datagram without a kernel timestamp.
    time: Duration,
}

impl BatchState {
    fn new() -> Self {
        BatchState {
            meta: Box::new([0; MAX_BATCH * (4 + SOCKADDR_MAX + CONTROL_LEN)]),
            count: 0,
            next: 0,
            addr_len: 0,
            time: Duration::ZERO,
        }
    }

    fn pending(&self) -> bool {
        self.next < self.count
    }

    fn len(&self, i: usize) -> usize {
        le_u32(&self.meta[4 * i..]) as usize
    }

    fn sockaddr(&self, i: usize) -> &[u8] {
        let at = 4 * self.count + self.addr_len * i;
        &self.meta[at..at + self.addr_len]
    }

    fn control(&self, i: usize) -> &[u8] {
        let at = (4 + self.addr_len) * self.count + CONTROL_LEN * i;
        &self.meta[at..at + CONTROL_LEN]
    }
}

/// Bytes of a batch record after its header: lengths, sockaddrs and control areas.
fn batch_meta_len(count: usize, addr_len: usize) -> usize {
    count * (4 + addr_len + CONTROL_LEN)
}

fn sockaddr_len(family: u8) -> Option<usize> {
    match family {
        4 => Some(16),
        6 => Some(SOCKADDR_MAX),
        _ => None,
    }
}

/// A Linux `sockaddr_in` (AF_INET = 2) or `sockaddr_in6` (AF_INET6 = 10): family
/// little-endian, port big-endian. An IPv4-mapped IPv6 source is its IPv4 address, as the
/// relay's other path reports it.
fn parse_sockaddr(a: &[u8]) -> Result<(IpAddr, u16), StreamError> {
    let family = u16::from_le_bytes([a[0], a[1]]);
    let port = u16::from_be_bytes([a[2], a[3]]);
    match family {
        AF_INET => Ok((IpAddr::V4(Ipv4Addr::new(a[4], a[5], a[6], a[7])), port)),
        AF_INET6 if a.len() >= 24 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[8..24]);
            let v6 = Ipv6Addr::from(o);
            let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
            Ok((ip, port))
        }
        x => Err(StreamError::BadFamily(x.min(255) as u8)),
    }
}

/// The kernel receive time and drop counter from one datagram's control messages
/// (`struct cmsghdr { u64 len; i32 level; i32 type; }` then data, 8-byte aligned).
fn parse_control(c: &[u8]) -> (Option<Duration>, Option<u32>) {
    let (mut time, mut drops) = (None, None);
    let mut at = 0;
    while c.len() - at >= 16 {
        let h = &c[at..at + 16];
        let len = u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]));
        if len < 16 || len > (c.len() - at) as u64 {
            break; // the zero fill after the last message, or a truncated one
        }
        let len = len as usize;
        let level = i32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        let kind = i32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        let data = &c[at + 16..at + len];
        if level == SOL_SOCKET && kind == SCM_TIMESTAMPNS && data.len() >= 16 {
            let sec = i64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
            let nsec = i64::from_le_bytes(data[8..16].try_into().unwrap_or([0; 8]));
            if sec >= 0 && (0..1_000_000_000).contains(&nsec) {
                time = Some(Duration::new(sec as u64, nsec as u32));
            }
        } else if level == SOL_SOCKET && kind == SO_RXQ_OVFL && data.len() >= 4 {
            drops = Some(le_u32(data));
        }
        at += (len + 7) & !7;
        if at >= c.len() {
            break;
        }
    }
    (time, drops)
}

/// Writes one record (tests, benchmarks and the loopback test peers).
pub fn encode(
    kind: u8,
    src: Option<(IpAddr, u16)>,
    drops: u32,
    time: Duration,
    payload: &[u8],
) -> Vec<u8> {
    let len = payload.len().min(u16::MAX as usize);
    let mut v = Vec::with_capacity(HEADER_LEN + len);
    let (family, addr, port) = match src {
        Some((IpAddr::V4(a), p)) => {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&a.octets());
            (4u8, x, p)
        }
        Some((IpAddr::V6(a), p)) => (6u8, a.octets(), p),
        None => (0u8, [0u8; 16], 0),
    };
    v.push(kind);
    v.push(family);
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&drops.to_be_bytes());
    v.extend_from_slice(&(time.as_nanos() as u64).to_be_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&addr);
    v.extend_from_slice(&payload[..len]);
    v
}

/// One datagram of a batch record, for [`encode_batch`].
pub struct BatchDatagram<'a> {
    pub src: (IpAddr, u16),
    /// The kernel receive time; `None` leaves the control area without a timestamp.
    pub time: Option<Duration>,
    /// The socket's drop counter; `None` as when the socket has not dropped.
    pub drops: Option<u32>,
    pub payload: &'a [u8],
}

/// Writes one batch record as `relay.py`'s recvmmsg path does (tests, seeds, peers).
/// `family` is the relay socket's: 6 writes every source as a `sockaddr_in6`.
pub fn encode_batch(family: u8, time: Duration, datagrams: &[BatchDatagram]) -> Vec<u8> {
    let addr_len = sockaddr_len(family).unwrap_or(16);
    let k = datagrams.len();
    let mut v = Vec::with_capacity(HEADER_LEN + batch_meta_len(k, addr_len));
    v.extend_from_slice(&[BATCH, family]);
    v.extend_from_slice(&(k as u16).to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&(time.as_nanos() as u64).to_be_bytes());
    v.extend_from_slice(&[0; 20]);
    for d in datagrams {
        v.extend_from_slice(&(d.payload.len() as u32).to_le_bytes());
    }
    for d in datagrams {
        let mut sa = [0u8; SOCKADDR_MAX];
        sa[2..4].copy_from_slice(&d.src.1.to_be_bytes());
        match (family, d.src.0) {
            (4, IpAddr::V4(a)) => {
                sa[..2].copy_from_slice(&AF_INET.to_le_bytes());
                sa[4..8].copy_from_slice(&a.octets());
            }
            (_, a) => {
                let a = match a {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                sa[..2].copy_from_slice(&AF_INET6.to_le_bytes());
                sa[8..24].copy_from_slice(&a.octets());
            }
        }
        v.extend_from_slice(&sa[..addr_len]);
    }
    for d in datagrams {
        let mut c = [0u8; CONTROL_LEN];
        let mut at = 0;
        if let Some(t) = d.time {
            c[..8].copy_from_slice(&32u64.to_le_bytes());
            c[8..12].copy_from_slice(&SOL_SOCKET.to_le_bytes());
            c[12..16].copy_from_slice(&SCM_TIMESTAMPNS.to_le_bytes());
            c[16..24].copy_from_slice(&(t.as_secs() as i64).to_le_bytes());
            c[24..32].copy_from_slice(&i64::from(t.subsec_nanos()).to_le_bytes());
            at = 32;
        }
        if let Some(n) = d.drops {
            c[at..at + 8].copy_from_slice(&20u64.to_le_bytes());
            c[at + 8..at + 12].copy_from_slice(&SOL_SOCKET.to_le_bytes());
            c[at + 12..at + 16].copy_from_slice(&SO_RXQ_OVFL.to_le_bytes());
            c[at + 16..at + 20].copy_from_slice(&n.to_le_bytes());
        }
        v.extend_from_slice(&c);
    }
    for d in datagrams {
        v.extend_from_slice(d.payload);
    }
    v
}

/// Reassembles records from a byte stream read in arbitrary pieces, in a fixed buffer.
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    started: bool,
    /// Bytes from `start` already searched for the stream header: a banner arriving in
    /// small reads is scanned once, not once per read.
    searched: usize,
    /// Bytes skipped before the stream header (a shell banner), for the log.
    pub skipped: usize,
    batch: BatchState,
    /// The drop counter as last reported (a batch's datagrams carry it only once the
    /// socket has dropped).
    drops: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::with_capacity(BUFFER)
    }

    /// A decoder with a smaller buffer (fuzzing); at least two whole records fit.
    pub fn with_capacity(bytes: usize) -> Self {
        Decoder {
            buf: vec![0; bytes.max(2 * MAX_RECORD)],
            start: 0,
            end: 0,
            started: false,
            searched: 0,
            skipped: 0,
            batch: BatchState::new(),
            drops: 0,
        }
    }

    /// Forgets everything buffered: a new connection starts a new stream.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.started = false;
        self.searched = 0;
        self.skipped = 0;
        self.batch.count = 0;
        self.batch.next = 0;
        self.drops = 0;
    }

    /// True once the stream header was seen.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Free space to read into; call [`Decoder::filled`] with the bytes read. Never empty:
    /// the buffer holds several whole records and is compacted as records are taken.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 && self.buf.len() - self.end < MAX_RECORD {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes buffered and not yet taken (an unfinished record, or a banner before the
    /// stream header).
    pub fn unfinished(&self) -> usize {
        self.end - self.start
    }

    /// Decodes on from `buf`, whose bytes `at..at + len` just arrived, instead of copying
    /// them in: what is left of the current buffer ([`Decoder::unfinished`]) is moved just
    /// before them, and the buffer no longer used is given back. Refused, with `buf` given
    /// back as `Err`, when `buf` is smaller than the room the decoder guarantees (two whole
    /// records) or has less than [`Decoder::unfinished`] bytes before `at`.
    pub fn adopt(&mut self, mut buf: Vec<u8>, at: usize, len: usize) -> Result<Vec<u8>, Vec<u8>> {
        let rest = self.end - self.start;
        if buf.len() < 2 * MAX_RECORD || at < rest || at + len > buf.len() {
            return Err(buf);
        }
        buf[at - rest..at].copy_from_slice(&self.buf[self.start..self.end]);
        let old = std::mem::replace(&mut self.buf, buf);
        self.start = at - rest;
        self.end = at + len;
        Ok(old)
    }

    /// Looks for the stream header; true once it was seen.
    pub fn find_start(&mut self) -> Result<bool, StreamError> {
        if self.started {
            return Ok(true);
        }
        let have = &self.buf[self.start..self.end];
        // A header may straddle the end of the last search by up to MAGIC.len() - 1 bytes.
        let from = self
            .searched
            .saturating_sub(MAGIC.len() - 1)
            .min(have.len());
        self.searched = have.len();
        match have[from..].windows(MAGIC.len()).position(|w| w == MAGIC) {
            Some(at) => {
                let at = from + at;
                self.skipped += at;
                self.start += at + MAGIC.len();
                self.started = true;
                Ok(true)
            }
            None if have.len() >= MAGIC_SEARCH => {
                let shown = String::from_utf8_lossy(&have[..have.len().min(80)]);
                Err(StreamError::NotARelay(shown.trim().to_string()))
            }
            None => Ok(false),
        }
    }

    /// True when the next item is buffered whole (so reading more can wait): exactly when
    /// [`Decoder::next_record`] would not return `Ok(None)`.
    pub fn has_record(&self) -> bool {
        if !self.started {
            return false;
        }
        let have = self.end - self.start;
        if self.batch.pending() {
            return have >= self.batch.len(self.batch.next);
        }
        let b = &self.buf[self.start..self.end];
        if b.len() < HEADER_LEN {
            return false;
        }
        if b[field::KIND] != BATCH {
            return Record::new_checked(b).is_some();
        }
        // A batch header whose datagrams are not all here yet is taken by next_record,
        // which then waits for the first datagram; a corrupt one is an error to report.
        match Self::batch_header(b) {
            Ok((count, addr_len)) => {
                let meta = HEADER_LEN + batch_meta_len(count, addr_len);
                // (the first length is inside the metadata, so read only once it is here)
                have >= meta && have >= meta + le_u32(&b[HEADER_LEN..]) as usize
            }
            Err(_) => true,
        }
    }

    /// A batch header's datagram count and sockaddr length, checked.
    fn batch_header(b: &[u8]) -> Result<(usize, usize), StreamError> {
        let family = b[field::FAMILY];
        let addr_len = sockaddr_len(family).ok_or(StreamError::BadFamily(family))?;
        let count = u16::from_be_bytes([b[2], b[3]]) as usize;
        if count == 0 || count > MAX_BATCH {
            return Err(StreamError::BadBatch(format!(
                "a batch of {count} datagrams"
            )));
        }
        Ok((count, addr_len))
    }

    /// The next datagram, heartbeat or error, `None` when more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Item<'_>>, StreamError> {
        if !self.find_start()? {
            return Ok(None);
        }
        loop {
            if self.batch.pending() {
                let i = self.batch.next;
                let len = self.batch.len(i);
                if self.end - self.start < len {
                    return Ok(None);
                }
                let (src, port) = parse_sockaddr(self.batch.sockaddr(i))?;
                let (time, drops) = parse_control(self.batch.control(i));
                if let Some(d) = drops {
                    self.drops = d;
                }
                self.batch.next += 1;
                let at = self.start;
                self.start += len;
                return Ok(Some(Item {
                    kind: Kind::Datagram,
                    drops: self.drops,
                    time: time.unwrap_or(self.batch.time),
                    source: Some((src, port)),
                    payload: &self.buf[at..at + len],
                }));
            }
            let have = &self.buf[self.start..self.end];
            if have.len() < HEADER_LEN {
                return Ok(None);
            }
            if have[field::KIND] == BATCH {
                let (count, addr_len) = Self::batch_header(have)?;
                let meta = batch_meta_len(count, addr_len);
                if have.len() < HEADER_LEN + meta {
                    return Ok(None);
                }
                let time = Record { buffer: have }.time();
                let body = &have[HEADER_LEN..HEADER_LEN + meta];
                self.batch.meta[..meta].copy_from_slice(body);
                self.batch.count = count;
                self.batch.next = 0;
                self.batch.addr_len = addr_len;
                self.batch.time = time;
                // Every datagram must fit the room the buffer guarantees.
                if let Some(long) = (0..count)
                    .map(|i| self.batch.len(i))
                    .find(|&l| l > MAX_RECORD - HEADER_LEN)
                {
                    self.batch.count = 0;
                    return Err(StreamError::BadBatch(format!("a datagram of {long} bytes")));
                }
                self.start += HEADER_LEN + meta;
                continue;
            }
            let Some(r) = Record::new_checked(have) else {
                return Ok(None);
            };
            let total = r.total_len();
            if r.kind() == Kind::Datagram && !matches!(r.family(), 4 | 6) {
                return Err(StreamError::BadFamily(r.family()));
            }
            self.drops = r.drops();
            let at = self.start;
            self.start += total;
            let r = Record {
                buffer: &self.buf[at..at + total],
            };
            return Ok(Some(Item::from_record(&r)));
        }
    }

    /// What arrived but was never a stream: shown when the peer exits before the header.
    pub fn unparsed_text(&self) -> String {
        let have = &self.buf[self.start..self.end];
        String::from_utf8_lossy(&have[..have.len().min(200)])
            .trim()
            .to_string()
    }
}

/// Between a transport and the [`Decoder`]: passes a plain stream through and inflates a
/// compressed one, never producing more than the decoder has room for (so a small input
/// cannot inflate into unbounded memory).
pub struct Unpacker {
    mode: Mode,
    z: flate2::Decompress,
    /// The last inflate made something: more may be waiting inside the inflater.
    made: bool,
    /// The stream's first bytes, held until they show which form it is: a transport may
    /// deliver the header in pieces, and every byte offered is taken (so a caller that
    /// waits for the unpacker to take its buffer before reading more never stalls).
    head: [u8; 8],
    held: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not yet known: the first bytes decide.
    Unknown,
    Plain,
    Compressed,
}

impl Default for Unpacker {
    fn default() -> Self {
        Self::new()
    }
}

impl Unpacker {
    pub fn new() -> Self {
        Unpacker {
            mode: Mode::Unknown,
            z: flate2::Decompress::new(true),
            made: false,
            head: [0; 8],
            held: 0,
        }
    }

    /// A new connection starts a new stream.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// True once the stream turned out to be compressed.
    pub fn compressed(&self) -> bool {
        self.mode == Mode::Compressed
    }

    /// Inflated bytes may be waiting inside (the last feed made some, and the decoder's room
    /// may have cut it short): feed again, with no new input if there is none, once the
    /// decoder's records have been taken.
    pub fn has_more(&self) -> bool {
        self.made
    }

    /// Moves bytes of `wire`, as they arrived, into `decoder`. Returns how many of them it
    /// took; the rest must be offered again once the decoder's records have been taken.
    /// Offered a non-empty `wire` with the decoder's records taken, it takes at least one
    /// byte or fails: it never stalls.
    pub fn feed(&mut self, wire: &[u8], decoder: &mut Decoder) -> Result<usize, StreamError> {
        match self.mode {
            Mode::Unknown => {
                let n = (self.head.len() - self.held).min(wire.len());
                self.head[self.held..self.held + n].copy_from_slice(&wire[..n]);
                self.held += n;
                let head = &self.head[..self.held];
                if MAGIC_Z.starts_with(head) && head.len() < MAGIC_Z.len() {
                    return Ok(n);
                }
                // The decoder reads the plain form: a compressed stream's header becomes the
                // plain header, then the inflated records follow.
                let (mode, first) = if head == MAGIC_Z {
                    (Mode::Compressed, &MAGIC[..])
                } else {
                    (Mode::Plain, head)
                };
                // A new stream's decoder is empty, so its space holds the eight bytes.
                let space = decoder.space();
                let k = first.len().min(space.len());
                space[..k].copy_from_slice(&first[..k]);
                decoder.filled(k);
                self.mode = mode;
                Ok(n + self.feed(&wire[n..], decoder)?)
            }
            Mode::Plain => {
                let space = decoder.space();
                let n = wire.len().min(space.len());
                space[..n].copy_from_slice(&wire[..n]);
                decoder.filled(n);
                Ok(n)
            }
            Mode::Compressed => {
                if wire.is_empty() && !self.made {
                    return Ok(0);
                }
                let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
                let space = decoder.space();
                let room = space.len();
                let status = self
                    .z
                    .decompress(wire, space, flate2::FlushDecompress::Sync)
                    .map_err(|e| StreamError::BadCompression(e.to_string()))?;
                let produced = (self.z.total_out() - out_before) as usize;
                let took = (self.z.total_in() - in_before) as usize;
                self.made = produced > 0;
                decoder.filled(produced);
                // The relay never ends its zlib stream, and an inflater that takes nothing
                // and makes nothing would be offered the same bytes forever.
                if status == flate2::Status::StreamEnd && took < wire.len() {
                    return Err(StreamError::BadCompression(
                        "bytes after the end of the stream".into(),
                    ));
                }
                if took == 0 && produced == 0 && !wire.is_empty() && room > 0 {
                    return Err(StreamError::BadCompression("the inflater stalled".into()));
                }
                Ok(took)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = (Kind, Option<IpAddr>, u16, u32, Duration, Vec<u8>);

    fn fields(r: &Item) -> Fields {
        let p = r.payload().to_vec();
        (r.kind(), r.source(), r.src_port(), r.drops(), r.time(), p)
    }

    /// Decodes `bytes` delivered in two pieces split at `split`, checking that
    /// `has_record` foretells `next_record` once the stream header was found.
    fn decode_split(bytes: &[u8], split: usize) -> Vec<Fields> {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for piece in [&bytes[..split], &bytes[split..]] {
            d.space()[..piece.len()].copy_from_slice(piece);
            d.filled(piece.len());
            loop {
                let known = d.started();
                let waiting = d.has_record();
                let Some(r) = d.next_record().unwrap() else {
                    assert!(!waiting, "has_record without a record, split at {split}");
                    break;
                };
                assert!(
                    waiting || !known,
                    "a record without has_record, split at {split}"
                );
                got.push(fields(&r));
            }
        }
        got
    }

    fn stream(records: &[Vec<u8>]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        for r in records {
            v.extend_from_slice(r);
        }
        v
    }

    #[test]
    fn decodes_records_split_at_every_byte() {
        let src = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 4789);
        let v6 = (IpAddr::V6("2001:db8::9".parse().unwrap()), 65000);
        let t = Duration::new(1_700_000_000, 123_456_789);
        let bytes = stream(&[
            encode(1, Some(src), 0, t, b"first"),
            encode(2, None, 3, t, b""),
            encode(9, None, 3, t, b"future kind"),
            encode(1, Some(v6), 4, t, &[0xab; 300]),
        ]);
        for split in 0..bytes.len() {
            let got = decode_split(&bytes, split);
            assert_eq!(got.len(), 4, "split at {split}");
            assert_eq!(
                got[0],
                (Kind::Datagram, Some(src.0), 4789, 0, t, b"first".to_vec())
            );
            assert_eq!(got[1].0, Kind::Heartbeat);
            assert_eq!(got[1].3, 3);
            assert_eq!(got[2].0, Kind::Other(9));
            assert_eq!(
                got[3],
                (Kind::Datagram, Some(v6.0), 65000, 4, t, vec![0xab; 300])
            );
        }
    }

    #[test]
    fn decodes_batches_split_at_every_byte() {
        let t = Duration::new(1_700_000_000, 5);
        let relay_clock = Duration::new(1_700_000_001, 0);
        let a = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 4789);
        let b = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8)), 61000);
        let v6 = (IpAddr::V6("2001:db8::9".parse().unwrap()), 65000);
        let dg = |src, time, drops, payload| BatchDatagram {
            src,
            time,
            drops,
            payload,
        };
        let big = [0x5a; 1500];
        let bytes = stream(&[
            encode_batch(
                4,
                relay_clock,
                &[
                    dg(a, Some(t), None, b"one"),
                    dg(b, None, None, b""),
                    dg(a, Some(t), Some(7), &big),
                ],
            ),
            encode(2, None, 9, t, b""),
            // A v6 socket: an IPv4 sender arrives IPv4-mapped and is reported as IPv4.
            encode_batch(
                6,
                relay_clock,
                &[dg(a, Some(t), None, b"m"), dg(v6, Some(t), None, b"six")],
            ),
        ]);
        let want = vec![
            (Kind::Datagram, Some(a.0), 4789, 0, t, b"one".to_vec()),
            (Kind::Datagram, Some(b.0), 61000, 0, relay_clock, vec![]),
            (Kind::Datagram, Some(a.0), 4789, 7, t, big.to_vec()),
            (Kind::Heartbeat, None, 0, 9, t, vec![]),
            (Kind::Datagram, Some(a.0), 4789, 9, t, b"m".to_vec()),
            (Kind::Datagram, Some(v6.0), 65000, 9, t, b"six".to_vec()),
        ];
        for split in 0..bytes.len() {
            let got = decode_split(&bytes, split);
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn a_corrupt_batch_is_an_error_not_a_panic() {
        let src = (IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
        let one = |family| {
            encode_batch(
                family,
                Duration::ZERO,
                &[BatchDatagram {
                    src,
                    time: None,
                    drops: None,
                    payload: b"x",
                }],
            )
        };
        let decode = |rec: Vec<u8>| {
            let mut d = Decoder::new();
            let bytes = stream(&[rec]);
            d.space()[..bytes.len()].copy_from_slice(&bytes);
            d.filled(bytes.len());
            d.next_record().map(|r| r.is_some())
        };
        assert_eq!(decode(one(4)), Ok(true));
        assert_eq!(decode(one(5)), Err(StreamError::BadFamily(5)));
        let mut r = one(4);
        r[2..4].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(decode(r), Err(StreamError::BadBatch(_))));
        let mut r = one(4);
        r[2..4].copy_from_slice(&65u16.to_be_bytes());
        assert!(matches!(decode(r), Err(StreamError::BadBatch(_))));
        let mut r = one(4);
        r[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&70_000u32.to_le_bytes());
        assert!(matches!(decode(r), Err(StreamError::BadBatch(_))));
        let mut r = one(4);
        r[HEADER_LEN + 4] = 7; // the sockaddr's family
        assert_eq!(decode(r), Err(StreamError::BadFamily(7)));
        // Control messages that overrun their area are ignored, not read past it.
        let mut r = one(4);
        let c = HEADER_LEN + 4 + 16;
        r[c..c + 8].copy_from_slice(&200u64.to_le_bytes());
        assert_eq!(decode(r), Ok(true));
    }

    #[test]
    fn skips_a_banner_but_refuses_a_non_relay() {
        let mut d = Decoder::new();
        let mut bytes = b"Welcome to the bastion\n".to_vec();
        bytes.extend(stream(&[encode(2, None, 0, Duration::ZERO, b"")]));
        d.space()[..bytes.len()].copy_from_slice(&bytes);
        d.filled(bytes.len());
        assert_eq!(d.next_record().unwrap().unwrap().kind(), Kind::Heartbeat);
        assert_eq!(d.skipped, 23);

        let mut d = Decoder::new();
        let junk = vec![b'x'; MAGIC_SEARCH];
        d.space()[..junk.len()].copy_from_slice(&junk);
        d.filled(junk.len());
        assert!(matches!(d.next_record(), Err(StreamError::NotARelay(_))));
    }

    #[test]
    fn a_banner_read_in_small_pieces_is_scanned_once() {
        // The relay_stream fuzz target's timeout: its step byte 0 (7-byte reads), then 70,000
        // bytes "A". Each read rescanned the whole banner for the header, 11 s under the
        // fuzzer; the search now resumes where the last one stopped.
        let t = std::time::Instant::now();
        let mut d = Decoder::with_capacity(0);
        let mut refused = false;
        for piece in vec![b'A'; 70_000].chunks(7) {
            d.space()[..piece.len()].copy_from_slice(piece);
            d.filled(piece.len());
            if let Err(e) = d.next_record() {
                assert!(matches!(e, StreamError::NotARelay(_)));
                refused = true;
                break;
            }
        }
        assert!(refused);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

        // A header split across one-byte reads after a banner is still found.
        let mut bytes = vec![b'x'; 1000];
        bytes.extend(stream(&[encode(2, None, 0, Duration::ZERO, b"")]));
        let mut d = Decoder::with_capacity(0);
        let mut got = None;
        for b in bytes {
            d.space()[0] = b;
            d.filled(1);
            if let Some(r) = d.next_record().unwrap() {
                got = Some(r.kind());
            }
        }
        assert_eq!((got, d.skipped), (Some(Kind::Heartbeat), 1000));
    }

    #[test]
    fn a_datagram_without_family_is_corrupt() {
        let mut d = Decoder::new();
        let bytes = stream(&[encode(1, None, 0, Duration::ZERO, b"x")]);
        d.space()[..bytes.len()].copy_from_slice(&bytes);
        d.filled(bytes.len());
        assert_eq!(d.next_record().unwrap_err(), StreamError::BadFamily(0));
    }

    #[test]
    fn adopted_pieces_decode_as_copied_ones() {
        let t = Duration::new(1_700_000_000, 5);
        let a = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 4789);
        let payloads: Vec<Vec<u8>> = (0..300u32)
            .map(|i| vec![i as u8; (i as usize * 37) % 1600])
            .collect();
        let mut records = Vec::new();
        for chunk in payloads.chunks(7) {
            let dgs: Vec<BatchDatagram> = chunk
                .iter()
                .map(|p| BatchDatagram {
                    src: a,
                    time: Some(t),
                    drops: None,
                    payload: p,
                })
                .collect();
            records.push(encode_batch(4, t, &dgs));
            records.push(encode(2, None, 0, t, b""));
        }
        let mut bytes = b"banner\n".to_vec();
        bytes.extend_from_slice(&stream(&records));
        let want = decode_split(&bytes, 0);
        // Pieces with room before them, as a reader thread hands them over; the decoder asks
        // for more only when it has no whole record, so what it holds fits the room.
        let room = MAX_RECORD;
        let mut d = Decoder::new();
        let mut got = Vec::new();
        let mut spare = Vec::new();
        for (i, piece) in bytes.chunks(1000 + 4093).enumerate() {
            let mut buf = spare
                .pop()
                .unwrap_or_else(|| vec![0; room + 2 * MAX_RECORD]);
            buf[room..room + piece.len()].copy_from_slice(piece);
            // Every third piece too small to adopt: copied in, as before.
            let arrived = if i % 3 == 2 {
                d.space()[..piece.len()].copy_from_slice(piece);
                d.filled(piece.len());
                Ok(buf)
            } else {
                d.adopt(buf, room, piece.len())
            };
            spare.push(arrived.unwrap());
            while let Some(r) = d.next_record().unwrap() {
                got.push(fields(&r));
            }
        }
        assert_eq!(got, want);
        assert_eq!(got.len(), 300 + records.len() / 2);
        assert!(d.adopt(vec![0; 100], 50, 10).is_err(), "too small");
    }

    #[test]
    fn the_buffer_is_reused_across_many_records() {
        let mut d = Decoder::new();
        let rec = encode(
            1,
            Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 1)),
            0,
            Duration::ZERO,
            &[7; 9000],
        );
        let mut first = MAGIC.to_vec();
        first.extend_from_slice(&rec);
        let mut n = 0;
        for i in 0..2000 {
            let piece = if i == 0 { &first } else { &rec };
            let space = d.space();
            assert!(space.len() >= piece.len());
            space[..piece.len()].copy_from_slice(piece);
            d.filled(piece.len());
            while let Some(r) = d.next_record().unwrap() {
                assert_eq!(r.payload().len(), 9000);
                n += 1;
            }
        }
        assert_eq!(n, 2000);
    }

    /// Everything `wire` holds, arriving `step` bytes at a time, offered as a transport does:
    /// the next piece is read only once the unpacker took all of this one and has nothing
    /// more inside; the decoder is drained between feeds. A feed that moves nothing is a
    /// stall, and fails the test.
    fn unpack_all(
        wire: &[u8],
        step: usize,
        decoder_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, StreamError> {
        let mut u = Unpacker::new();
        let mut d = Decoder::with_capacity(decoder_bytes);
        let mut out = Vec::new();
        let (mut at, mut end) = (0, 0);
        loop {
            if at == end && !u.has_more() {
                if end == wire.len() {
                    return Ok(out);
                }
                end = (end + step).min(wire.len());
            }
            let before = out.len();
            let took = u.feed(&wire[at..end], &mut d)?;
            at += took;
            while let Some(r) = d.next_record()? {
                out.push(r.payload().to_vec());
            }
            assert!(
                took > 0 || u.has_more() || out.len() > before || at == end,
                "stalled at byte {at} of {}",
                wire.len()
            );
        }
    }

    fn compress(records: &[Vec<u8>], level: u32) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
        let mut wire = MAGIC_Z.to_vec();
        for r in records {
            z.write_all(r).unwrap();
            z.flush().unwrap(); // a sync flush, as the relay does per write
            wire.extend_from_slice(z.get_ref());
            z.get_mut().clear();
        }
        wire
    }

    #[test]
    fn unpacker_passes_plain_and_inflates_compressed_streams_read_in_any_pieces() {
        let payloads: Vec<Vec<u8>> = (0..400u32)
            .map(|i| {
                let mut p = vec![0x08, 0, 0, 0, 0, 0x10, 0x92, 0];
                p.extend((0..(i * 37) % 1400).map(|k| (k % 251) as u8 ^ (i as u8)));
                p
            })
            .collect();
        let records: Vec<Vec<u8>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let src = Some(([127, 0, 0, 1].into(), 4789));
                encode(1, src, i as u32, Duration::from_secs(1), p)
            })
            .collect();
        let mut plain = MAGIC.to_vec();
        for r in &records {
            plain.extend_from_slice(r);
        }
        let compressed = compress(&records, 6);
        assert!(compressed.len() < plain.len() / 2, "it compresses");
        for step in [1, 3, 7, 1000, 65536] {
            for decoder in [0, 1 << 20] {
                let p = unpack_all(&plain, step, decoder).unwrap();
                assert!(p == payloads, "plain, step {step}: {} records", p.len());
                let z = unpack_all(&compressed, step, decoder).unwrap();
                assert!(z == payloads, "zlib, step {step}: {} records", z.len());
            }
        }
    }

    #[test]
    fn a_corrupt_compressed_stream_is_an_error_not_a_panic() {
        let mut wire = MAGIC_Z.to_vec();
        wire.extend_from_slice(b"not zlib at all, certainly not");
        let e = unpack_all(&wire, 5, 0).unwrap_err();
        assert!(matches!(e, StreamError::BadCompression(_)), "{e:?}");
        assert!(e.to_string().contains("compressed stream is corrupt"));
    }

    #[test]
    fn a_highly_compressible_stream_never_outgrows_the_decoder() {
        // 64 MB of zeros in records compress to a few kB: the decoder's bound holds.
        let zeros = vec![0u8; 60_000];
        let rec = encode(
            1,
            Some(([127, 0, 0, 1].into(), 1)),
            0,
            Duration::ZERO,
            &zeros,
        );
        let records = vec![rec; 1100];
        let wire = compress(&records, 9);
        assert!(wire.len() < 1 << 20);
        let mut u = Unpacker::new();
        let mut d = Decoder::with_capacity(0);
        let took = u.feed(&wire, &mut d).unwrap();
        assert!(took < wire.len(), "it stopped when the decoder was full");
        assert!(d.end <= d.buf.len());
    }

    #[test]
    fn a_stream_header_in_pieces_is_taken_as_it_comes() {
        let rec = encode(1, Some(([127, 0, 0, 1].into(), 9)), 0, Duration::ZERO, b"x");
        let mut plain = MAGIC.to_vec();
        plain.extend_from_slice(&rec);
        let compressed = compress(std::slice::from_ref(&rec), 6);
        // A banner that begins like the compressed header, then turns out not to be it.
        let mut banner = b"AWSVP motd\n".to_vec();
        banner.extend_from_slice(&plain);
        for step in 1..=9 {
            assert_eq!(unpack_all(&plain, step, 0).unwrap(), vec![b"x".to_vec()]);
            assert_eq!(
                unpack_all(&compressed, step, 0).unwrap(),
                vec![b"x".to_vec()]
            );
            assert_eq!(unpack_all(&banner, step, 0).unwrap(), vec![b"x".to_vec()]);
        }
    }

    #[test]
    fn bytes_after_a_finished_compressed_stream_are_an_error() {
        use std::io::Write;
        let rec = encode(2, None, 0, Duration::ZERO, b"");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        z.write_all(&rec).unwrap();
        let mut wire = MAGIC_Z.to_vec();
        wire.extend_from_slice(&z.finish().unwrap());
        assert!(
            unpack_all(&wire, 3, 0).is_ok(),
            "a finished stream alone is fine"
        );
        wire.extend_from_slice(b"trailing");
        let e = unpack_all(&wire, 3, 0).unwrap_err();
        assert!(e.to_string().contains("after the end"), "{e}");
    }
}
