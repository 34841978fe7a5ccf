//! Issue 4's Session Manager figures (not a test; it prints them): packets/s of
//! `--connect ssm` through the loopback Session Manager peer of the tests
//! (`tests/common/ssm_peer.rs`: gateway and agent, forwarding at the agent's pace of 1024 bytes
//! then 1 ms per read), at the default snaplen (128) and with whole frames, with the relay's
//! stream compressed (the default) and not, beside the raw port session's byte rate through
//! the same peer in the same run.
//!
//! The traffic is the real AWS mirror capture of `../shared/testdata` (SSH, DNS, NTP), its
//! VXLAN datagrams sent round and round, each copy with its own IP id and TCP sequence number
//! and with everything past the first 74 bytes (VXLAN, Ethernet, IPv4, TCP with options)
//! replaced by random bytes, as encrypted payloads are: headers compress, payloads do not.
//!
//!   cargo bench --bench ssm_throughput            (SECONDS=10 OFFERED=20000 to change)
//!
//! The real relay (python3) runs behind the real relay listener; a sender offers VXLAN
//! datagrams with 1500-byte inner frames at a fixed rate to its UDP port on 127.0.0.1; what
//! the session cannot carry is dropped by the relay's kernel socket and counted. Only
//! loopback is used.

#[path = "../tests/common/ports.rs"]
mod ports;
#[path = "../tests/common/ssm_peer.rs"]
#[allow(dead_code)]
mod ssm_peer;

use aws_sdk_ssm::types::PingStatus;
use awsvpc::collector::{Batch, DatagramSource};
use awsvpc::relay::RelayOptions;
use awsvpc::transport::ssm::channel::{Channel, ChannelOptions};
use awsvpc::transport::ssm::collector::{
    relay_listener_script_with, RelayAt, SsmCollector, SsmSettings, RELAY_ZLIB_LEVEL,
};
use ports::{free_tcp_port, free_udp_port};
use ssm_peer::{calls, control, Faults, Peer, INSTANCE, TOKEN};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The raw port session: a TCP source that writes as fast as it can, through the paced
/// peer, read by awsvpc's channel. Bytes/s.
fn raw_channel(seconds: u64) -> f64 {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = server.accept() {
            let chunk = vec![0x5au8; 65536];
            while !s.load(Ordering::Relaxed) && c.write_all(&chunk).is_ok() {}
        }
    });
    let peer = Peer::start(target, Faults::default(), Duration::ZERO);
    let mut ch = Channel::open(&peer.url, TOKEN, &ChannelOptions::default()).unwrap();
    let mut buf = vec![0u8; 65536];
    // Past the handshake and the first messages.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(1) {
        let _ = ch.read_timeout(&mut buf, Duration::from_millis(200));
    }
    let t0 = Instant::now();
    let mut n = 0usize;
    while t0.elapsed() < Duration::from_secs(seconds) {
        n += ch
            .read_timeout(&mut buf, Duration::from_millis(200))
            .unwrap_or(0);
    }
    stop.store(true, Ordering::Relaxed);
    n as f64 / t0.elapsed().as_secs_f64()
}

/// The VXLAN datagrams (UDP payloads) of the real AWS mirror capture.
fn real_datagrams() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/aws-mirror-real.pcap"
    );
    let file = std::fs::File::open(path).expect("../shared/testdata beside the checkout");
    let mut r = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        if let Ok(h) = etherparse::SlicedPacket::from_ethernet(&p.data) {
            if let Some(etherparse::TransportSlice::Udp(u)) = h.transport {
                out.push(u.payload().to_vec());
            }
        }
    }
    assert!(out.len() >= 100, "{} datagrams", out.len());
    out
}

/// Copy `i` of the capture's datagrams: its own IP id and TCP sequence number, random bytes
/// past the headers.
fn datagram(base: &[Vec<u8>], i: u64, rng: &mut u64) -> Vec<u8> {
    let mut d = base[i as usize % base.len()].clone();
    let ip = 8 + 14;
    if d.len() > ip + 20 {
        let id = u16::from_be_bytes([d[ip + 4], d[ip + 5]]).wrapping_add(i as u16);
        d[ip + 4..ip + 6].copy_from_slice(&id.to_be_bytes());
        if d[ip + 9] == 6 && d.len() > ip + 28 {
            let at = ip + 20 + 4;
            let seq = u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
            d[at..at + 4].copy_from_slice(&seq.wrapping_add(i as u32 * 1448).to_be_bytes());
        }
    }
    for b in d.iter_mut().skip(74) {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *b = *rng as u8;
    }
    d
}

struct Run {
    offered_pps: f64,
    delivered_pps: f64,
    relay_drops: u64,
    stream_bytes_per_s: f64,
    /// From the collector's kernel receive time to awsvpc: median and 99th percentile.
    latency: (Duration, Duration),
}

/// The real relay behind its listener, the paced peer, awsvpc's SSM collector; a sender
/// offers `offered` datagrams/s for `seconds`.
fn through_ssm(snaplen: Option<u32>, zlib: u32, offered: u64, seconds: u64) -> Run {
    let (udp_port, tcp_port) = (free_udp_port(), free_tcp_port());
    let relay = RelayOptions {
        listen_addr: [127, 0, 0, 1].into(),
        listen_port: udp_port,
        snaplen,
        bind_wait_s: 0,
        on_host: None,
    };
    let script = relay_listener_script_with(&relay, tcp_port, 10, RelayAt::Inline, zlib);
    let _listener = Killed(
        // The system's python3: run as root, the listener becomes `nobody`.
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    let peer = Peer::start(
        SocketAddr::from(([127, 0, 0, 1], tcp_port)),
        Faults::default(),
        Duration::from_secs(10),
    );
    let ctl = control(&peer.url, TOKEN, Some(PingStatus::Online), calls());
    let mut settings = SsmSettings::new(INSTANCE, tcp_port);
    settings.online_wait = Duration::ZERO;
    let stop = AtomicBool::new(false);
    let status = |_: &str| {};
    let mut col = SsmCollector::connect(ctl, settings, relay, &status, &stop)
        .expect("session")
        .expect("not stopped");
    let sending = Arc::new(AtomicBool::new(true));
    let s = sending.clone();
    let base = real_datagrams();
    let sender = std::thread::spawn(move || {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], udp_port));
        let t0 = Instant::now();
        let mut i = 0u64;
        while s.load(Ordering::Relaxed) {
            let due = (t0.elapsed().as_secs_f64() * offered as f64) as u64;
            while i < due {
                let _ = tx.send_to(&datagram(&base, i, &mut rng), to);
                i += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        i as f64 / t0.elapsed().as_secs_f64()
    });
    let mut batch = Batch::new();
    // Warm up: the session is open and packets flow.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(2) {
        let _ = col.recv_batch(&mut batch, &status);
    }
    let (drops0, bytes0) = (col.drops(), col.channel_stats().bytes);
    let t0 = Instant::now();
    let mut delivered = 0u64;
    let mut latencies = Vec::new();
    while t0.elapsed() < Duration::from_secs(seconds) {
        let k = col.recv_batch(&mut batch, &status).unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        for i in 0..k {
            latencies.push(now.saturating_sub(batch.get(i).2));
        }
        delivered += k as u64;
    }
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let secs = t0.elapsed().as_secs_f64();
    let (drops, bytes) = (col.drops() - drops0, col.channel_stats().bytes - bytes0);
    sending.store(false, Ordering::Relaxed);
    let offered_pps = sender.join().unwrap();
    Run {
        offered_pps,
        delivered_pps: delivered as f64 / secs,
        relay_drops: drops,
        stream_bytes_per_s: bytes as f64 / secs,
        latency: (at(0.5), at(0.99)),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass other flags: run only
    // when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds = env("SECONDS", 10);
    let offered = env("OFFERED", 20_000);
    println!("Session Manager through the loopback agent peer (1024 bytes then 1 ms per read):");
    let raw = raw_channel(seconds);
    println!(
        "  raw port session: {:.0} kB/s; uncompressed, a datagram cut at the 128-byte snaplen takes 76 + 8 + 128 bytes of a batch record: at most {:.0} of them per second",
        raw / 1000.0,
        raw / (76.0 + 8.0 + 128.0)
    );
    for (name, snaplen, zlib) in [
        (
            "snaplen 128, compressed (the default)",
            Some(128),
            RELAY_ZLIB_LEVEL,
        ),
        ("snaplen 128, uncompressed", Some(128), 0),
        ("whole frames, compressed", None, RELAY_ZLIB_LEVEL),
        ("whole frames, uncompressed", None, 0),
    ] {
        let r = through_ssm(snaplen, zlib, offered, seconds);
        println!(
            "  {name}: {:.0} packets/s delivered of {:.0} offered; {:.0} kB/s of relay stream; {} dropped and counted by the relay's socket; latency median {:.2} s, p99 {:.2} s",
            r.delivered_pps,
            r.offered_pps,
            r.stream_bytes_per_s / 1000.0,
            r.relay_drops,
            r.latency.0.as_secs_f64(),
            r.latency.1.as_secs_f64()
        );
    }
}
