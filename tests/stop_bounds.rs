//! Stops that stop, and pipes that are pipes (issue 19): a capture ends within a bound when
//! Wireshark closes the fifo on an idle mirror, when SIGTERM comes before anybody opened the
//! fifo or a control pipe, and when SIGTERM comes while the reader takes nothing under a
//! flood; `--fifo` and the control pipes accept only a fifo and never create, truncate or
//! write anything else. The bounds are generous correctness bounds; the times measured are
//! printed (`-- --nocapture`).

mod common;
use common::*;
use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The bound on every stop here: far above what is measured, far below Wireshark's 30 s
/// before SIGKILL.
const BOUND: Duration = Duration::from_secs(5);

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// awsvpc as Wireshark starts it, killed if the test ends first (a failed bound must not
/// leave it running).
struct Awsvpc {
    child: Child,
    log: PathBuf,
}

impl Awsvpc {
    fn start(fifo: &Path, dir: &Path, extra: &[&std::ffi::OsStr]) -> Awsvpc {
        let log = dir.join("awsvpc.log");
        let port = free_udp_port();
        let child = Command::new(bin())
            .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
            .arg(fifo)
            .args(["--collector", "local", "--listen-addr", "127.0.0.1"])
            .args(["--listen-port", &port.to_string()])
            .args(["--log-level", "debug", "--log-file"])
            .arg(&log)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Awsvpc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str) {
        wait_for(Duration::from_secs(20), needle, || {
            self.log().contains(needle).then_some(())
        });
    }

    /// Waits for the exit, at most `limit` from `since`; returns the status and the time.
    fn exit_within(
        &mut self,
        since: Instant,
        limit: Duration,
        what: &str,
    ) -> (ExitStatus, Duration) {
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s, since.elapsed());
            }
            assert!(
                since.elapsed() < limit,
                "awsvpc still running {limit:?} after {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        err
    }
}

impl Drop for Awsvpc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a capture that must be refused, within the bound.
fn refused(fifo: &Path, dir: &Path, extra: &[&std::ffi::OsStr]) -> (ExitStatus, String) {
    let mut a = Awsvpc::start(fifo, dir, extra);
    let (status, _) = a.exit_within(Instant::now(), BOUND, "start");
    (status, a.stderr())
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn fifo_that_is_not_a_fifo_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("capture.pcapng");
    std::fs::write(&file, b"a file the user keeps").unwrap();
    let (status, err) = refused(&file, dir.path(), &[]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("is a regular file, not a fifo") && err.contains("mkfifo"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"a file the user keeps",
        "neither truncated nor written, on the refusal or its error path"
    );

    let missing = dir.path().join("missing");
    let (status, err) = refused(&missing, dir.path(), &[]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!missing.exists(), "nothing created");

    let (status, err) = refused(dir.path(), dir.path(), &[]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("is a directory, not a fifo"), "{err}");
    eprintln!("refused: {}", err.trim());
}

#[test]
fn control_pipes_that_are_not_fifos_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, cin, file) = (
        dir.path().join("fifo"),
        dir.path().join("cin"),
        dir.path().join("notes.txt"),
    );
    mkfifo(&fifo);
    mkfifo(&cin);
    std::fs::write(&file, b"notes").unwrap();

    // control-out is a regular file: control-in is opened first, as Wireshark needs, then
    // the refusal; the fifo is opened and closed so tshark reports it.
    let reader = fifo_reader(&fifo);
    let c = cin.clone();
    let gui = std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(c));
    let (status, err) = refused(
        &fifo,
        dir.path(),
        &[
            os("--extcap-control-in"),
            cin.as_os_str(),
            os("--extcap-control-out"),
            file.as_os_str(),
        ],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("--extcap-control-out") && err.contains("is a regular file, not a fifo"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"notes");
    assert!(gui.join().unwrap().is_ok(), "control-in was opened");
    assert!(reader.join().unwrap().is_empty(), "fifo opened and closed");

    // control-in is a regular file.
    let reader = fifo_reader(&fifo);
    let cout = dir.path().join("cout");
    mkfifo(&cout);
    let (status, err) = refused(
        &fifo,
        dir.path(),
        &[
            os("--extcap-control-in"),
            file.as_os_str(),
            os("--extcap-control-out"),
            cout.as_os_str(),
        ],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("--extcap-control-in") && err.contains("is a regular file, not a fifo"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"notes");
    assert!(reader.join().unwrap().is_empty(), "fifo opened and closed");
}

#[test]
fn sigterm_before_anybody_opens_the_fifo_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let mut a = Awsvpc::start(&fifo, dir.path(), &[]);
    a.wait_log("waiting for Wireshark to open --fifo");
    let t = Instant::now();
    kill(a.child.id(), libc::SIGTERM);
    let (status, took) = a.exit_within(t, BOUND, "SIGTERM");
    eprintln!("exited {took:?} after SIGTERM with nobody reading the fifo");
    assert!(status.success(), "{status:?}");
    assert!(a.stderr().is_empty());
    assert!(a
        .log()
        .contains("stopped before Wireshark opened the capture pipe"));
}

#[test]
fn sigterm_before_wireshark_opens_the_control_pipes_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, cin, cout) = (
        dir.path().join("fifo"),
        dir.path().join("cin"),
        dir.path().join("cout"),
    );
    for p in [&fifo, &cin, &cout] {
        mkfifo(p);
    }
    let pipes = [
        os("--extcap-control-in"),
        cin.as_os_str(),
        os("--extcap-control-out"),
        cout.as_os_str(),
    ];
    // Nobody writes to control-in.
    let mut a = Awsvpc::start(&fifo, dir.path(), &pipes);
    a.wait_log("waiting for Wireshark to open --extcap-control-in");
    let t = Instant::now();
    kill(a.child.id(), libc::SIGTERM);
    let (status, took) = a.exit_within(t, BOUND, "SIGTERM");
    eprintln!("exited {took:?} after SIGTERM with nobody writing control-in");
    assert!(status.success(), "{status:?}");
    assert!(a.stderr().is_empty());
    assert!(a
        .log()
        .contains("stopped before Wireshark opened the control pipes"));

    // control-in is opened, nobody reads control-out.
    let c = cin.clone();
    let gui = std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(c));
    let mut a = Awsvpc::start(&fifo, dir.path(), &pipes);
    let _to_extcap = gui.join().unwrap().unwrap();
    a.wait_log("waiting for Wireshark to open --extcap-control-out");
    let t = Instant::now();
    kill(a.child.id(), libc::SIGTERM);
    let (status, took) = a.exit_within(t, BOUND, "SIGTERM");
    eprintln!("exited {took:?} after SIGTERM with nobody reading control-out");
    assert!(status.success(), "{status:?}");
    assert!(a.stderr().is_empty());
}
