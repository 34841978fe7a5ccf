//! Backpressure: Wireshark stops reading (a stalled fifo) while the mirror keeps sending.
//! Memory must stay bounded, the excess must be dropped and counted (toolbar/log, pcapng
//! epb_dropcount and statistics), and capture must resume when the reader does.

mod common;
use common::*;
use std::io::Read;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Peak resident memory of a process, from /proc (kB).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn stalled_reader_keeps_memory_bounded_and_counts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let log = dir.path().join("log");
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    // The reader takes the section header, then stalls until told to go on.
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let p = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::open(p).unwrap();
        let mut head = [0u8; 4];
        f.read_exact(&mut head).unwrap();
        resume_rx.recv().unwrap();
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap();
        [head.to_vec(), rest].concat()
    });
    let mut child = Command::new(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .args([
            "--collector",
            "local",
            "--listen-addr",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
        ])
        .args(["--log-level", "debug", "--log-file"])
        .arg(&log)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "listening", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("listening on"))
            .map(|_| ())
    });

    // The flood: two million 1 kB mirror datagrams, as fast as loopback takes them.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = udp_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 9, &[0x5a; 950]);
    let datagram = vxlan(7, &frame);
    let flood = 2_000_000u64;
    for _ in 0..flood {
        let _ = tx.send_to(&datagram, ("127.0.0.1", port));
    }
    let logged = |needle: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(needle)
    };
    // The collector keeps draining its socket while the writer is blocked: drops are counted.
    let dropped_line = wait_for(Duration::from_secs(60), "drops to be counted", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .find(|l| l.contains(" dropped") && !l.contains("· 0 dropped"))
            .map(str::to_string)
    });
    let peak = peak_rss_kb(child.id());
    eprintln!("peak RSS {peak} kB after {flood} datagrams with a stalled reader; {dropped_line}");
    assert!(
        peak < 64 * 1024,
        "resident memory must stay under 64 MB, was {peak} kB"
    );

    // The reader resumes: the backlog drains and new packets flow again. The markers use a
    // VNI of their own, so awsvpc logs their source when it writes the first of them.
    resume_tx.send(()).unwrap();
    let marker = udp_frame(
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        4242,
        b"after the stall",
    );
    wait_for(
        Duration::from_secs(120),
        "packets sent after the stall to be written",
        || {
            let _ = tx.send_to(&vxlan(8, &marker), ("127.0.0.1", port));
            std::thread::sleep(Duration::from_millis(20));
            logged("new mirror source vni-8@127.0.0.1").then_some(())
        },
    );
    assert!(!logged("fatal"));
    kill(child.id(), libc::SIGTERM);
    let status = wait_for(Duration::from_secs(20), "exit", || {
        child.try_wait().unwrap()
    });
    assert!(status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.is_empty(), "{err}");

    let out = read_pcapng(&reader.join().unwrap());
    assert!(
        out.frames.iter().any(|f| f.3 == marker),
        "packets after the stall were written"
    );
    assert!(
        out.frames.len() < flood as usize,
        "the excess was dropped, not queued"
    );
    let isb = out
        .statistics
        .first()
        .map(|s| s.1.join(" "))
        .unwrap_or_default();
    let drop_stat = isb
        .split("IsbIfDrop(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        drop_stat.is_some_and(|d| d > 0),
        "statistics report the drops: {isb}"
    );
    let stat = |name: &str| {
        isb.split(&format!("{name}("))
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    // The flood's interface: its statistics agree with what reached the reader.
    let flood_iface = out.statistics[0].0;
    let written = out.frames.iter().filter(|f| f.0 == flood_iface).count() as u64;
    assert_eq!(
        stat("IsbUsrDeliv"),
        Some(written),
        "delivered counts the frames written: {isb}"
    );
    let received = stat("IsbIfRecv").unwrap_or(0);
    assert!(
        (written..=flood).contains(&received),
        "received lies between written and sent: {isb}"
    );
    eprintln!(
        "written {} frames, {} dropped ({isb})",
        out.frames.len(),
        drop_stat.unwrap()
    );
}
