//! Stops that stop, and pipes that are pipes (issue 19): a capture ends within a bound when
//! Wireshark closes the fifo while nothing is written, when SIGTERM comes before anybody
//! opened the fifo or a control pipe, while the fifo's reader (or the toolbar) takes nothing
//! under a flood, or while a lost SSH tunnel reconnects; `--fifo` and the control pipes accept
//! only a fifo and never create, truncate or write anything else. The bounds are generous
//! correctness bounds; the times measured are printed (`-- --nocapture`).

mod common;
use common::sshd::Sshd;
use common::*;
use std::io::Read;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
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
    port: u16,
}

impl Awsvpc {
    /// With the local collector on a free loopback port.
    fn start(fifo: &Path, dir: &Path, extra: &[&std::ffi::OsStr]) -> Awsvpc {
        let port = free_udp_port();
        let mut c = Command::new(bin());
        c.args(["--collector", "local"]);
        Self::spawn(c, fifo, dir, port, extra)
    }

    /// `c` (the binary with its collector arguments), listening on 127.0.0.1:`port`.
    fn spawn(
        mut c: Command,
        fifo: &Path,
        dir: &Path,
        port: u16,
        extra: &[&std::ffi::OsStr],
    ) -> Awsvpc {
        let log = dir.join("awsvpc.log");
        let child = c
            .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
            .arg(fifo)
            .args([
                "--listen-addr",
                "127.0.0.1",
                "--listen-port",
                &port.to_string(),
            ])
            .args(["--log-level", "debug", "--log-file"])
            .arg(&log)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Awsvpc { child, log, port }
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

    let (status, err) = refused(Path::new("/dev/null"), dir.path(), &[]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("is a character device, not a fifo"), "{err}");
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

/// Wireshark closes the fifo while nothing is written: no datagram arrives (an idle
/// mirror), or datagrams keep arriving and the capture filter drops every one.
fn closed_fifo_ends_the_capture(filtered: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let p = fifo.clone();
    let opened = std::thread::spawn(move || std::fs::File::open(p).unwrap());
    let filter: &[&std::ffi::OsStr] = if filtered {
        &[os("--extcap-capture-filter"), os("udp port 1")]
    } else {
        &[]
    };
    let mut a = Awsvpc::start(&fifo, dir.path(), filter);
    let mut f = opened.join().unwrap();
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).unwrap();
    assert_eq!(magic, [0x0a, 0x0d, 0x0d, 0x0a], "pcapng section header");
    a.wait_log("listening on");
    let stop_flood = Arc::new(AtomicBool::new(false));
    let sender = filtered.then(|| flood(a.port, 1, stop_flood.clone()));
    if filtered {
        // Its interface is declared (written); every frame after that is filtered out.
        a.wait_log("new mirror source");
    }
    let t = Instant::now();
    drop(f); // Wireshark went away.
    let (status, took) = a.exit_within(t, BOUND, "the fifo closed");
    stop_flood.store(true, Ordering::Relaxed);
    if let Some(s) = sender {
        s.join().unwrap();
    }
    assert!(status.success(), "{status:?}");
    assert!(a.stderr().is_empty());
    let log = a.log();
    assert!(log.contains("capture ended (ReaderGone)"), "{log}");
    assert!(
        log.contains("datagrams received"),
        "statistics logged: {log}"
    );
    took
}

#[test]
fn closed_fifo_ends_a_capture_that_writes_nothing() {
    let idle = closed_fifo_ends_the_capture(false);
    eprintln!("idle capture ended {idle:?} after the fifo closed");
    let filtered = closed_fifo_ends_the_capture(true);
    eprintln!("capture filtering every datagram ended {filtered:?} after the fifo closed");
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

/// Sends mirror datagrams to `port` as fast as loopback takes them until `stop`.
fn flood(port: u16, vnis: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let frame = udp_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 9, &[0x5a; 950]);
        let datagrams: Vec<Vec<u8>> = (1..=vnis).map(|v| vxlan(v, &frame)).collect();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for d in &datagrams {
                let _ = tx.send_to(d, ("127.0.0.1", port));
                sent += 1;
            }
        }
        sent
    })
}

/// The drop count of awsvpc's last counters line, once it is not zero.
fn drops_counted(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.contains(" dropped") && !l.contains("· 0 dropped"))
        .map(str::to_string)
}

#[test]
fn sigterm_with_a_reader_that_takes_nothing_under_a_flood() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    // The reader takes the section header, then nothing, and keeps its end open.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let p = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::open(p).unwrap();
        let mut head = [0u8; 4];
        f.read_exact(&mut head).unwrap();
        let _ = done_rx.recv();
        drop(f);
    });
    let mut a = Awsvpc::start(&fifo, dir.path(), &[]);
    a.wait_log("listening on");
    let stop_flood = Arc::new(AtomicBool::new(false));
    let sender = flood(a.port, 1, stop_flood.clone());
    // Drops are counted only once the writer is blocked on the full pipe.
    let line = wait_for(Duration::from_secs(60), "drops to be counted", || {
        drops_counted(&a.log())
    });
    eprintln!("writer blocked: {line}");
    let t = Instant::now();
    kill(a.child.id(), libc::SIGTERM);
    let (status, took) = a.exit_within(t, BOUND, "SIGTERM");
    stop_flood.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    eprintln!("exited {took:?} after SIGTERM, the reader taking nothing, {sent} datagrams sent");
    let _ = done_tx.send(());
    reader.join().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(a.stderr().is_empty());
    let log = a.log();
    assert!(log.contains("capture ended (Stopped)"), "{log}");
    assert!(
        log.contains("datagrams received"),
        "statistics logged: {log}"
    );
    assert!(
        log.contains("did not read the capture pipe"),
        "the lost final statistics are logged: {log}"
    );
}

/// Bytes waiting in the pipe `f` reads from, and the pipe's size.
fn pipe_fill(f: &std::fs::File) -> (usize, usize) {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD and F_GETPIPE_SZ on a descriptor the test owns.
    let size = unsafe {
        libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n);
        libc::fcntl(f.as_raw_fd(), libc::F_GETPIPE_SZ)
    };
    (n.max(0) as usize, size.max(0) as usize)
}

#[test]
fn sigterm_with_a_toolbar_that_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, cin, cout) = (
        dir.path().join("fifo"),
        dir.path().join("cin"),
        dir.path().join("cout"),
    );
    for p in [&fifo, &cin, &cout] {
        mkfifo(p);
    }
    let reader = fifo_reader(&fifo);
    let (c_in, c_out) = (cin.clone(), cout.clone());
    // As the GUI does: control-out read-only and non-blocking, control-in a blocking
    // write-only open.
    let gui = std::thread::spawn(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let from_extcap = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(c_out)
            .unwrap();
        let to_extcap = std::fs::OpenOptions::new().write(true).open(c_in).unwrap();
        (from_extcap, to_extcap)
    });
    let mut a = Awsvpc::start(
        &fifo,
        dir.path(),
        &[
            os("--extcap-control-in"),
            cin.as_os_str(),
            os("--extcap-control-out"),
            cout.as_os_str(),
        ],
    );
    let (from_extcap, _to_extcap) = gui.join().unwrap();
    a.wait_log("listening on");
    // Each new VNI is a new source, and each new source a log line for the toolbar's logger:
    // enough of them fill the control pipe nobody reads.
    let stop_flood = Arc::new(AtomicBool::new(false));
    let sender = flood(a.port, 4000, stop_flood.clone());
    wait_for(Duration::from_secs(60), "control-out to fill", || {
        let (queued, size) = pipe_fill(&from_extcap);
        (size > 0 && queued + 4096 >= size).then_some(())
    });
    let t = Instant::now();
    kill(a.child.id(), libc::SIGTERM);
    let (status, took) = a.exit_within(t, BOUND, "SIGTERM");
    stop_flood.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    eprintln!("exited {took:?} after SIGTERM with control-out full");
    assert!(status.success(), "{status:?}");
    assert!(a.stderr().is_empty());
    assert!(a.log().contains("capture ended (Stopped)"));
    assert!(!read_pcapng(&reader.join().unwrap()).frames.is_empty());
}

/// The pids of processes named `name` whose command line contains `pattern`.
fn pids(name: &str, pattern: &str) -> Vec<u32> {
    let o = run(Command::new("pgrep").args(["-f", pattern]));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

/// Processes the test froze, killed however it ends (a frozen relay outlives its session).
struct Frozen(Vec<u32>);

impl Drop for Frozen {
    fn drop(&mut self) {
        for p in &self.0 {
            kill(*p, libc::SIGKILL);
        }
    }
}

/// `--collector host` over SSH: the tunnel goes silent, and SIGTERM comes while the
/// reconnect waits for a relay that cannot bind the port yet (the frozen one holds it).
#[test]
fn sigterm_during_an_ssh_reconnect() {
    if !system_ready(&["ssh", "ssh-keygen", "/usr/sbin/sshd", "python3"], true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path(), None, "");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let reader = fifo_reader(&fifo);
    let port = free_udp_port();
    let mut c = Command::new(bin());
    c.args(sshd.args())
        .env("AWSVPC_SSH_CONFIG", &sshd.ssh_config);
    let mut a = Awsvpc::spawn(c, &fifo, dir.path(), port, &[]);
    a.wait_log("relay running on 127.0.0.1");
    // Freeze the ssh client and the relay: the tunnel goes silent, and the relay keeps the
    // UDP port, so the reconnect's relay waits for it.
    let relay = pids("python3", &format!("python3 - --port {port} "));
    assert_eq!(relay.len(), 1, "one relay: {relay:?}");
    let o = run(Command::new("pgrep").args(["-P", &a.child.id().to_string(), "ssh"]));
    let ssh: u32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("one ssh child");
    let _frozen = Frozen(vec![relay[0], ssh]);
    kill(relay[0], libc::SIGSTOP);
    kill(ssh, libc::SIGSTOP);
    a.wait_log("reconnecting once");
    let t = Instant::now();
    kill(a.child.id(), libc::SIGTERM);
    let (status, took) = a.exit_within(t, BOUND, "SIGTERM during the reconnect");
    eprintln!("exited {took:?} after SIGTERM during an SSH reconnect");
    assert!(status.success(), "{status:?}");
    assert!(a.stderr().is_empty());
    assert!(a.log().contains("capture ended (Stopped)"));
    assert!(!reader.join().unwrap().is_empty(), "the section header");
}
