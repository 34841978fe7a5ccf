//! The whole data path with real parts: kernel VXLAN mirroring in network namespaces, real
//! tshark as the extcap host, and a direct tcpdump of the mirrored veth as the oracle.
//! Also the tshark side of the extcap contract (-D, -L, prefs, error reporting).

mod common;
use awsvpc::manifest::{pref_suffix, Manifest};
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A personal extcap folder in a temporary HOME, filled by `awsvpc install`.
fn installed_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let o = run(Command::new(bin())
        .args(["install", "--symlink"])
        .env("HOME", home.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let msg = String::from_utf8_lossy(&o.stdout);
    assert!(msg.contains("Undo with: awsvpc uninstall"), "{msg}");
    home
}

fn tshark(home: &Path) -> Command {
    let mut c = Command::new("tshark");
    c.env("HOME", home);
    c
}

fn spawn_logged(mut cmd: Command, err: &Path) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn wait_text(path: &Path, needle: &str) {
    wait_for(Duration::from_secs(30), needle, || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|t| t.contains(needle))
            .map(|_| ())
    });
}

fn stop(child: &mut Child, sig: i32) -> std::process::ExitStatus {
    kill(child.id(), sig);
    wait_for(Duration::from_secs(35), "process exit", || {
        child.try_wait().unwrap()
    })
}

#[test]
fn live_tshark_capture_equals_direct_tcpdump() {
    if !system_ready(
        &["tshark", "tcpdump", "ip", "tc", "curl", "dig", "ping", "ss"],
        true,
    ) {
        return;
    }
    let tb = Testbed::up(&format!("awt{}", std::process::id() % 100_000));
    let home = installed_home();
    let work = tempfile::tempdir().unwrap();
    let (log, out) = (
        work.path().join("awsvpc.log"),
        work.path().join("awsvpc.pcapng"),
    );
    let (all, inbound) = (
        work.path().join("direct.pcap"),
        work.path().join("direct-in.pcap"),
    );
    let outbound_file = work.path().join("direct-out.pcap");

    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &tb.ns("col"), "tshark", "-i", "awsvpc"])
        .args(["-o", "extcap.awsvpc.collector:local"])
        .args([
            "-o",
            &format!("extcap.awsvpc.source:4242=eni-testbed,{}", tb.mac()),
        ])
        .args(["-o", "extcap.awsvpc.loglevel:debug"])
        .args(["-o", &format!("extcap.awsvpc.logfile:{}", log.display())])
        .arg("-w")
        .arg(&out)
        .env("HOME", home.path());
    let mut ts = spawn_logged(cmd, &work.path().join("tshark.err"));
    wait_text(&log, "listening on");

    let mut dumps = Vec::new();
    for (file, extra) in [
        (&all, &[][..]),
        (&inbound, &["-Q", "in"][..]),
        (&outbound_file, &["-Q", "out"][..]),
    ] {
        let err = file.with_extension("err");
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &tb.ns("src"),
            "tcpdump",
            "-U",
            "--immediate-mode",
            "-n",
            "-i",
            "vs",
        ])
        .args(extra)
        .arg("-w")
        .arg(file);
        dumps.push(spawn_logged(c, &err));
        wait_text(&err, "listening on");
    }
    let t = tb.sh(&["traffic"]);
    assert!(
        t.status.success(),
        "traffic: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    for d in &mut dumps {
        assert!(stop(d, libc::SIGINT).success());
    }
    let direct = read_capture_frames(&all);
    assert!(
        direct.len() >= 40,
        "the testbed made traffic: {}",
        direct.len()
    );
    // The mirror copy travels through VXLAN; wait until awsvpc has seen as many frames.
    wait_for(
        Duration::from_secs(30),
        "awsvpc to receive every mirrored frame",
        || (logged_packets(&log) >= direct.len() as u64).then_some(()),
    );
    let status = stop(&mut ts, libc::SIGINT);
    let ts_err = std::fs::read_to_string(work.path().join("tshark.err")).unwrap();
    assert!(status.success(), "tshark: {ts_err}");
    assert!(!ts_err.contains("Error by extcap pipe"), "{ts_err}");

    let ours = read_pcapng(&std::fs::read(&out).unwrap());
    assert_eq!(ours.interfaces, vec!["eni-testbed"]);
    // Byte for byte: the same frames as the direct capture.
    let mut got: Vec<&Vec<u8>> = ours.frames.iter().map(|f| &f.3).collect();
    let mut want: Vec<&Vec<u8>> = direct.iter().collect();
    let interleaved = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    got.sort();
    want.sort();
    assert!(
        got == want,
        "awsvpc delivered {} frames, tcpdump saw {}; the frames differ",
        got.len(),
        want.len()
    );
    for f in &ours.frames {
        assert_eq!(
            f.2 as usize,
            f.3.len(),
            "whole frames: original length = captured"
        );
    }
    // In order within each direction, against tcpdump -Q in / -Q out, which also check the
    // direction flags independently. Across directions the kernel mirrors egress before
    // tcpdump's tap and ingress after it, so two frames crossing on the wire may swap
    // places; AWS promises no cross-direction order either.
    let of = |flag: u32| -> Vec<Vec<u8>> {
        ours.frames
            .iter()
            .filter(|f| f.1 == Some(flag))
            .map(|f| f.3.clone())
            .collect()
    };
    let (expected_in, expected_out) = (
        read_capture_frames(&inbound),
        read_capture_frames(&outbound_file),
    );
    assert_eq!(of(1), expected_in, "inbound frames, flags and order");
    assert_eq!(of(2), expected_out, "outbound frames, flags and order");
    // dumpcap keeps our IDBs and EPBs but not the ISBs it reads from a pipe.
    eprintln!(
        "{} frames matched ({} inbound, {} outbound; {interleaved} positions differ only by cross-direction interleaving)",
        ours.frames.len(),
        expected_in.len(),
        expected_out.len()
    );
}

#[test]
fn tshark_lists_the_interface_and_its_dlt() {
    if !system_ready(&["tshark"], false) {
        return;
    }
    let home = installed_home();
    let d = run(tshark(home.path()).arg("-D"));
    assert!(String::from_utf8_lossy(&d.stdout).contains("awsvpc (AWS VPC Traffic Mirroring)"));
    let l = run(tshark(home.path()).args(["-L", "-i", "awsvpc"]));
    assert!(String::from_utf8_lossy(&l.stdout).contains("EN10MB (Ethernet (decapsulated VXLAN))"));
}

#[test]
fn tshark_knows_every_pref() {
    if !system_ready(&["tshark"], false) {
        return;
    }
    let home = installed_home();
    let o = run(tshark(home.path()).args(["-G", "currentprefs"]));
    let prefs = String::from_utf8_lossy(&o.stdout);
    for a in &Manifest::load().args {
        let name = format!("extcap.awsvpc.{}:", pref_suffix(&a.call));
        assert!(
            prefs.contains(&name),
            "{name} missing from tshark -G currentprefs"
        );
    }
}

#[test]
fn tshark_reports_a_bad_value_and_exits() {
    if !system_ready(&["tshark"], false) {
        return;
    }
    let home = installed_home();
    for (pref, needle) in [
        (
            "extcap.awsvpc.listenport:70000",
            "--listen-port must be a UDP port from 1 to 65535",
        ),
        ("extcap.awsvpc.source:nonsense", "--source"),
        (
            "extcap.awsvpc.sshhost:bastion",
            "--ssh-host is set to \"bastion\"",
        ),
        ("extcap.awsvpc.eni:i-0abc", "--eni must list ENI ids"),
    ] {
        let o = run(Command::new("timeout")
            .args([
                "60",
                "tshark",
                "-i",
                "awsvpc",
                "-o",
                "extcap.awsvpc.collector:local",
                "-o",
                pref,
                "-a",
                "duration:20",
            ])
            .env("HOME", home.path()));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(124), "tshark hung");
        assert!(!o.status.success());
        let line = err
            .lines()
            .find(|l| l.contains("Error by extcap pipe:"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains(needle), "{line}");
    }
}

#[test]
fn tshark_capture_configured_with_prefs_and_ended_by_duration() {
    if !system_ready(&["tshark"], false) {
        return;
    }
    let home = installed_home();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = run(Command::new("timeout")
        .args(["60", "tshark", "-i", "awsvpc", "-a", "duration:2", "-q"])
        .args([
            "-o",
            "extcap.awsvpc.collector:local",
            "-o",
            "extcap.awsvpc.listenaddr:127.0.0.1",
        ])
        .args([
            "-o",
            &format!("extcap.awsvpc.listenport:{port}"),
            "-o",
            "extcap.awsvpc.loglevel:info",
        ])
        .args(["-o", &format!("extcap.awsvpc.logfile:{}", log.display())])
        .env("HOME", home.path()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("Error by extcap pipe"), "{err}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains(&format!("listening on UDP 127.0.0.1:{port}")),
        "{log}"
    );
    assert!(
        log.contains("capture ended (Stopped)"),
        "tshark's SIGTERM ended it cleanly: {log}"
    );
}
