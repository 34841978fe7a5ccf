//! The whole data path with real parts: kernel VXLAN mirroring in network namespaces, real
//! tshark as the extcap host, and a direct tcpdump of the mirrored veth as the oracle.
//! Also the tshark side of the extcap contract (-D, -L, prefs, error reporting).

mod common;
use awsvpc::manifest::{pref_suffix, Manifest};
use common::*;
use std::path::Path;
use std::process::Command;

fn tshark(home: &Path) -> Command {
    let mut c = Command::new("tshark");
    c.env("HOME", home);
    c
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

    traffic_matches_direct(
        &tb,
        work.path(),
        &mut ts,
        &log,
        &out,
        "eni-testbed",
        Oracle::FramesAndDirection,
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
    // 4.0's parser takes the interface sentence's `{control=3}` as an unknown key: no warning.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&d.stdout),
        String::from_utf8_lossy(&d.stderr)
    );
    assert!(!all.contains("INTERFACE sentence"), "{all}");
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
            "extcap.awsvpc.vni:99999999",
            "--vni must be a VXLAN network identifier",
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
