//! The ephemeral collector's SSH (`SshCollector::connect_pinned`, russh with a pinned host
//! key) against a real OpenSSH server set up the way cloud-init sets one up from awsvpc's
//! user data: the host key PEM from `CollectorKeys::host_private_openssh` and the client's
//! `client_public_line` in authorized_keys. The relay is the real one.
//!
//! - the testbed's kernel VXLAN mirror, read through the relay over SSH inside the
//!   collector namespace, equals a direct tcpdump of the mirrored veth (frames, order per
//!   direction, and kernel timestamps close to tcpdump's);
//! - datagrams sent to the relay on loopback arrive intact and in order;
//! - another host key at the address is refused at once with both fingerprints;
//! - while nothing listens the status bar counts, and the collector connects once sshd
//!   starts (started on that status, not after a sleep); a bounded wait ends in one
//!   sentence; a stop ends the wait;
//! - a killed relay or session is one reconnect; a second loss soon after, or a dead sshd,
//!   ends the capture with one sentence.
#![cfg(feature = "aws")]

mod common;
use awsvpc::collector::{Batch, DatagramSource};
use awsvpc::relay::RelayOptions;
use awsvpc::transport::pinned::{CollectorKeys, PinnedSettings};
use awsvpc::transport::ssh::SshCollector;
use common::sshd::*;
use common::*;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LABEL: &str = "the collector i-0test (127.0.0.1)";

fn ready() -> bool {
    system_ready(&["ssh-keygen", "/usr/sbin/sshd", "python3", "pgrep"], true)
}

/// sshd as cloud-init configures it from awsvpc's user data.
fn collector_sshd(dir: &Path, ns: Option<&str>, port: Option<u16>, keys: &CollectorKeys) -> Sshd {
    collector_sshd_with(dir, ns, port, keys, "")
}

fn collector_sshd_with(
    dir: &Path,
    ns: Option<&str>,
    port: Option<u16>,
    keys: &CollectorKeys,
    extra: &str,
) -> Sshd {
    Sshd::start_with(
        dir,
        ns,
        port,
        extra,
        &keys.host_private_openssh(),
        &format!("{}\n", keys.client_public_line("awsvpc-capture")),
    )
}

fn settings(port: u16, keys: &Arc<CollectorKeys>, boot_wait: Duration) -> PinnedSettings {
    PinnedSettings {
        address: "127.0.0.1".into(),
        port,
        user: "root".into(),
        keys: keys.clone(),
        boot_wait,
        label: LABEL.into(),
    }
}

fn relay(addr: IpAddr, port: u16) -> RelayOptions {
    RelayOptions {
        listen_addr: addr,
        listen_port: port,
        snaplen: None,
        bind_wait_s: 0,
        on_host: None,
    }
}

/// What the status bar was told; another thread can wait for a message.
#[derive(Default, Clone)]
struct Status(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Status {
    fn say(&self, s: &str) {
        self.0 .0.lock().unwrap().push(s.to_string());
        self.0 .1.notify_all();
    }
    fn all(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }
    fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|s| s.contains(needle)).count()
    }
    /// Waits until `n` messages contain `needle` (a hang guard of 30 s).
    fn wait(&self, needle: &str, n: usize) {
        let (lock, cv) = &*self.0;
        let all = cv
            .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(30), |v| {
                v.iter().filter(|s| s.contains(needle)).count() < n
            })
            .unwrap()
            .0;
        assert!(
            all.iter().filter(|s| s.contains(needle)).count() >= n,
            "timed out waiting for {n} x {needle:?}: {all:?}"
        );
    }
}

fn connect(s: PinnedSettings, r: RelayOptions, status: &Status) -> Result<SshCollector, String> {
    let stop = AtomicBool::new(false);
    SshCollector::connect_pinned(s, r, &|m| status.say(m), &stop).map(|c| c.expect("not stopped"))
}

/// One received datagram: payload and kernel receive time (since the epoch).
type Got = (Vec<u8>, Duration);

/// Reads until `done` says so (a 30 s hang guard), calling `tick` between reads.
fn read_until(
    c: &mut SshCollector,
    status: &Status,
    mut done: impl FnMut(&[Got]) -> bool,
    mut tick: impl FnMut(),
) -> std::io::Result<Vec<Got>> {
    let mut batch = Batch::new();
    let mut got = Vec::new();
    let start = Instant::now();
    while !done(&got) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out with {} datagrams",
            got.len()
        );
        c.recv_batch(&mut batch, &|m| status.say(m))?;
        for i in 0..batch.len() {
            let (d, _, ts, _) = batch.get(i);
            got.push((d.to_vec(), ts));
        }
        tick();
    }
    Ok(got)
}

fn numbered(i: u32) -> Vec<u8> {
    // 1 to ~9000 bytes (the largest a mirror sends), the number first.
    let len = 4 + (i as usize * 997) % 8996;
    let mut d = vec![(i % 251) as u8; len];
    d[..4].copy_from_slice(&i.to_be_bytes());
    d
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn relays_running(port: u16) -> Vec<u32> {
    let o = run(Command::new("pgrep").args(["-f", &format!("python3 - --port {port} ")]));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn datagrams_arrive_intact_in_order_with_kernel_times() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(CollectorKeys::generate().unwrap());
    let sshd = collector_sshd(dir.path(), None, None, &keys);
    let port = free_udp_port();
    let status = Status::default();
    let t0 = Instant::now();
    let mut c = connect(
        settings(sshd.port, &keys, Duration::from_secs(5)),
        relay(Ipv4Addr::LOCALHOST.into(), port),
        &status,
    )
    .unwrap();
    let connected = t0.elapsed();
    assert_eq!(status.count("Waiting for SSH"), 0, "sshd was up: no wait");
    assert!(c.describe().contains(LABEL), "{}", c.describe());
    let log = std::fs::read_to_string(&sshd.log).unwrap();
    assert!(
        log.contains("Accepted publickey for root") && log.contains(&keys.client_fingerprint()),
        "logged in with the generated key: {log}"
    );

    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    const N: u32 = 2000;
    let sent_at = now();
    let mut next = 0u32;
    let got = read_until(
        &mut c,
        &status,
        |g| g.len() as u32 >= N,
        || {
            // In bursts of 200, so loopback never overruns the relay's socket.
            for _ in 0..200 {
                if next < N {
                    tx.send_to(&numbered(next), ("127.0.0.1", port)).unwrap();
                    next += 1;
                }
            }
        },
    )
    .unwrap();
    let received_at = now();
    assert_eq!(got.len() as u32, N);
    for (i, (d, _)) in got.iter().enumerate() {
        assert!(*d == numbered(i as u32), "datagram {i} intact and in order");
    }
    let stamps: Vec<Duration> = got.iter().map(|g| g.1).collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "kernel times in order"
    );
    assert!(
        stamps[0] >= sent_at - Duration::from_millis(5) && stamps[stamps.len() - 1] <= received_at,
        "kernel receive times within the exchange: {:?}..{:?} vs {sent_at:?}..{received_at:?}",
        stamps[0],
        stamps[stamps.len() - 1]
    );
    assert_eq!(c.drops(), 0);
    drop(c);
    wait_for(Duration::from_secs(15), "the relay to exit", || {
        relays_running(port).is_empty().then_some(())
    });
    eprintln!(
        "connected in {connected:?}; {N} datagrams ({} KB) intact and in order",
        got.iter().map(|g| g.0.len()).sum::<usize>() / 1000
    );
}

#[test]
fn another_host_key_is_refused_at_once_with_both_fingerprints() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = Arc::new(CollectorKeys::generate().unwrap());
    // Something else at the address: the same authorized client key, another host key.
    let impostor = CollectorKeys::generate().unwrap();
    let sshd = Sshd::start_with(
        dir.path(),
        None,
        None,
        "",
        &impostor.host_private_openssh(),
        &ours.client_public_line("awsvpc-capture"),
    );
    let port = free_udp_port();
    let status = Status::default();
    let t0 = Instant::now();
    let e = connect(
        settings(sshd.port, &ours, Duration::from_secs(60)),
        relay(Ipv4Addr::LOCALHOST.into(), port),
        &status,
    )
    .err()
    .expect("refused");
    let took = t0.elapsed();
    for want in [
        ours.host_fingerprint().as_str(),
        impostor.host_fingerprint().as_str(),
        "possibly an attack",
        "refused to connect",
        LABEL,
    ] {
        assert!(e.contains(want), "{want:?} missing from: {e}");
    }
    assert!(!e.contains('\n'), "{e}");
    // No retry: well within one retry interval, never "waiting", no login, no relay.
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    assert_eq!(status.count("Waiting for SSH"), 0, "{:?}", status.all());
    let log = std::fs::read_to_string(&sshd.log).unwrap();
    assert!(!log.contains("Accepted publickey"), "{log}");
    assert!(relays_running(port).is_empty());
    eprintln!("refused in {took:?}: {e}");
}

#[test]
fn the_collector_connects_once_sshd_answers_after_boot() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(CollectorKeys::generate().unwrap());
    let ssh_port = free_tcp_port();
    let udp_port = free_udp_port();
    let status = Status::default();
    let s = settings(ssh_port, &keys, Duration::from_secs(60));
    let st = status.clone();
    let t0 = Instant::now();
    let collector = std::thread::spawn(move || {
        let stop = AtomicBool::new(false);
        SshCollector::connect_pinned(
            s,
            relay(Ipv4Addr::LOCALHOST.into(), udp_port),
            &|m| st.say(m),
            &stop,
        )
    });
    // "Booting": nothing listens until the status bar has said twice that it waits.
    let waiting = format!("Waiting for SSH on {LABEL}: ");
    status.wait(&waiting, 2);
    assert!(
        status
            .all()
            .iter()
            .filter(|m| m.starts_with(&waiting))
            .all(|m| m.ends_with(" s")),
        "{:?}",
        status.all()
    );
    let booted = t0.elapsed();
    let _sshd = collector_sshd(dir.path(), None, Some(ssh_port), &keys);
    let mut c = collector.join().unwrap().unwrap().expect("not stopped");
    let connected = t0.elapsed();
    assert!(
        connected - booted < Duration::from_secs(5),
        "connected {:?} after sshd started",
        connected - booted
    );
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let got = read_until(
        &mut c,
        &status,
        |g| !g.is_empty(),
        || {
            tx.send_to(b"after boot", ("127.0.0.1", udp_port)).unwrap();
        },
    )
    .unwrap();
    assert_eq!(got[0].0, b"after boot");
    eprintln!(
        "waited {booted:?} (statuses {:?}), connected {connected:?}",
        status.all()
    );
}

#[test]
fn a_bounded_boot_wait_ends_in_one_sentence_and_a_stop_ends_it_early() {
    if !ready() {
        return;
    }
    let keys = Arc::new(CollectorKeys::generate().unwrap());
    let ssh_port = free_tcp_port();
    let udp_port = free_udp_port();
    let status = Status::default();
    let t0 = Instant::now();
    let e = connect(
        settings(ssh_port, &keys, Duration::from_secs(3)),
        relay(Ipv4Addr::LOCALHOST.into(), udp_port),
        &status,
    )
    .err()
    .expect("nothing answers");
    let took = t0.elapsed();
    for want in [
        format!("No SSH answer from {LABEL} at 127.0.0.1 port {ssh_port} within 3 s"),
        "connection refused".into(),
        format!("security group allows TCP {ssh_port}"),
        "--connect ssm".into(),
    ] {
        assert!(e.contains(&want), "{want:?} missing from: {e}");
    }
    assert!(!e.contains('\n') && e.ends_with('.'), "{e}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "gave up after {took:?}"
    );
    assert!(status.count("Waiting for SSH") >= 2, "{:?}", status.all());

    // A stop while waiting: no error, promptly.
    let stop = AtomicBool::new(false);
    let waits = AtomicUsize::new(0);
    let t0 = Instant::now();
    let r = SshCollector::connect_pinned(
        settings(ssh_port, &keys, Duration::from_secs(60)),
        relay(Ipv4Addr::LOCALHOST.into(), udp_port),
        &|m| {
            if m.starts_with("Waiting for SSH") && waits.fetch_add(1, Ordering::Relaxed) == 1 {
                stop.store(true, Ordering::Relaxed);
            }
        },
        &stop,
    );
    let total = t0.elapsed();
    assert!(
        matches!(r, Ok(None)),
        "a stop is not an error: {:?}",
        r.err()
    );
    eprintln!("gave up after {took:?}: {e}; stopped while waiting, after {total:?}");
    assert!(
        total < Duration::from_secs(4),
        "a stop while waiting ended after {total:?}"
    );
}

#[test]
fn a_refused_login_and_no_python3_are_one_sentence() {
    if !ready() {
        return;
    }
    let keys = Arc::new(CollectorKeys::generate().unwrap());
    let udp_port = free_udp_port();
    let status = Status::default();

    // The host key is ours, but authorized_keys holds another key: cloud-init did not
    // install the generated one.
    let dir = tempfile::tempdir().unwrap();
    let other = CollectorKeys::generate().unwrap();
    let sshd = Sshd::start_with(
        dir.path(),
        None,
        None,
        "",
        &keys.host_private_openssh(),
        &other.client_public_line("someone-else"),
    );
    let e = connect(
        settings(sshd.port, &keys, Duration::from_secs(30)),
        relay(Ipv4Addr::LOCALHOST.into(), udp_port),
        &status,
    )
    .err()
    .expect("refused login");
    for want in [
        "presented its pinned host key but refused awsvpc's login as root",
        "cloud-init did not install",
        &keys.client_fingerprint(),
    ] {
        assert!(e.contains(want), "{want:?} missing from: {e}");
    }
    eprintln!("login refused: {e}");
    drop(sshd);

    // No python3 on the collector: the system ssh path's sentence.
    let dir = tempfile::tempdir().unwrap();
    let (user, path) = nopython_user(dir.path());
    let sshd = collector_sshd_with(dir.path(), None, None, &keys, &path);
    share_authorized_keys(dir.path());
    let mut s = settings(sshd.port, &keys, Duration::from_secs(30));
    s.user = user.into();
    let e = connect(s, relay(Ipv4Addr::LOCALHOST.into(), udp_port), &status)
        .err()
        .expect("no python3");
    assert!(
        e.starts_with("The collector i-0test (127.0.0.1) has no python3"),
        "{e}"
    );
    eprintln!("no python3: {e}");
}

/// A collector's sshd set up from generated keys, and a connected collector whose relay
/// is delivering.
struct Rig {
    sshd: Sshd,
    c: SshCollector,
    status: Status,
    udp_port: u16,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn flowing() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(CollectorKeys::generate().unwrap());
        let sshd = collector_sshd(dir.path(), None, None, &keys);
        let udp_port = free_udp_port();
        let status = Status::default();
        let mut c = connect(
            settings(sshd.port, &keys, Duration::from_secs(5)),
            relay(Ipv4Addr::LOCALHOST.into(), udp_port),
            &status,
        )
        .unwrap();
        deliver(&mut c, &status, udp_port, b"flowing").unwrap();
        Rig {
            sshd,
            c,
            status,
            udp_port,
            _dir: dir,
        }
    }

    fn deliver(&mut self, what: &[u8]) -> std::io::Result<()> {
        deliver(&mut self.c, &self.status, self.udp_port, what)
    }
}

/// Sends `what` to the relay (again, since UDP) until it arrives.
fn deliver(
    c: &mut SshCollector,
    status: &Status,
    udp_port: u16,
    what: &[u8],
) -> std::io::Result<()> {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut last = Instant::now() - Duration::from_secs(1);
    read_until(
        c,
        status,
        |g| g.iter().any(|d| d.0 == what),
        || {
            if last.elapsed() > Duration::from_millis(200) {
                tx.send_to(what, ("127.0.0.1", udp_port)).unwrap();
                last = Instant::now();
            }
        },
    )
    .map(|_| ())
}

#[test]
fn a_killed_relay_is_reconnected_once_and_a_second_loss_ends_the_capture() {
    if !ready() {
        return;
    }
    let mut r = Rig::flowing();
    // The relay dies: its channel closes, the tunnel is lost, one reconnect.
    let first = relays_running(r.udp_port);
    assert_eq!(first.len(), 1, "one relay");
    let killed = Instant::now();
    kill(first[0], libc::SIGKILL);
    r.deliver(b"after the relay died").unwrap();
    let back = killed.elapsed();
    assert_eq!(r.status.count("reconnecting"), 1, "{:?}", r.status.all());
    assert_eq!(r.status.count("Reconnected to"), 1, "{:?}", r.status.all());
    let second = relays_running(r.udp_port);
    assert!(
        second.len() == 1 && second != first,
        "a new relay: {second:?}"
    );

    // Soon after, the session dies (sshd's session processes, the relay with them): a
    // second loss within the grace period ends the capture with one sentence.
    assert!(r.sshd.kill_sessions() >= 2, "session processes");
    let e = r.deliver(b"never").expect_err("lost again").to_string();
    assert!(
        e.contains(&format!("The SSH tunnel to {LABEL} was lost again")) && !e.contains('\n'),
        "{e}"
    );
    eprintln!("relay killed: back after {back:?}; session killed: {e}");
}

#[test]
fn a_killed_session_is_reconnected_once() {
    if !ready() {
        return;
    }
    let mut r = Rig::flowing();
    // The session dies, the listener lives: one reconnect.
    let killed = Instant::now();
    assert!(r.sshd.kill_sessions() >= 2, "session processes");
    r.deliver(b"after the session died").unwrap();
    let back = killed.elapsed();
    assert_eq!(r.status.count("Reconnected to"), 1, "{:?}", r.status.all());
    assert_eq!(relays_running(r.udp_port).len(), 1);
    eprintln!("session killed: back after {back:?}");
}

#[test]
fn a_dead_sshd_fails_the_reconnect_with_one_sentence() {
    if !ready() {
        return;
    }
    let mut r = Rig::flowing();
    let t = Instant::now();
    r.sshd.kill_all();
    let e = r.deliver(b"never").expect_err("ended").to_string();
    let ended = t.elapsed();
    for want in [
        format!("The SSH tunnel to {LABEL} was lost"),
        "reconnecting failed".into(),
        "No SSH answer".into(),
        "connection refused".into(),
    ] {
        assert!(e.contains(&want), "{want:?} missing from: {e}");
    }
    assert!(!e.contains('\n'), "{e}");
    assert!(
        ended < Duration::from_secs(15),
        "ended {ended:?} after sshd died"
    );
    assert!(
        r.status.count("Waiting for SSH") >= 1,
        "{:?}",
        r.status.all()
    );
    eprintln!("sshd killed: ended after {ended:?}: {e}");
}

#[test]
fn a_frozen_session_is_noticed_by_silence_and_reconnected() {
    if !ready() {
        return;
    }
    let mut r = Rig::flowing();
    // Freeze the session's processes (sshd's and the relay): nothing arrives, nothing closes.
    let frozen = r.sshd.sessions();
    for p in &frozen {
        kill(*p, libc::SIGSTOP);
    }
    // Once awsvpc gives up on it, the frozen relay goes (as its write watchdog would end
    // it on a real dead path), so the new relay gets the port.
    let watcher = {
        let (status, frozen) = (r.status.clone(), frozen.clone());
        std::thread::spawn(move || {
            status.wait("reconnecting", 1);
            for p in &frozen {
                kill(*p, libc::SIGKILL);
            }
        })
    };
    let t = Instant::now();
    let delivered = r.deliver(b"after the freeze");
    let back = t.elapsed();
    watcher.join().unwrap();
    delivered.unwrap();
    let lost = r
        .status
        .all()
        .into_iter()
        .find(|s| s.contains("reconnecting"))
        .expect("a reconnect");
    assert!(lost.contains("nothing for 5 s"), "{lost}");
    assert!(back < Duration::from_secs(25), "back after {back:?}");
    eprintln!("frozen: {lost}; back after {back:?}");
}

/// Runs `f` on a thread inside network namespace `ns` (a thread's namespace is its own).
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f_ns = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread with an open namespace descriptor.
        assert_eq!(
            unsafe { libc::setns(f_ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns {path}"
        );
        f()
    })
}

fn pcap_frames_with_times(path: &Path) -> Vec<(Vec<u8>, Duration)> {
    let bytes = std::fs::read(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("pcap file");
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        v.push((p.data.to_vec(), p.timestamp));
    }
    v
}

#[test]
fn the_mirror_through_the_pinned_tunnel_equals_direct_tcpdump() {
    if !system_ready(
        &[
            "tcpdump",
            "ip",
            "tc",
            "/usr/sbin/sshd",
            "python3",
            "curl",
            "dig",
            "ssh-keygen",
        ],
        true,
    ) {
        return;
    }
    let tb = Testbed::up(&format!("pin{}", std::process::id() % 100_000));
    let work = tempfile::tempdir().unwrap();
    let keys = Arc::new(CollectorKeys::generate().unwrap());
    let sshd = collector_sshd(work.path(), Some(&tb.ns("col")), None, &keys);
    let s = settings(sshd.port, &keys, Duration::from_secs(10));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let (connected_tx, connected_rx) = mpsc::channel();
    let reader = {
        let (stop, count) = (stop.clone(), count.clone());
        in_netns(&tb.ns("col"), move || {
            let status = Status::default();
            // The mirror target's address and VXLAN port, as on an instance.
            let r = relay(Ipv4Addr::UNSPECIFIED.into(), 4789);
            let mut c = connect(s, r, &status).unwrap();
            connected_tx.send(()).unwrap();
            let mut batch = Batch::new();
            let mut got: Vec<Got> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                c.recv_batch(&mut batch, &|m| status.say(m)).unwrap();
                for i in 0..batch.len() {
                    let (d, _, ts, _) = batch.get(i);
                    got.push((d.to_vec(), ts));
                }
                count.store(got.len(), Ordering::Relaxed);
            }
            (got, c.drops(), status.all())
        })
    };
    connected_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("connected");
    let (oracle, direct) = DirectCapture::during_traffic(&tb, work.path());
    wait_for(
        Duration::from_secs(30),
        "every mirrored frame through the tunnel",
        || (count.load(Ordering::Relaxed) >= direct.len()).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let (got, drops, statuses) = reader.join().unwrap();
    assert_eq!(drops, 0);
    assert!(!statuses.iter().any(|s| s.contains("lost")), "{statuses:?}");

    // Decapsulate: VXLAN flags 0x08, the testbed's VNI 4242, then the mirrored frame.
    let inner: Vec<(Vec<u8>, Duration)> = got
        .iter()
        .map(|(d, ts)| {
            assert_eq!(d[0], 0x08, "VXLAN flags");
            assert_eq!(u32::from_be_bytes([0, d[4], d[5], d[6]]), 4242, "VNI");
            (d[8..].to_vec(), *ts)
        })
        .collect();
    let mut a: Vec<&Vec<u8>> = inner.iter().map(|f| &f.0).collect();
    let mut b: Vec<&Vec<u8>> = direct.iter().collect();
    a.sort();
    b.sort();
    assert!(
        a == b,
        "tunnel {} frames, tcpdump {}: the frames differ",
        a.len(),
        b.len()
    );

    // Per direction (by the mirrored ENI's MAC), the same order, and each frame's relay
    // receive time close after tcpdump's time on the mirrored veth.
    let mac: Vec<u8> = tb
        .mac()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mut worst = Duration::ZERO;
    for (file, outbound) in [(&oracle.inbound, false), (&oracle.outbound, true)] {
        let want = pcap_frames_with_times(file);
        let ours: Vec<&(Vec<u8>, Duration)> = inner
            .iter()
            .filter(|f| (&f.0[6..12] == mac.as_slice()) == outbound)
            .collect();
        assert_eq!(ours.len(), want.len(), "outbound={outbound}");
        for (o, w) in ours.iter().zip(&want) {
            assert!(o.0 == w.0, "outbound={outbound}: same order");
            let late = o.1.checked_sub(w.1).unwrap_or_else(|| {
                // tcpdump stamps ingress after the mirror did: allow a little either way.
                let early = w.1 - o.1;
                assert!(
                    early < Duration::from_millis(50),
                    "relay time {early:?} before tcpdump's"
                );
                Duration::ZERO
            });
            assert!(
                late < Duration::from_secs(1),
                "relay time {late:?} after tcpdump's"
            );
            worst = worst.max(late);
        }
    }
    eprintln!(
        "{} mirrored frames equal tcpdump's; relay kernel times at most {worst:?} after tcpdump's",
        inner.len()
    );
    drop(sshd);
}

/// Throughput through the pinned tunnel, by cipher (`sshd` offers only `AWSVPC_SSH_CIPHER`,
/// default both in turn): blasts 8 KB datagrams at the relay for 5 s and counts what
/// arrives. A measurement, not a check: `cargo test --release --test pinned_ssh -- --ignored`.
#[test]
#[ignore]
fn throughput_by_cipher() {
    if !ready() {
        return;
    }
    let ciphers = std::env::var("AWSVPC_SSH_CIPHER")
        .map(|c| vec![c])
        .unwrap_or_else(|_| {
            vec![
                "aes128-gcm@openssh.com".into(),
                "chacha20-poly1305@openssh.com".into(),
            ]
        });
    for round in 0..2 {
        for cipher in &ciphers {
            let dir = tempfile::tempdir().unwrap();
            let keys = Arc::new(CollectorKeys::generate().unwrap());
            let sshd =
                collector_sshd_with(dir.path(), None, None, &keys, &format!("Ciphers {cipher}"));
            let udp_port = free_udp_port();
            let status = Status::default();
            let mut c = connect(
                settings(sshd.port, &keys, Duration::from_secs(5)),
                relay(Ipv4Addr::LOCALHOST.into(), udp_port),
                &status,
            )
            .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let sender = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
                    let d = vec![0x5a; 8000];
                    // Paced (bursts of 50 every 2 ms: <= 25,000/s, 200 MB/s offered) so the
                    // sender does not take a whole core from the tunnel.
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..50 {
                            if tx.send_to(&d, ("127.0.0.1", udp_port)).is_ok() {
                                n += 1;
                            }
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    n
                })
            };
            let mut batch = Batch::new();
            let (mut bytes, mut n) = (0u64, 0u64);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                c.recv_batch(&mut batch, &|m| status.say(m)).unwrap();
                for i in 0..batch.len() {
                    bytes += batch.get(i).0.len() as u64;
                    n += 1;
                }
            }
            let secs = t.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            let sent = sender.join().unwrap();
            eprintln!(
                "round {round} {cipher}: {:.0} MB/s, {:.0} datagrams/s received ({sent} sent, relay drops {})",
                bytes as f64 / secs / 1e6,
                n as f64 / secs,
                c.drops()
            );
        }
    }
}
