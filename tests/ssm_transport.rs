//! `--connect ssm` without session-manager-plugin, against a loopback test peer that plays
//! the Session Manager gateway and the SSM agent (reference `transports.md` §3 items 1–5):
//! it requires the OpenDataChannel frame with the session token, runs the agent's
//! handshake (SessionType Port, LocalPortForwarding; it refuses a client that claims a
//! version that would make the agent multiplex with smux), dials the port "on the
//! instance", and forwards that TCP stream as `output_stream_data` in ≤ 1024-byte messages
//! with SYN on sequence 0, checking every acknowledgement, resending unacknowledged output
//! after a timeout, and injecting faults (out-of-order, duplicates, withheld messages and
//! acknowledgements, a frozen session).
//!
//! The peer (`tests/common/ssm_peer.rs`) frames messages its own way, from the reference's
//! offset table, not with awsvpc's codec: the test is not awsvpc's encoder agreeing with its
//! decoder.
//! It also checks the UUID half swap independently: awsvpc's ids are version-4 UUIDs, whose
//! version nibble must appear at wire byte 78 (canonical byte 6 in the second half).
//!
//! The control plane (DescribeInstanceInformation, StartSession, TerminateSession) is the
//! SDK's own aws-smithy-mocks, returning the peer's `ws://127.0.0.1` stream URL. Loopback only.
#![cfg(feature = "aws")]

mod common;
use common::ports::{free_tcp_port, free_udp_port};
use common::ssm_peer::*;

use aws_sdk_ssm::types::PingStatus;
use awsvpc::collector::{Batch, DatagramSource};
use awsvpc::relay::stream::{encode, MAGIC};
use awsvpc::relay::RelayOptions;
use awsvpc::transport::ssm::channel::{Channel, ChannelOptions};
use awsvpc::transport::ssm::collector::{
    relay_listener_script, RelayAt, SsmCollector, SsmSettings,
};
use awsvpc::transport::ssm::session::Control;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn relay_options(udp_port: u16) -> RelayOptions {
    RelayOptions {
        listen_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        listen_port: udp_port,
        snaplen: None,
        bind_wait_s: 0,
        on_host: None,
    }
}

fn settings(relay_port: u16) -> SsmSettings {
    let mut s = SsmSettings::new(INSTANCE, relay_port);
    s.online_wait = Duration::ZERO;
    s.online_poll = Duration::from_millis(50);
    s
}

/// Deterministic bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn the_channel_carries_a_stream_exactly_through_reordering_duplicates_and_loss() {
    // The "port on the instance": writes a known stream, then collects what comes back.
    let data = bytes(600_000, 7);
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap();
    let sent = data.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        s.write_all(&sent).unwrap();
        let mut back = vec![0u8; 5000];
        s.read_exact(&mut back).unwrap();
        back
    });
    let peer = Peer::start(
        target,
        Faults {
            swap_every: 7,
            duplicate_every: 11,
            withhold_every: 50,
            withhold_first_input_ack: true,
            ..Default::default()
        },
        Duration::ZERO,
    );
    let t0 = Instant::now();
    let mut ch = Channel::open(&peer.url, TOKEN, &ChannelOptions::default()).unwrap();
    assert_eq!(ch.agent_version(), "3.3.987.0");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while got.len() < data.len() && t0.elapsed() < Duration::from_secs(30) {
        let n = ch
            .read_timeout(&mut buf, Duration::from_millis(200))
            .unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        got == data,
        "{} of {} bytes, first difference at {:?}",
        got.len(),
        data.len(),
        got.iter().zip(&data).position(|(a, b)| a != b)
    );
    // The other direction: input with sequence numbers, resent when not acknowledged.
    let back = bytes(5000, 99);
    ch.send(&back).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !server.is_finished() && Instant::now() < until {
        let _ = ch.read_timeout(&mut buf, Duration::from_millis(50));
    }
    assert_eq!(server.join().unwrap(), back, "input reached the port");
    // Let the peer see the last acknowledgements.
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        let _ = ch.read_timeout(&mut buf, Duration::from_millis(50));
    }
    let stats = ch.stats;
    drop(ch);
    let r = peer.report.lock().unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.client_versions, vec!["1.0.0".to_string()]);
    assert_eq!(
        r.handshake_responses[0],
        serde_json::json!({"ClientVersion": "1.0.0", "ProcessedClientActions": [
            {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": null, "Error": ""}],
            "Errors": null})
    );
    assert!(stats.duplicates > 0 && stats.reordered > 0, "{stats:?}");
    assert!(
        stats.retransmits >= 1,
        "unacknowledged input was resent: {stats:?}"
    );
    assert!(r.resent > 0, "withheld output was retransmitted");
    assert_eq!(r.input, back);
    eprintln!(
        "SSM channel over loopback: {} bytes in {:.2} s ({:.0} kB/s) in {} messages; {} reordered, {} duplicates, {} output resent, {} acks",
        got.len(), secs, got.len() as f64 / secs / 1000.0, r.data_sent, stats.reordered,
        stats.duplicates, r.resent, r.acks
    );
}

/// The real relay behind the listener awsvpc would start on the instance.
struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        // The listener and its relays (same process group would be simpler, but keep it
        // to the child we started).
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The system's python3, as on a collector: run as root, the listener becomes `nobody`, who
/// could not run an interpreter installed under /root (pyenv).
const PYTHON: &str = "/usr/bin/python3";

fn have_python() -> bool {
    Command::new(PYTHON)
        .arg("-c")
        .arg("pass")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_collector_reads_the_real_relay_through_ssm() {
    if !have_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let (udp_port, tcp_port) = (free_udp_port(), free_tcp_port());
    let relay = relay_options(udp_port);
    // idle exit 5 s: the listener cleans up after itself if the test dies.
    let script = relay_listener_script(&relay, tcp_port, 5, RelayAt::Inline);
    let listener = Listener(
        Command::new(PYTHON)
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let target = SocketAddr::from(([127, 0, 0, 1], tcp_port));
    let peer = Peer::start(
        target,
        Faults {
            swap_every: 5,
            duplicate_every: 9,
            ..Default::default()
        },
        Duration::from_secs(5),
    );
    let c = calls();
    let ctl = control(&peer.url, TOKEN, Some(PingStatus::Online), c.clone());
    let statuses = Mutex::new(Vec::<String>::new());
    let status = |s: &str| statuses.lock().unwrap().push(s.to_string());
    let stop = AtomicBool::new(false);
    let mut col = SsmCollector::connect(ctl, settings(tcp_port), relay.clone(), &status, &stop)
        .unwrap()
        .unwrap();
    assert!(col.describe().contains("over SSM, about 1 MB/s at most"));
    assert!(
        col.compressed(),
        "the listener's relay compresses its stream"
    );
    let docs = c.documents.lock().unwrap().clone();
    assert_eq!(docs.len(), 1);
    assert!(
        docs[0].starts_with(&format!("{INSTANCE} AWS-StartPortForwardingSession"))
            && docs[0].contains(&format!("\"portNumber\": [\"{tcp_port}\"]")),
        "{docs:?}"
    );
    // Mirror datagrams to the relay.
    let n = 400;
    let datagrams: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut d = format!("datagram {i:05} ").into_bytes();
            d.extend(bytes(20 + (i * 37) % 1400, i as u64));
            d
        })
        .collect();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], udp_port));
    let t0 = Instant::now();
    let sender = {
        let d = datagrams.clone();
        std::thread::spawn(move || {
            for x in &d {
                tx.send_to(x, to).unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut batch = Batch::new();
    while got.len() < n && t0.elapsed() < Duration::from_secs(30) {
        let k = col.recv_batch(&mut batch, &status).unwrap();
        for i in 0..k {
            let (d, src, ts, _) = batch.get(i);
            assert_eq!(src, IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(
                ts > Duration::from_secs(1_600_000_000),
                "kernel receive time"
            );
            got.push(d.to_vec());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    sender.join().unwrap();
    assert_eq!(got.len(), n, "all datagrams arrived");
    assert!(got == datagrams, "in order and intact");
    assert_eq!(col.drops(), 0);
    let stats = col.channel_stats();
    assert!(stats.duplicates > 0 && stats.reordered > 0, "{stats:?}");
    let bytes_total: usize = datagrams.iter().map(|d| d.len() + 36).sum();
    eprintln!(
        "real relay over SSM (loopback peer): {n} datagrams, {bytes_total} stream bytes in {secs:.2} s ({:.0} packets/s); {stats:?}",
        n as f64 / secs
    );
    drop(col);
    assert_eq!(
        c.terminates.load(Ordering::SeqCst),
        1,
        "the session was terminated"
    );
    let until = Instant::now() + Duration::from_secs(3);
    while peer.report.lock().unwrap().terminate_flags == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = peer.report.lock().unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.terminate_flags, 1, "TerminateSession flag sent on close");
    drop(r);
    drop(listener);
}

/// A relay stand-in on TCP: each connection gets the stream header, a heartbeat every
/// 300 ms and a datagram "c<connection>-<i>" every 100 ms.
fn fake_relay() -> (SocketAddr, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        for (conn, c) in l.incoming().enumerate() {
            let Ok(mut c) = c else { return };
            let s2 = s.clone();
            std::thread::spawn(move || {
                let s = s2;
                let src = Some((IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 4789));
                if c.write_all(MAGIC).is_err() {
                    return;
                }
                for i in 0.. {
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                    let t = Duration::from_secs(1_700_000_000 + i);
                    let mut out = encode(1, src, i as u32, t, format!("c{conn}-{i}").as_bytes());
                    if i % 3 == 0 {
                        out.extend(encode(2, None, i as u32, t, b""));
                    }
                    if c.write_all(&out).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            if s.load(Ordering::Relaxed) {
                return;
            }
        }
    });
    (addr, stop)
}

#[test]
fn a_silent_session_is_replaced_by_a_new_one() {
    let (target, relay_stop) = fake_relay();
    let peer = Peer::start(
        target,
        Faults {
            freeze_after: Some(5),
            ..Default::default()
        },
        Duration::ZERO,
    );
    let c = calls();
    let ctl = control(&peer.url, TOKEN, Some(PingStatus::Online), c.clone());
    let statuses = Mutex::new(Vec::<String>::new());
    let status = |s: &str| statuses.lock().unwrap().push(s.to_string());
    let stop = AtomicBool::new(false);
    let mut col = SsmCollector::connect(
        ctl,
        settings(target.port()),
        relay_options(4789),
        &status,
        &stop,
    )
    .unwrap()
    .unwrap();
    let mut seen = Vec::new();
    let mut batch = Batch::new();
    let t0 = Instant::now();
    let mut lost_after = None;
    while t0.elapsed() < Duration::from_secs(20) {
        let k = col.recv_batch(&mut batch, &status).unwrap();
        for i in 0..k {
            seen.push(String::from_utf8_lossy(batch.get(i).0).to_string());
        }
        if lost_after.is_none() && c.starts.load(Ordering::SeqCst) == 2 {
            lost_after = Some(t0.elapsed());
        }
        if seen.iter().filter(|s| s.starts_with("c1-")).count() >= 3 {
            break;
        }
    }
    relay_stop.store(true, Ordering::Relaxed);
    let first: Vec<_> = seen.iter().filter(|s| s.starts_with("c0-")).collect();
    let second: Vec<_> = seen.iter().filter(|s| s.starts_with("c1-")).collect();
    assert!(!first.is_empty() && second.len() >= 3, "{seen:?}");
    assert_eq!(c.starts.load(Ordering::SeqCst), 2, "one new session");
    assert_eq!(
        c.terminates.load(Ordering::SeqCst),
        1,
        "the lost one was terminated"
    );
    let st = statuses.lock().unwrap().clone();
    assert!(
        st.iter()
            .any(|s| s.contains("lost (nothing for 5 s); reconnecting")),
        "{st:?}"
    );
    assert!(st.iter().any(|s| s.starts_with("Reconnected to")), "{st:?}");
    let lost = lost_after.unwrap();
    assert!(
        lost < Duration::from_secs(8),
        "loss detected after {lost:?}"
    );
    eprintln!("silent SSM session replaced after {lost:.1?}");
    drop(col);
    assert_eq!(c.terminates.load(Ordering::SeqCst), 2);
}

fn connect_error(ctl: Control, relay_port: u16) -> String {
    let status = |_: &str| {};
    let stop = AtomicBool::new(false);
    match SsmCollector::connect(
        ctl,
        settings(relay_port),
        relay_options(4789),
        &status,
        &stop,
    ) {
        Ok(_) => panic!("connected"),
        Err(e) => {
            assert_eq!(e.lines().count(), 1, "one sentence: {e}");
            assert!(e.ends_with('.'), "{e}");
            e
        }
    }
}

#[test]
fn an_offline_or_unmanaged_agent_is_one_sentence() {
    let c = calls();
    let e = connect_error(
        control(
            "ws://127.0.0.1:1/",
            TOKEN,
            Some(PingStatus::ConnectionLost),
            c.clone(),
        ),
        4790,
    );
    assert_eq!(
        e,
        format!("The SSM agent on {INSTANCE} is offline (ConnectionLost, last seen 2024-10-15T00:00:00Z); check its instance profile (AmazonSSMManagedInstanceCore) and its route to the ssm and ssmmessages endpoints.")
    );
    let e = connect_error(control("ws://127.0.0.1:1/", TOKEN, None, c.clone()), 4790);
    assert!(
        e.starts_with(&format!("{INSTANCE} is not managed by Systems Manager")),
        "{e}"
    );
    assert_eq!(c.starts.load(Ordering::SeqCst), 0, "no session was started");
}

#[test]
fn a_refused_token_is_one_sentence() {
    let (target, relay_stop) = fake_relay();
    let peer = Peer::start(target, Faults::default(), Duration::ZERO);
    let c = calls();
    let e = connect_error(
        control(
            &peer.url,
            "stale-token",
            Some(PingStatus::Online),
            c.clone(),
        ),
        target.port(),
    );
    relay_stop.store(true, Ordering::Relaxed);
    assert!(
        e.starts_with(&format!("Session Manager refused the data channel to {INSTANCE} (Authentication failed: invalid token (1008)): the session token was rejected or expired")),
        "{e}"
    );
    assert_eq!(
        c.terminates.load(Ordering::SeqCst),
        1,
        "the session was terminated"
    );
    assert_eq!(peer.report.lock().unwrap().tokens_refused, 1);
}

#[test]
fn a_relay_that_does_not_listen_is_one_sentence() {
    let closed = free_tcp_port();
    let peer = Peer::start(
        SocketAddr::from(([127, 0, 0, 1], closed)),
        Faults::default(),
        Duration::ZERO,
    );
    let c = calls();
    let e = connect_error(
        control(&peer.url, TOKEN, Some(PingStatus::Online), c.clone()),
        closed,
    );
    assert!(
        e.starts_with(&format!("The Session Manager session to {INSTANCE} ended before the relay started (Unable to connect to specified port:")),
        "{e}"
    );
    assert!(
        e.contains(&format!("relay listener runs on 127.0.0.1:{closed}")),
        "{e}"
    );
}

#[test]
fn the_client_keeps_up_with_an_unpaced_agent() {
    // The agent sends at most ~1 000 messages/s (1024 bytes, then 1 ms); awsvpc's side
    // (parse, digest, acknowledge, reassemble) must take a stream much faster than that.
    let data = bytes(2_000_000, 3);
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap();
    let sent = data.clone();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = server.accept() {
            let _ = s.write_all(&sent);
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    let peer = Peer::start(
        target,
        Faults {
            unpaced: true,
            ..Default::default()
        },
        Duration::ZERO,
    );
    let mut ch = Channel::open(&peer.url, TOKEN, &ChannelOptions::default()).unwrap();
    let t0 = Instant::now();
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 65536];
    while got.len() < data.len() && t0.elapsed() < Duration::from_secs(30) {
        let n = ch
            .read_timeout(&mut buf, Duration::from_millis(200))
            .unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    let secs = t0.elapsed().as_secs_f64();
    assert!(got == data, "2 MB through an unpaced agent, intact");
    // The rate is a figure, not a pass mark (benches/ssm_throughput.rs measures it).
    eprintln!(
        "unpaced peer: {} messages, {:.0} kB/s, {:.0} messages/s",
        ch.stats.messages,
        got.len() as f64 / secs / 1000.0,
        ch.stats.messages as f64 / secs
    );
}
