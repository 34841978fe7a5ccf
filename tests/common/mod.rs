//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(feature = "aws")]
pub mod aws_lab;
pub mod ports;
pub mod sshd;
#[cfg(feature = "aws")]
pub mod ssm_peer;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_awsvpc")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/testdata/NAME`, beside the checkout (CI has it there).
pub fn testdata(name: &str) -> PathBuf {
    let p = repo().join("../shared/testdata").join(name);
    assert!(
        p.exists(),
        "{} is missing: ../shared must sit beside the checkout",
        p.display()
    );
    p
}

/// Whether tests that need real tools (tshark, root, namespaces) must run. In CI they
/// must: a missing prerequisite is a failure there, not a skip.
pub fn must_run_system_tests() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("AWSVPC_SYSTEM_TESTS").is_some()
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when the system test may run; panics in CI when a prerequisite is missing.
pub fn system_ready(tools: &[&str], root: bool) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    let ok = missing.is_empty() && (!root || is_root());
    if !ok {
        let why = format!(
            "missing tools {missing:?}, root needed: {root}, root: {}",
            is_root()
        );
        if must_run_system_tests() {
            panic!("system test prerequisites missing in CI: {why}");
        }
        eprintln!("skipping system test: {why}");
    }
    ok
}

pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// Polls `f` until it returns Some, for at most `limit` (a hang guard, not a timing
/// assertion).
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn kill(pid: u32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A VXLAN datagram (the UDP payload) carrying `inner`.
pub fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(inner);
    v
}

/// A small Ethernet/IPv4/UDP frame from `src_mac` to `dst_mac` with `payload`.
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], dport: u16, payload: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .udp(40000, dport);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

/// Frames of a pcapng stream: (interface id, flags, original length, data), plus the
/// interface names and the number of statistics blocks.
#[derive(Debug, Default)]
pub struct Pcapng {
    pub interfaces: Vec<String>,
    pub frames: Vec<(u32, Option<u32>, u32, Vec<u8>)>,
    pub statistics: Vec<(u32, Vec<String>)>,
    pub userappl: Option<String>,
}

pub fn read_pcapng(bytes: &[u8]) -> Pcapng {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut out = Pcapng::default();
    let mut r = PcapNgReader::new(bytes).expect("pcapng section header");
    for o in &r.section().options {
        if let SectionHeaderOption::UserApplication(a) = o {
            out.userappl = Some(a.to_string());
        }
    }
    while let Some(b) = r.next_block() {
        match b.expect("valid pcapng block") {
            Block::InterfaceDescription(i) => out.interfaces.push(
                i.options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            Block::EnhancedPacket(p) => out.frames.push((
                p.interface_id,
                p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                }),
                p.original_len,
                p.data.to_vec(),
            )),
            Block::InterfaceStatistics(s) => out.statistics.push((
                s.interface_id,
                s.options.iter().map(|o| format!("{o:?}")).collect(),
            )),
            _ => {}
        }
    }
    out
}

/// Reads the data of every packet of a pcap or pcapng file, through tshark-independent code.
pub fn read_capture_frames(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        return read_pcapng(&bytes)
            .frames
            .into_iter()
            .map(|f| f.3)
            .collect();
    }
    let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("pcap file");
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        v.push(p.expect("pcap packet").data.to_vec());
    }
    v
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// The packet count awsvpc last logged (its "N packets, …" counter lines).
pub fn logged_packets(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .rev()
        .find_map(|l| {
            l.split("] ")
                .nth(1)?
                .split(" packets,")
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A namespace testbed of our own (tests/testbed/netns.sh), torn down however the test ends.
pub struct Testbed {
    pub prefix: String,
}

impl Testbed {
    pub fn up(prefix: &str) -> Self {
        let tb = Testbed {
            prefix: prefix.to_string(),
        };
        let o = tb.sh(&["up"]);
        assert!(
            o.status.success(),
            "testbed up: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        tb
    }

    pub fn sh(&self, args: &[&str]) -> std::process::Output {
        run(Command::new("bash")
            .arg(repo().join("tests/testbed/netns.sh"))
            .args(args)
            .env("TESTBED_PREFIX", &self.prefix))
    }

    pub fn mac(&self) -> String {
        String::from_utf8_lossy(&self.sh(&["mac"]).stdout)
            .trim()
            .to_string()
    }

    pub fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.sh(&["down"]);
    }
}

pub fn spawn_logged(mut cmd: Command, err: &Path) -> std::process::Child {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Waits until the file at `path` contains `needle`.
/// Waits (60 s at most) for awsvpc's log to say `needle`; a fatal line fails at once.
#[allow(dead_code)]
pub fn wait_log(log: &Path, needle: &str) {
    wait_for(Duration::from_secs(60), needle, || {
        let l = std::fs::read_to_string(log).unwrap_or_default();
        assert!(!l.contains("fatal:"), "{l}");
        l.contains(needle).then_some(())
    })
}

pub fn wait_text(path: &Path, needle: &str) {
    wait_for(Duration::from_secs(30), needle, || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|t| t.contains(needle))
            .map(|_| ())
    });
}

/// Sends `sig` and waits for the exit.
pub fn stop_child(child: &mut std::process::Child, sig: i32) -> std::process::ExitStatus {
    kill(child.id(), sig);
    wait_for(Duration::from_secs(35), "process exit", || {
        child.try_wait().unwrap()
    })
}

/// The oracle: tcpdump on the testbed's mirrored veth, all frames and each direction.
pub struct DirectCapture {
    dumps: Vec<std::process::Child>,
    pub all: PathBuf,
    pub inbound: PathBuf,
    pub outbound: PathBuf,
}

impl DirectCapture {
    /// Starts the three tcpdumps and waits until they listen.
    pub fn start(tb: &Testbed, dir: &Path) -> Self {
        let (all, inbound, outbound) = (
            dir.join("direct.pcap"),
            dir.join("direct-in.pcap"),
            dir.join("direct-out.pcap"),
        );
        let mut dumps = Vec::new();
        for (file, extra) in [
            (&all, &[][..]),
            (&inbound, &["-Q", "in"][..]),
            (&outbound, &["-Q", "out"][..]),
        ] {
            let err = file.with_extension("err");
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &tb.ns("src")])
                .args(["tcpdump", "-U", "--immediate-mode", "-n", "-i", "vs"])
                .args(extra)
                .arg("-w")
                .arg(file);
            dumps.push(spawn_logged(c, &err));
            wait_text(&err, "listening on");
        }
        DirectCapture {
            dumps,
            all,
            inbound,
            outbound,
        }
    }

    /// Runs the testbed's traffic while the tcpdumps watch; returns them stopped, and every
    /// frame they saw.
    pub fn during_traffic(tb: &Testbed, dir: &Path) -> (Self, Vec<Vec<u8>>) {
        let mut oracle = DirectCapture::start(tb, dir);
        let t = tb.sh(&["traffic"]);
        assert!(
            t.status.success(),
            "traffic: {}",
            String::from_utf8_lossy(&t.stderr)
        );
        let direct = oracle.stop();
        assert!(
            direct.len() >= 40,
            "the testbed made traffic: {}",
            direct.len()
        );
        (oracle, direct)
    }

    /// Stops the tcpdumps; returns every frame they saw.
    pub fn stop(&mut self) -> Vec<Vec<u8>> {
        for d in &mut self.dumps {
            assert!(stop_child(d, libc::SIGINT).success());
        }
        read_capture_frames(&self.all)
    }

    /// The same frames byte for byte and whole, in any order (when the direction cannot be
    /// known: an emulator gives the mirrored ENI another MAC than the testbed's).
    pub fn assert_same_frames(&self, ours: &Pcapng) {
        let direct = read_capture_frames(&self.all);
        let mut got: Vec<&Vec<u8>> = ours.frames.iter().map(|f| &f.3).collect();
        let mut want: Vec<&Vec<u8>> = direct.iter().collect();
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
    }

    /// The same frames cut to `snaplen` bytes (a session's PacketLength, or the relay's),
    /// each with the direct frame's length as its original length, in any order.
    pub fn assert_same_truncated(&self, ours: &Pcapng, snaplen: usize) {
        let direct = read_capture_frames(&self.all);
        let mut got: Vec<(u32, &[u8])> = ours.frames.iter().map(|f| (f.2, &f.3[..])).collect();
        let mut want: Vec<(u32, &[u8])> = direct
            .iter()
            .map(|f| (f.len() as u32, &f[..f.len().min(snaplen)]))
            .collect();
        got.sort();
        want.sort();
        assert!(
            got == want,
            "awsvpc delivered {} frames, tcpdump saw {}; cut to {snaplen} bytes, frames or original lengths differ",
            got.len(),
            want.len()
        );
        assert!(
            direct.iter().any(|f| f.len() > snaplen),
            "some frame was longer than {snaplen} bytes, so truncation was tested"
        );
    }

    /// awsvpc's capture equals the direct one: the same frames byte for byte, whole, and in
    /// order with the right direction flag within each direction. Across directions the
    /// kernel mirrors egress before tcpdump's tap and ingress after it, so two frames
    /// crossing on the wire may swap places; AWS promises no cross-direction order either.
    pub fn assert_same(&self, ours: &Pcapng) {
        self.assert_same_frames(ours);
        let of = |flag: u32| -> Vec<Vec<u8>> {
            ours.frames
                .iter()
                .filter(|f| f.1 == Some(flag))
                .map(|f| f.3.clone())
                .collect()
        };
        let (expected_in, expected_out) = (
            read_capture_frames(&self.inbound),
            read_capture_frames(&self.outbound),
        );
        let (got_in, got_out) = (of(1), of(2));
        assert!(
            got_in == expected_in,
            "inbound frames, flags and order: awsvpc {} frames, tcpdump -Q in {}",
            got_in.len(),
            expected_in.len()
        );
        assert!(
            got_out == expected_out,
            "outbound frames, flags and order: awsvpc {} frames, tcpdump -Q out {}",
            got_out.len(),
            expected_out.len()
        );
        eprintln!(
            "{} frames matched ({} inbound, {} outbound)",
            ours.frames.len(),
            expected_in.len(),
            expected_out.len()
        );
    }
}

/// A personal extcap folder in a temporary HOME, filled by `awsvpc install`.
pub fn installed_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let o = run(Command::new(bin())
        .args(["install", "--symlink"])
        .env("HOME", home.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let msg = String::from_utf8_lossy(&o.stdout);
    assert!(msg.contains("Undo with: awsvpc uninstall"), "{msg}");
    home
}

/// Reads a fifo to its end from a thread, as dumpcap would.
pub fn fifo_reader(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::File::open(&p).unwrap();
        use std::io::Read;
        let mut v = Vec::new();
        let _ = f.read_to_end(&mut v);
        v
    })
}

/// Runs the testbed's traffic while tshark (already capturing through awsvpc into `out`,
/// logging to `log`) and the direct tcpdump watch, then stops tshark and checks that
/// awsvpc's frames equal the direct capture's.
pub fn traffic_matches_direct(
    tb: &Testbed,
    work: &Path,
    tshark: &mut std::process::Child,
    log: &Path,
    out: &Path,
    interface: &str,
    oracle_check: Oracle,
) -> Pcapng {
    let (oracle, direct) = DirectCapture::during_traffic(tb, work);
    // The mirror copy travels through VXLAN; wait until awsvpc has seen as many frames.
    wait_for(
        Duration::from_secs(30),
        "awsvpc to receive every mirrored frame",
        || (logged_packets(log) >= direct.len() as u64).then_some(()),
    );
    let status = stop_child(tshark, libc::SIGINT);
    let ts_err = std::fs::read_to_string(work.join("tshark.err")).unwrap_or_default();
    assert!(status.success(), "tshark: {ts_err}");
    assert!(!ts_err.contains("Error by extcap pipe"), "{ts_err}");
    let ours = read_pcapng(&std::fs::read(out).unwrap());
    assert_eq!(ours.interfaces, vec![interface.to_string()]);
    match oracle_check {
        Oracle::FramesAndDirection => oracle.assert_same(&ours),
        Oracle::Frames => oracle.assert_same_frames(&ours),
        Oracle::Truncated(n) => oracle.assert_same_truncated(&ours, n),
    }
    ours
}

/// What [`traffic_matches_direct`] compares.
#[derive(Debug, Clone, Copy)]
pub enum Oracle {
    /// Frames, direction flags and per-direction order.
    FramesAndDirection,
    /// Frames only (the mirrored ENI's MAC is not the testbed's, so no direction).
    Frames,
    /// Frames cut to this snaplen, with their original lengths.
    Truncated(usize),
}

/// One plain HTTP/1.1 exchange with an emulator's control endpoint on 127.0.0.1 (in the
/// calling thread's namespace); the answer must be 200. Returns the body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{method} {path}: {out}");
    body.to_string()
}

/// `wine` with the prefix `prefix`, quiet, without a display, and without the Gecko and Mono
/// installer dialogs (the Wine tests and the Windows zip's install).
#[allow(dead_code)] // not every test binary runs Wine
pub fn wine(prefix: &Path) -> Command {
    wine_env(Command::new("wine"), prefix)
}

/// [`wine`] in the network namespace `ns` (`ip netns exec` keeps the environment; the
/// programs Wine starts from there stay in it).
#[allow(dead_code)]
pub fn wine_in_netns(prefix: &Path, ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "wine"]);
    wine_env(c, prefix)
}

fn wine_env(mut c: Command, prefix: &Path) -> Command {
    c.env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env_remove("DISPLAY");
    c
}

/// A Linux path as Wine's Z: drive names it.
#[allow(dead_code)]
pub fn z(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}
