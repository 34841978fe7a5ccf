//! The extcap contract, exercised on the built binary the way Wireshark calls it
//! (extcap-contract.md is the specification).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn query(args: &[&str], home: &Path) -> std::process::Output {
    run(Command::new(bin())
        .args(args)
        .env("HOME", home)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("XDG_DATA_HOME")
        // Any network attempt would fail here; query calls must not need it.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .current_dir("/"))
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn interfaces_with_and_without_version() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["--extcap-interfaces", "--extcap-version=4.0"][..],
        &["--extcap-interfaces"][..],
        &["--extcap-interfaces", "--extcap-version"][..],
    ] {
        let o = query(args, home.path());
        assert!(o.status.success(), "{args:?}");
        let s = stdout(&o);
        assert!(s.starts_with("extcap {version=0."), "{s}");
        assert!(s.contains(
            "\ninterface {value=awsvpc}{control=3}{display=AWS VPC Traffic Mirroring}\n"
        ));
        assert!(o.stderr.is_empty());
    }
}

/// The Help button opens a page on this machine: `help=` is the path of this version's
/// README as HTML, written on first use, and names nothing online. A bare path, since
/// Wireshark's toolbar Help refuses `file:` URLs.
#[test]
fn help_is_a_local_page_of_this_version() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path().join("Zoë M");
    std::fs::create_dir_all(&home).unwrap();
    let s = stdout(&query(&["--extcap-interfaces"], &home));
    let first = s.lines().next().unwrap();
    let help = first
        .split("{help=")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .unwrap_or_else(|| panic!("no help in {first}"));
    assert!(!s.contains("http"), "{s}");
    let page = home.join(".local/share/awsvpc/awsvpc.html");
    assert_eq!(help, page.display().to_string());
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text.contains(&format!("<title>awsvpc {} ", env!("CARGO_PKG_VERSION"))));
    assert!(text.contains("When a capture cannot start"));
}

#[test]
fn dlts_and_unknown_interface() {
    let home = tempfile::tempdir().unwrap();
    let o = query(
        &["--extcap-dlts", "--extcap-interface", "awsvpc"],
        home.path(),
    );
    assert_eq!(
        stdout(&o),
        "dlt {number=1}{name=EN10MB}{display=Ethernet (decapsulated VXLAN)}\n"
    );
    let o = query(
        &["--extcap-dlts", "--extcap-interface", "other"],
        home.path(),
    );
    assert!(!o.status.success());
}

#[test]
fn config_lists_local_profiles_but_not_sso_sessions() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion=eu-west-1\n[profile prod]\nsso_session=corp\n[sso-session corp]\nsso_region=us-east-1\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[lab]\naws_access_key_id=x\n",
    )
    .unwrap();
    let o = query(
        &["--extcap-config", "--extcap-interface", "awsvpc"],
        home.path(),
    );
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(
        s.contains("value {arg=0}{value=default}{display=default (eu-west-1)}{default=true}\n"),
        "{s}"
    );
    assert!(s.contains("value {arg=0}{value=prod}{display=prod}\n"));
    assert!(s.contains("value {arg=0}{value=lab}{display=lab}\n"));
    assert!(!s.contains("corp"), "sso-session sections are not profiles");
    assert!(s.contains("value {arg=1}{value=eu-west-1}"));
}

#[test]
fn reload_accepts_boolean_words_and_explains_unavailable_lists() {
    let home = tempfile::tempdir().unwrap();
    let o = query(
        &[
            "--extcap-config",
            "--extcap-interface",
            "awsvpc",
            "--extcap-reload-option",
            "eni",
            "--amazon-dns",
            "false",
            "--profile",
            "prod",
            "--some-future-option",
            "x",
        ],
        home.path(),
    );
    assert!(o.status.success());
    let s = stdout(&o);
    assert_eq!(s.lines().count(), 1, "{s}");
    // The reload reaches the AWS code, which refuses the unknown profile before any call.
    assert!(
        s.starts_with(
            "value {arg=3}{value=unavailable}{display=AWS profile \"prod\" is not configured on this machine"
        ),
        "{s}"
    );
    assert!(s.contains("{enabled=false}"));
}

#[test]
fn capture_filter_validation() {
    let home = tempfile::tempdir().unwrap();
    let ok = query(
        &[
            "--extcap-capture-filter",
            "udp port 53 and not host 192.0.2.1",
            "--extcap-interface",
            "awsvpc",
        ],
        home.path(),
    );
    assert!(ok.status.success());
    assert!(ok.stdout.is_empty(), "valid filter must print nothing");
    let bad = query(
        &[
            "--extcap-capture-filter",
            "port 99999",
            "--extcap-interface",
            "awsvpc",
        ],
        home.path(),
    );
    assert!(bad.status.success(), "invalid filters still exit 0");
    let s = stdout(&bad);
    assert_eq!(s.lines().count(), 1);
    assert!(s.contains("99999"), "{s}");
}

#[test]
fn fatal_error_opens_and_closes_the_fifo_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let reader = fifo_reader(&fifo);
    let o = run(Command::new(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .args(["--collector", "local", "--listen-port", "0"]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "exactly one line: {err}");
    assert!(err.contains("--listen-port"), "{err}");
    assert!(
        reader.join().unwrap().is_empty(),
        "nothing written, fifo closed"
    );
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Capture {
    child: Child,
    reader: std::thread::JoinHandle<Vec<u8>>,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start_capture(extra: &[&str]) -> Capture {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let log = dir.path().join("awsvpc.log");
    let port = free_udp_port();
    let reader = fifo_reader(&fifo);
    let child = Command::new(bin())
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
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "awsvpc to listen", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("listening on"))
            .map(|_| ())
    });
    Capture {
        child,
        reader,
        port,
        log,
        _dir: dir,
    }
}

fn log_of(c: &Path) -> String {
    std::fs::read_to_string(c).unwrap_or_default()
}

const ENI_MAC: [u8; 6] = [2, 0x85, 0x69, 0xc2, 0xab, 2];
const GW_MAC: [u8; 6] = [2, 0x29, 0x23, 0x74, 0xc7, 0x7d];

#[test]
fn live_capture_sigterm_flushes_statistics_and_exits_zero() {
    let mut c = start_capture(&[
        "--source",
        "77=eni-0abc,02:85:69:c2:ab:02",
        "--extcap-capture-filter",
        "not udp port 9",
    ]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out_frame = udp_frame(ENI_MAC, GW_MAC, 53, b"outbound");
    let in_frame = udp_frame(GW_MAC, ENI_MAC, 53, b"inbound!");
    let filtered = udp_frame(GW_MAC, ENI_MAC, 9, b"discard");
    for f in [&out_frame, &in_frame, &filtered] {
        tx.send_to(&vxlan(77, f), ("127.0.0.1", c.port)).unwrap();
    }
    tx.send_to(b"not vxlan", ("127.0.0.1", c.port)).unwrap();
    wait_for(
        Duration::from_secs(20),
        "the frames to be processed",
        || log_of(&c.log).contains("2 packets,").then_some(()),
    );
    let t = Instant::now();
    kill(c.child.id(), libc::SIGTERM);
    let status = wait_for(Duration::from_secs(10), "exit after SIGTERM", || {
        c.child.try_wait().unwrap()
    });
    let stop_time = t.elapsed();
    eprintln!("stopped {stop_time:?} after SIGTERM");
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    c.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.is_empty(),
        "nothing on stderr during a good capture: {err}"
    );
    let out = read_pcapng(&c.reader.join().unwrap());
    assert_eq!(
        out.userappl.as_deref(),
        Some(concat!("awsvpc ", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(out.interfaces, vec!["eni-0abc"]);
    assert_eq!(out.frames.len(), 2);
    assert_eq!(out.frames[0].3, out_frame);
    assert_eq!(out.frames[0].1, Some(2), "outbound");
    assert_eq!(out.frames[1].3, in_frame);
    assert_eq!(out.frames[1].1, Some(1), "inbound");
    assert_eq!(out.statistics.len(), 1, "final statistics");
    let isb = out.statistics[0].1.join(" ");
    assert!(
        isb.contains("IsbIfRecv(3)") && isb.contains("IsbFilterAccept(2)"),
        "{isb}"
    );
    let log = log_of(&c.log);
    assert!(log.contains("1 malformed"), "{log}");
}

/// Wireshark's development branch (toward 5.0) stops an interface advertising
/// `{control=3}` by writing `Q` + a zero 24-bit length to `--extcap-control-in` instead of
/// sending SIGTERM (`extcap_request_stop` in extcap.c). The capture must end exactly as on
/// SIGTERM: the final statistics written, exit 0, nothing on stderr.
#[test]
fn quit_message_on_control_in_stops_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, cin, cout) = (
        dir.path().join("fifo"),
        dir.path().join("cin"),
        dir.path().join("cout"),
    );
    for p in [&fifo, &cin, &cout] {
        mkfifo(p);
    }
    let log = dir.path().join("awsvpc.log");
    let port = free_udp_port();
    let reader = fifo_reader(&fifo);
    // Wireshark reads control-out for the whole capture.
    let toolbar = fifo_reader(&cout);
    let mut child = Command::new(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .arg("--extcap-control-out")
        .arg(&cout)
        .arg("--extcap-control-in")
        .arg(&cin)
        .args(["--source", "77=eni-0abc,02:85:69:c2:ab:02"])
        .args(["--collector", "local", "--listen-addr", "127.0.0.1"])
        .args(["--listen-port", &port.to_string()])
        .args(["--log-level", "debug", "--log-file"])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_extcap = std::fs::OpenOptions::new().write(true).open(&cin).unwrap();
    wait_for(Duration::from_secs(20), "awsvpc to listen", || {
        log_of(&log).contains("listening on").then_some(())
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = udp_frame(ENI_MAC, GW_MAC, 53, b"before quit");
    tx.send_to(&vxlan(77, &frame), ("127.0.0.1", port)).unwrap();
    wait_for(Duration::from_secs(20), "the frame to be processed", || {
        log_of(&log).contains("1 packets,").then_some(())
    });
    to_extcap.write_all(&[b'Q', 0, 0, 0]).unwrap();
    let status = wait_for(
        Duration::from_secs(10),
        "exit after the quit message",
        || child.try_wait().unwrap(),
    );
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.is_empty(), "nothing on stderr: {err}");
    let out = read_pcapng(&reader.join().unwrap());
    assert_eq!(out.frames.len(), 1);
    assert_eq!(out.frames[0].3, frame);
    assert_eq!(out.statistics.len(), 1, "final statistics, as on SIGTERM");
    let l = log_of(&log);
    assert!(l.contains("Wireshark asked awsvpc to quit"), "{l}");
    drop(to_extcap);
    let _ = toolbar.join();
}

#[test]
fn reader_closing_the_fifo_ends_the_capture_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let log = dir.path().join("log");
    let port = free_udp_port();
    let p = fifo.clone();
    let opened = std::thread::spawn(move || std::fs::File::open(p).unwrap());
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
    let mut f = opened.join().unwrap();
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).unwrap();
    assert_eq!(
        magic,
        [0x0a, 0x0d, 0x0d, 0x0a],
        "pcapng section header first"
    );
    drop(f); // Wireshark went away.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = udp_frame(ENI_MAC, GW_MAC, 53, b"x");
    let status = wait_for(Duration::from_secs(20), "exit after EPIPE", || {
        let _ = tx.send_to(&vxlan(1, &frame), ("127.0.0.1", port));
        std::thread::sleep(Duration::from_millis(50));
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
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("ReaderGone"));
}

/// The GUI's side of the control pipes: it opens our control-out for reading and our
/// control-in for writing, sends Initialized, and reads status, log and counters.
#[test]
fn toolbar_gets_status_log_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, cin, cout) = (
        dir.path().join("fifo"),
        dir.path().join("cin"),
        dir.path().join("cout"),
    );
    for p in [&fifo, &cin, &cout] {
        mkfifo(p);
    }
    let port = free_udp_port();
    let reader = fifo_reader(&fifo);
    let cout2 = cout.clone();
    let from_extcap = std::thread::spawn(move || std::fs::File::open(cout2).unwrap());
    let mut child = Command::new(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .arg("--extcap-control-out")
        .arg(&cout)
        .arg("--extcap-control-in")
        .arg(&cin)
        .args([
            "--collector",
            "local",
            "--listen-addr",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
            "--log-level",
            "info",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Blocks until awsvpc opens control-in: the GUI's main thread does exactly this.
    let mut to_extcap = std::fs::OpenOptions::new().write(true).open(&cin).unwrap();
    to_extcap.write_all(&[b'T', 0, 0, 2, 0, 0]).unwrap(); // Initialized
    let mut from_extcap = from_extcap.join().unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = udp_frame(ENI_MAC, GW_MAC, 53, b"toolbar");
    let mut seen = (false, false, false, false);
    let start = Instant::now();
    while !(seen.0 && seen.1 && seen.2 && seen.3) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "toolbar frames missing: {seen:?}"
        );
        let _ = tx.send_to(&vxlan(5, &frame), ("127.0.0.1", port));
        let f = awsvpc::extcap::control::read_frame(&mut from_extcap).expect("control frame");
        let text = String::from_utf8_lossy(&f.payload).to_string();
        match (f.control, f.command) {
            (_, 6) if text.contains("Listening on UDP") => seen.0 = true,
            (0, 2) if text.contains("[info]") => seen.1 = true,
            (2, 1) if text.contains("packets") => seen.2 = true,
            // The effective rate, which matters most where the transport is slow (SSM).
            (_, 6) if text.starts_with("Capturing:") && text.ends_with("packets/s") => {
                seen.3 = true
            }
            _ => {}
        }
    }
    // Pressing the counters button asks for the full statistics in the log.
    to_extcap.write_all(&[b'T', 0, 0, 2, 2, 1]).unwrap();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "statistics not logged"
        );
        let f = awsvpc::extcap::control::read_frame(&mut from_extcap).unwrap();
        if f.control == 0
            && f.command == 2
            && String::from_utf8_lossy(&f.payload).contains("statistics:")
        {
            break;
        }
    }
    kill(child.id(), libc::SIGTERM);
    let status = wait_for(Duration::from_secs(10), "exit", || {
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
    assert!(!read_pcapng(&reader.join().unwrap()).frames.is_empty());
}

#[test]
fn unexpected_vni_is_counted_not_mixed_in() {
    let mut c = start_capture(&["--vni", "10"]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = udp_frame(ENI_MAC, GW_MAC, 53, b"x");
    tx.send_to(&vxlan(11, &frame), ("127.0.0.1", c.port))
        .unwrap();
    tx.send_to(&vxlan(10, &frame), ("127.0.0.1", c.port))
        .unwrap();
    wait_for(Duration::from_secs(20), "processing", || {
        log_of(&c.log).contains("1 packets,").then_some(())
    });
    kill(c.child.id(), libc::SIGINT);
    assert!(wait_for(Duration::from_secs(10), "exit", || c
        .child
        .try_wait()
        .unwrap())
    .success());
    let out = read_pcapng(&c.reader.join().unwrap());
    assert_eq!(out.frames.len(), 1);
    assert_eq!(out.interfaces, vec!["vni-10@127.0.0.1"]);
    let log = log_of(&c.log);
    assert!(
        log.contains("unexpected mirror source vni-11@127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("1 from unexpected sources"), "{log}");
}

#[test]
fn log_file_that_cannot_be_written_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let reader = fifo_reader(&fifo);
    let o = run(Command::new(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .args([
            "--collector",
            "local",
            "--log-file",
            "/nonexistent-dir/awsvpc.log",
        ]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Cannot write the log file /nonexistent-dir/awsvpc.log"),
        "{err}"
    );
    assert!(reader.join().unwrap().is_empty());
}
