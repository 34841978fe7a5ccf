//! Issue 4's Session Manager figures (not a test; it prints them): packets/s of
//! `--connect ssm` through the loopback Session Manager peer of the tests
//! (`tests/common/ssm_peer.rs`: gateway and agent, forwarding at the agent's pace of 1024 bytes
//! then 1 ms per read), at the default snaplen (128) and with whole frames, beside the raw
//! port session's byte rate through the same peer in the same run.
//!
//!   cargo bench --bench ssm_throughput            (SECONDS=10 OFFERED=20000 to change)
//!
//! The real relay (python3) runs behind the real relay listener; a sender offers VXLAN
//! datagrams with 1500-byte inner frames at a fixed rate to its UDP port on 127.0.0.1; what
//! the session cannot carry is dropped by the relay's kernel socket and counted. Only
//! loopback is used.

#[path = "../tests/common/ssm_peer.rs"]
#[allow(dead_code)]
mod ssm_peer;

use aws_sdk_ssm::types::PingStatus;
use awsvpc::collector::{Batch, DatagramSource};
use awsvpc::relay::RelayOptions;
use awsvpc::transport::ssm::channel::{Channel, ChannelOptions};
use awsvpc::transport::ssm::collector::{
    relay_listener_script, RelayAt, SsmCollector, SsmSettings,
};
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

fn free_port(udp: bool) -> u16 {
    if udp {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
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

/// A VXLAN datagram (VNI 4242) around a 1500-byte inner Ethernet frame numbered `i`.
fn datagram(i: u64) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0x10, 0x92, 0];
    let mut frame = vec![0u8; 1500];
    frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14..22].copy_from_slice(&i.to_be_bytes());
    d.extend(frame);
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
fn through_ssm(snaplen: Option<u32>, offered: u64, seconds: u64) -> Run {
    let (udp_port, tcp_port) = (free_port(true), free_port(false));
    let relay = RelayOptions {
        listen_addr: [127, 0, 0, 1].into(),
        listen_port: udp_port,
        snaplen,
        bind_wait_s: 0,
    };
    let script = relay_listener_script(&relay, tcp_port, 10, RelayAt::Inline);
    let _listener = Killed(
        Command::new("python3")
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
    let sender = std::thread::spawn(move || {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], udp_port));
        let t0 = Instant::now();
        let mut i = 0u64;
        while s.load(Ordering::Relaxed) {
            let due = (t0.elapsed().as_secs_f64() * offered as f64) as u64;
            while i < due {
                let _ = tx.send_to(&datagram(i), to);
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
        "  raw port session: {:.0} kB/s; at 128-byte snaplen a record is 36 + 8 + 128 bytes, so at most {:.0} packets/s",
        raw / 1000.0,
        raw / (36.0 + 8.0 + 128.0)
    );
    for (name, snaplen) in [
        ("snaplen 128 (the default)", Some(128)),
        ("whole 1500-byte frames", None),
    ] {
        let r = through_ssm(snaplen, offered, seconds);
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
