//! The real Wireshark Qt GUI under Xvfb: a capture on the awsvpc interface with its toolbar
//! starts, shows the log and status, and stops without freezing (tests/gui/wireshark_gui.sh).

mod common;
use common::*;
use std::process::Command;

#[test]
fn wireshark_gui_capture_with_toolbar() {
    let tools = [
        "wireshark",
        "xvfb-run",
        "import",
        "capinfos",
        "ip",
        "tc",
        "curl",
        "dig",
        "ping",
        "ss",
        "python3",
    ];
    if !system_ready(&tools, true) {
        return;
    }
    let artifacts = tempfile::tempdir().unwrap();
    let o = run(Command::new("bash")
        .arg(repo().join("tests/gui/wireshark_gui.sh"))
        .arg(bin())
        .env("GUI_ARTIFACTS", artifacts.path())
        .env(
            "AWSVPC_GUI_TESTBED",
            format!("awg{}", std::process::id() % 100_000),
        ));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "GUI test failed:\n{out}\n{err}");
    assert!(out.contains("PASS"), "{out}");
    let log = std::fs::read_to_string(artifacts.path().join("awsvpc.log")).unwrap();
    assert!(log.contains("toolbar initialized"), "{log}");
    assert!(log.contains("capture ended (Stopped)"), "{log}");
}
