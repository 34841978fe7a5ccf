//! `--collector host --connect ssh` against a real OpenSSH server: the relay runs there over
//! SSH and the capture must equal a direct tcpdump of the mirrored veth. Also the ways it
//! must refuse or stop: unknown and changed host keys, no python3, nothing listening, a
//! killed sshd, and a tunnel that goes silent (one reconnect).

mod common;
use awsvpc::manifest::pref_suffix;
use common::sshd::*;
use common::*;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// awsvpc run directly as the extcap host would, with its fifo read from a thread.
struct Direct {
    child: Child,
    reader: std::thread::JoinHandle<Vec<u8>>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_direct(args: &[String], sshd: &Sshd) -> Direct {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let log = dir.path().join("awsvpc.log");
    let reader = fifo_reader(&fifo);
    let child = Command::new(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .args(args)
        .args(["--log-level", "debug", "--log-file"])
        .arg(&log)
        .env("AWSVPC_SSH_CONFIG", &sshd.ssh_config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Direct {
        child,
        reader,
        log,
        _dir: dir,
    }
}

/// Waits for a refused capture: exit status, its one stderr line, the fifo's bytes.
fn refused(d: Direct) -> (bool, String, Vec<u8>) {
    let o = d.child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    (o.status.success(), err, d.reader.join().unwrap())
}

fn assert_refused(d: Direct, wants: &[&str]) -> String {
    let (ok, err, fifo) = refused(d);
    assert!(!ok, "a refused capture exits non-zero");
    assert_eq!(err.lines().count(), 1, "exactly one line on stderr: {err}");
    for w in wants {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
    assert!(
        fifo.is_empty(),
        "the fifo was opened and closed with nothing in it"
    );
    err
}

fn ready() -> bool {
    system_ready(
        &[
            "ssh",
            "ssh-keygen",
            "ssh-keyscan",
            "/usr/sbin/sshd",
            "python3",
        ],
        true,
    )
}

fn relays_running(port: u16) -> usize {
    let o = run(Command::new("pgrep").args(["-f", &format!("python3 - --port {port} ")]));
    String::from_utf8_lossy(&o.stdout).lines().count()
}

#[test]
fn unknown_and_changed_host_keys_are_refused() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path(), None, "");
    let port = free_udp_port();
    let mut args = sshd.args();
    args.extend([
        "--listen-addr".into(),
        "127.0.0.1".into(),
        "--listen-port".into(),
        port.to_string(),
    ]);

    // Unknown: the fingerprint and the exact line to add, and no connection made.
    let fingerprint = {
        let o = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(dir.path().join("host_key.pub")));
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let key_line = std::fs::read_to_string(&sshd.known_hosts).unwrap();
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut unknown = args.clone();
    let kh = unknown
        .iter()
        .position(|a| a == "--ssh-known-hosts")
        .unwrap();
    unknown[kh + 1] = empty.display().to_string();
    let e = assert_refused(
        start_direct(&unknown, &sshd),
        &[
            "not in",
            "does not trust a host on first use",
            &fingerprint,
            key_line.trim(),
        ],
    );
    eprintln!("unknown host: {e}");

    // Changed: another key recorded for the same host:port.
    let other = dir.path().join("other_key");
    keygen(&other);
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let wrong = dir.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {}\n", sshd.port, other_key.join(" ")),
    )
    .unwrap();
    unknown[kh + 1] = wrong.display().to_string();
    let e = assert_refused(
        start_direct(&unknown, &sshd),
        &["does not match", &fingerprint, "ssh-keygen -R"],
    );
    eprintln!("changed host key: {e}");
    assert_eq!(relays_running(port), 0, "no relay was started");
}

#[test]
fn nothing_listening_and_no_python3_are_explained() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (user, path) = nopython_user(dir.path());
    let sshd = Sshd::start(dir.path(), None, &path);
    share_authorized_keys(dir.path());
    let mut nopython = sshd.args();
    let u = nopython.iter().position(|a| a == "--ssh-user").unwrap();
    nopython[u + 1] = user.to_string();

    let mut closed = sshd.args();
    let p = closed.iter().position(|a| a == "--ssh-port").unwrap();
    closed[p + 1] = free_tcp_port().to_string();
    let e = assert_refused(
        start_direct(&closed, &sshd),
        &["connection refused", "--ssh-port"],
    );
    eprintln!("nothing listening: {e}");

    let e = assert_refused(
        start_direct(&nopython, &sshd),
        &["has no python3", "install"],
    );
    eprintln!("no python3: {e}");
}

fn send_vxlan(port: u16, n: u8) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let inner = udp_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 9, &[n; 64]);
    tx.send_to(&vxlan(7, &inner), (Ipv4Addr::LOCALHOST, port))
        .unwrap();
}

/// Starts a capture through the relay and waits until datagrams sent to the relay's port
/// arrive.
fn flowing(sshd: &Sshd, port: u16) -> Direct {
    let mut args = sshd.args();
    args.extend([
        "--listen-addr".into(),
        "127.0.0.1".into(),
        "--listen-port".into(),
        port.to_string(),
    ]);
    let d = start_direct(&args, sshd);
    wait_text(&d.log, "relay running on 127.0.0.1");
    send_until_logged(port, &d.log, 0, "packets through the relay");
    d
}

/// Sends datagrams to the relay's port (a stand-in for the mirror; resent because UDP) until
/// awsvpc's packet counter passes `more_than`.
fn send_until_logged(port: u16, log: &Path, more_than: u64, what: &str) {
    let mut n = 0u8;
    wait_for(Duration::from_secs(20), what, || {
        send_vxlan(port, n);
        n = n.wrapping_add(1);
        // Pacing only: the wait itself is on the counter.
        std::thread::sleep(Duration::from_millis(50));
        (logged_packets(log) > more_than).then_some(())
    });
}

#[test]
fn killed_sshd_ends_the_capture_with_one_sentence() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut sshd = Sshd::start(dir.path(), None, "");
    let port = free_udp_port();
    let d = flowing(&sshd, port);
    let killed = Instant::now();
    sshd.kill_all();
    let (ok, err, fifo) = refused(d);
    let took = killed.elapsed();
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("lost") && err.contains("reconnecting failed"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(20),
        "stopped {took:?} after sshd died"
    );
    let cap = read_pcapng(&fifo);
    assert!(
        !cap.frames.is_empty(),
        "what arrived before the loss was delivered"
    );
    assert_eq!(relays_running(port), 0, "the relay exited with its session");
    eprintln!("sshd killed: stopped after {took:?}: {err}");
}

#[test]
fn a_silent_tunnel_is_detected_and_reconnected_once() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path(), None, "");
    let port = free_udp_port();
    let mut d = flowing(&sshd, port);
    // Freeze the ssh client: nothing reaches awsvpc, as when a network path dies silently.
    let o = run(Command::new("pgrep").args(["-P", &d.child.id().to_string(), "ssh"]));
    let ssh_pid: u32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("one ssh child");
    let frozen = Instant::now();
    kill(ssh_pid, libc::SIGSTOP);
    wait_text(&d.log, "reconnecting once");
    let detected = frozen.elapsed();
    assert!(
        detected < Duration::from_secs(8),
        "detected after {detected:?}"
    );
    wait_for(Duration::from_secs(40), "the second relay", || {
        let log = std::fs::read_to_string(&d.log).unwrap_or_default();
        (log.matches("relay running on").count() == 2).then_some(())
    });
    let before = logged_packets(&d.log);
    send_until_logged(port, &d.log, before, "packets after the reconnect");
    let status = stop_child(&mut d.child, libc::SIGTERM);
    assert!(status.success(), "a stop after a reconnect is a clean stop");
    let mut err = String::new();
    use std::io::Read;
    d.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.is_empty(), "nothing on stderr: {err}");
    let cap = read_pcapng(&d.reader.join().unwrap());
    assert!(cap.frames.len() as u64 > before);
    eprintln!(
        "silence detected after {detected:?}; reconnected; {} frames",
        cap.frames.len()
    );
}

#[test]
fn ssh_relay_capture_equals_direct_tcpdump() {
    if !system_ready(
        &[
            "tshark",
            "tcpdump",
            "ip",
            "tc",
            "ssh",
            "/usr/sbin/sshd",
            "python3",
            "curl",
            "dig",
        ],
        true,
    ) {
        return;
    }
    let tb = Testbed::up(&format!("aws{}", std::process::id() % 100_000));
    let home = installed_home();
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(work.path(), Some(&tb.ns("col")), "");
    let (log, out) = (
        work.path().join("awsvpc.log"),
        work.path().join("awsvpc.pcapng"),
    );
    let pref = |call: &str, v: &str| format!("extcap.awsvpc.{}:{v}", pref_suffix(call));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &tb.ns("col"), "tshark", "-i", "awsvpc"]);
    let args = sshd.args();
    for pair in args.chunks(2) {
        cmd.arg("-o").arg(pref(&pair[0], &pair[1]));
    }
    cmd.args([
        "-o",
        &pref("--source", &format!("4242=eni-testbed,{}", tb.mac())),
    ])
    .args(["-o", &pref("--log-level", "debug")])
    .args(["-o", &pref("--log-file", &log.display().to_string())])
    .arg("-w")
    .arg(&out)
    .env("HOME", home.path())
    .env("AWSVPC_SSH_CONFIG", &sshd.ssh_config);
    let mut ts = spawn_logged(cmd, &work.path().join("tshark.err"));
    wait_text(&log, "relay running on 127.0.0.1");

    traffic_matches_direct(
        &tb,
        work.path(),
        &mut ts,
        &log,
        &out,
        "eni-testbed",
        Oracle::FramesAndDirection,
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("over SSH"));
}
