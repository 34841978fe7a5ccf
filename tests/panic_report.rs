//! A panic (a bug) reaches Wireshark as one stderr line and the log as the whole report.
//! The test runs itself as a child that installs awsvpc's hook and panics, as the binary
//! would, and reads what the child wrote.

use std::process::Command;

const CHILD: &str = "AWSVPC_PANIC_CHILD_LOG";
const NAME: &str = "a_panic_is_one_stderr_line_and_the_whole_report_in_the_log";

#[test]
fn a_panic_is_one_stderr_line_and_the_whole_report_in_the_log() {
    if let Some(log) = std::env::var_os(CHILD) {
        awsvpc::log::init(awsvpc::log::Level::Message, log.to_str()).unwrap();
        awsvpc::log::report_panics();
        let worker = std::thread::Builder::new()
            .name("relay-reader".into())
            .spawn(|| panic!("index 7 is out of\nrange for 4 bytes"))
            .unwrap();
        assert!(worker.join().is_err());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("capture.log");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, &log)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "child: {out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr:?}");
    assert!(
        lines[0].starts_with(
            "awsvpc stopped on an internal error (index 7 is out of range for 4 bytes at tests/panic_report.rs:"
        ) && lines[0].ends_with("please report it, with the log (--log-file) if there is one."),
        "{}",
        lines[0]
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(
            "[message] internal error: thread relay-reader panicked at tests/panic_report.rs:"
        ) && logged.contains(": index 7 is out of\nrange for 4 bytes\n"),
        "{logged}"
    );
}
