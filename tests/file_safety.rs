//! Hostile file paths and arguments (issue 19), on the built binary: `decap -w` onto its own
//! input, a fifo, a device, a folder, a link; the mode of a replaced file; a capture cut
//! short; arguments that are not UTF-8; AWS files that are links to /dev/zero or fifos;
//! `install` onto itself. Rows 59 and up of the README's bad-input table.

mod common;
use common::*;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd`, killing it and failing when it has not exited within `limit` (a hang guard:
/// the bugs here were hangs).
fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

const LIMIT: Duration = Duration::from_secs(10);

fn decap_cmd(input: impl AsRef<OsStr>, out: impl AsRef<OsStr>, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("decap").arg(input).arg("-w").arg(out).args(extra);
    c
}

fn decap(input: impl AsRef<OsStr>, out: impl AsRef<OsStr>, extra: &[&str]) -> Output {
    run_within(&mut decap_cmd(input, out, extra), LIMIT)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One line on stderr, containing each of `words`; returns it.
fn one_line(o: &Output, words: &[&str]) -> String {
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "exactly one stderr line: {err:?}");
    for w in words {
        assert!(err.contains(w), "{w:?} in {err:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err.trim_end().to_string()
}

fn refused(o: &Output, words: &[&str]) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let line = one_line(o, words);
    assert!(line.starts_with("awsvpc: "), "{line}");
    line
}

/// The real AWS capture, copied where the test may change it.
fn real_capture(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(testdata("aws-mirror-real.pcap"), &p).unwrap();
    p
}

fn frames(path: &Path) -> usize {
    read_pcapng(&std::fs::read(path).unwrap()).frames.len()
}

fn symlink(target: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

fn mknod(path: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; makedev has no preconditions.
    let r = unsafe { libc::mknod(c.as_ptr(), kind | 0o666, libc::makedev(major, minor)) };
    assert_eq!(r, 0, "mknod {}", path.display());
}

/// A fifo's reader that cannot hang the test: the test holds a write end until the writer
/// under test has exited, so the reader's open never blocks and it sees the end of file
/// once that writer (if it opened this fifo at all) has closed it.
struct FifoReader {
    hold: Option<File>,
    reader: std::thread::JoinHandle<Vec<u8>>,
}

impl FifoReader {
    fn new(fifo: &Path) -> Self {
        let hold = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(fifo)
            .unwrap();
        let reader = fifo_reader(fifo);
        FifoReader {
            hold: Some(hold),
            reader,
        }
    }

    fn bytes(mut self) -> Vec<u8> {
        self.hold.take();
        self.reader.join().unwrap()
    }
}

// --- 1. the input as the output --------------------------------------------------------

#[test]
fn decap_refuses_to_write_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = real_capture(dir.path(), "x.pcap");
    let original = std::fs::read(&input).unwrap();
    std::fs::hard_link(&input, dir.path().join("hard.pcap")).unwrap();
    symlink("x.pcap", &dir.path().join("soft.pcap"));
    let filter = ["--filter", "tcp"];
    let cases: [(&str, &[&str]); 6] = [
        ("x.pcap", &[]),
        ("./x.pcap", &[]),
        ("./x.pcap", &filter),
        ("hard.pcap", &[]),
        ("soft.pcap", &[]),
        ("soft.pcap", &filter),
    ];
    for (out, extra) in cases {
        let o = run_within(
            decap_cmd("x.pcap", out, extra).current_dir(dir.path()),
            LIMIT,
        );
        refused(&o, &["is the capture being read", "another file"]);
        assert_eq!(
            std::fs::read(&input).unwrap(),
            original,
            "-w {out} {extra:?} left the input as it was"
        );
    }
    // Absolute paths, and the input reached through the link.
    let o = decap(dir.path().join("soft.pcap"), &input, &[]);
    refused(&o, &["is the capture being read"]);
    assert!(std::fs::symlink_metadata(dir.path().join("soft.pcap"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&input).unwrap(), original);
    // stdout redirected onto the input (`>> x.pcap`) is the same file too.
    let o = run(decap_cmd(&input, "-", &[]).stdout(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap(),
    ));
    refused(&o, &["is the capture being read"]);
    assert_eq!(std::fs::read(&input).unwrap(), original);
}

// --- 2. outputs that are not regular files --------------------------------------------

#[test]
fn decap_writes_through_a_fifo_and_a_link_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("aws-mirror-real.pcap");
    let fifo = dir.path().join("out.fifo");
    mkfifo(&fifo);
    let link = dir.path().join("link-to-fifo");
    symlink(&fifo, &link);
    for out in [&fifo, &link] {
        let reader = FifoReader::new(&fifo);
        let o = decap(&input, out, &[]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let got = reader.bytes();
        assert_eq!(
            read_pcapng(&got).frames.len(),
            100,
            "-w {} delivered the capture into the fifo",
            out.display()
        );
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

#[test]
fn decap_writes_through_a_link_to_its_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("out");
    symlink("/proc/self/fd/1", &link);
    let o = decap(testdata("aws-mirror-real.pcap"), &link, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        o.stdout.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]),
        "the pcapng went to stdout"
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no file beside the link"
    );
}

#[test]
fn decap_writes_through_character_devices_and_never_replaces_them() {
    if !system_ready(&[], true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("aws-mirror-real.pcap");
    let is_char = |p: &Path, minor: u32| {
        let m = std::fs::symlink_metadata(p).unwrap();
        m.file_type().is_char_device() && m.rdev() == libc::makedev(1, minor)
    };
    // Copies of /dev/null and /dev/full, made in the test's folder.
    let null = dir.path().join("null");
    mknod(&null, libc::S_IFCHR, 1, 3);
    let o = decap(&input, &null, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("100 frames written"));
    assert!(is_char(&null, 3), "still the null device");
    let full = dir.path().join("full");
    mknod(&full, libc::S_IFCHR, 1, 7);
    let o = decap(&input, &full, &[]);
    refused(
        &o,
        &[
            "Cannot write",
            "full: No space left on device",
            "choose another path with -w",
        ],
    );
    assert!(is_char(&full, 7), "still the full device");
    let link = dir.path().join("link-to-full");
    symlink(&full, &link);
    let o = decap(&input, &link, &[]);
    refused(&o, &["No space left on device"]);
    assert!(is_char(&full, 7));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    // A block device is not written at all.
    let blk = dir.path().join("blk");
    mknod(&blk, libc::S_IFBLK, 7, 250);
    let o = decap(&input, &blk, &[]);
    refused(&o, &["is a block device", "write to a file"]);
    assert!(std::fs::symlink_metadata(&blk)
        .unwrap()
        .file_type()
        .is_block_device());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        4,
        "no temporary file left"
    );
}

#[test]
fn decap_refuses_a_folder_and_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("aws-mirror-real.pcap");
    let folder = dir.path().join("out");
    std::fs::create_dir(&folder).unwrap();
    let o = decap(&input, &folder, &[]);
    refused(&o, &["is a folder; name a file in it with -w"]);
    assert!(folder.is_dir());
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
    let o = decap(&input, dir.path().join("nope/clean.pcapng"), &[]);
    refused(&o, &["the folder", "does not exist", "create it"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn decap_through_a_symlink_replaces_its_target_not_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("aws-mirror-real.pcap");
    let real = dir.path().join("real.pcapng");
    std::fs::write(&real, "old contents").unwrap();
    let link = dir.path().join("link.pcapng");
    symlink("real.pcapng", &link);
    let o = decap(&input, &link, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real.pcapng"));
    assert_eq!(frames(&real), 100, "the link's target holds the output");
    // A link to a file not there yet creates that file.
    let dangling = dir.path().join("dangling.pcapng");
    symlink("new.pcapng", &dangling);
    let o = decap(&input, &dangling, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(frames(&dir.path().join("new.pcapng")), 100);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
}

// --- 3. the mode and owner of a replaced file ------------------------------------------

#[test]
fn decap_keeps_the_mode_and_owner_of_the_file_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata("aws-mirror-real.pcap");
    let out = dir.path().join("secret.pcapng");
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = decap(&input, &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(frames(&out), 100);
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600, "still owner-only");
    if is_root() {
        // Owned by nobody:nogroup, group-readable: root's decap keeps both.
        std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
        let o = decap(&input, &out, &[]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let m = std::fs::metadata(&out).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (65534, 65534, 0o640));
    }
}

// --- 11. a capture cut short ------------------------------------------------------------

/// Byte offsets where each record of a classic little-endian pcap starts.
fn pcap_record_offsets(bytes: &[u8]) -> Vec<usize> {
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut v = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        v.push(at);
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + incl;
    }
    v
}

#[test]
fn a_capture_cut_short_keeps_the_packets_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(testdata("aws-mirror-real.pcap")).unwrap();
    let offsets = pcap_record_offsets(&whole);
    assert_eq!(offsets.len(), 100);
    // As a killed tcpdump leaves it: the 37th record cut inside its data.
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &whole[..offsets[36] + 16 + 10]).unwrap();
    let full_out = dir.path().join("full.pcapng");
    assert!(decap(testdata("aws-mirror-real.pcap"), &full_out, &[])
        .status
        .success());
    let out = dir.path().join("cut.pcapng");
    let o = decap(&cut, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "partial output: exit 2");
    let line = one_line(
        &o,
        &[
            "cut.pcap",
            "after packet 36",
            "the 36 packets before it",
            "cut.pcapng",
        ],
    );
    assert!(line.starts_with("awsvpc: "), "{line}");
    assert!(
        text(&o.stdout).contains("36 frames written"),
        "{}",
        text(&o.stdout)
    );
    let full = read_pcapng(&std::fs::read(&full_out).unwrap());
    let part = read_pcapng(&std::fs::read(&out).unwrap());
    assert_eq!(part.frames.len(), 36);
    assert_eq!(
        part.frames[..],
        full.frames[..36],
        "the first 36 frames, as they are"
    );
    // Cut inside a record header too.
    std::fs::write(&cut, &whole[..offsets[50] + 7]).unwrap();
    let o = decap(&cut, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    one_line(&o, &["after packet 50"]);
    assert_eq!(frames(&out), 50);
    // Damage before any packet: nothing to keep, nothing written.
    std::fs::write(&cut, &whole[..offsets[0] + 20]).unwrap();
    let none = dir.path().join("none.pcapng");
    let o = decap(&cut, &none, &[]);
    refused(&o, &["damaged after packet 0", "capture again"]);
    assert!(!none.exists());
    // `decap --help` documents the status.
    let h = run(Command::new(bin()).args(["decap", "--help"]));
    assert!(text(&h.stdout).contains("2 when the capture is cut short"));
}

#[test]
fn a_pcapng_cut_short_keeps_the_packets_before_the_cut() {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    let dir = tempfile::tempdir().unwrap();
    let packets = read_capture_frames(&testdata("aws-mirror-real.pcap"));
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: pcap_file::DataLink::ETHERNET,
        snaplen: 0,
        options: vec![],
    })
    .unwrap();
    let mut ends = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_micros(i as u64),
            original_len: p.len() as u32,
            data: p.into(),
            options: vec![],
        })
        .unwrap();
        ends.push(w.get_ref().len());
    }
    let bytes = w.into_inner();
    let cut = dir.path().join("cut.pcapng");
    std::fs::write(&cut, &bytes[..ends[19] + 30]).unwrap();
    let out = dir.path().join("out.pcapng");
    let o = decap(&cut, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    one_line(&o, &["after packet 20", "the 20 packets before it"]);
    assert_eq!(frames(&out), 20);
}

// --- 5. arguments that are not UTF-8 ------------------------------------------------------

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

#[test]
fn decap_paths_need_not_be_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(os(b"in-\xff.pcap"));
    std::fs::copy(testdata("aws-mirror-real.pcap"), &input).unwrap();
    let out = dir.path().join(os(b"out-\xfe.pcapng"));
    let o = decap(&input, &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(frames(&out), 100);
}

#[test]
fn decap_text_arguments_that_are_not_utf8_are_one_sentence() {
    let input = testdata("aws-mirror-real.pcap");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pcapng");
    for (opt, value) in [
        ("--source", &b"5569041=eni-\xff"[..]),
        ("--filter", b"host \xff"),
    ] {
        let o = run_within(decap_cmd(&input, &out, &[]).arg(opt).arg(os(value)), LIMIT);
        refused(&o, &[&format!("The value of {opt} is not valid UTF-8")]);
        assert!(!out.exists());
    }
}

fn extcap(args: &[&OsStr], home: &Path) -> Output {
    run_within(
        Command::new(bin())
            .args(args)
            .env("HOME", home)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_CONFIG_FILE")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Nothing listens there: a network attempt fails instead of leaving the machine.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        LIMIT,
    )
}

fn s(v: &str) -> &OsStr {
    OsStr::new(v)
}

#[test]
fn extcap_arguments_that_are_not_utf8_are_refused_as_each_call_refuses() {
    let home = tempfile::tempdir().unwrap();
    // A query call: one line on stderr, exit 1.
    let o = extcap(
        &[s("--extcap-interfaces"), os(b"--extcap-version=4.\xff")],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    one_line(&o, &["The value of --extcap-version is not valid UTF-8"]);
    assert!(o.stdout.is_empty());
    // Filter validation: the reason on stdout, exit 0, as for any invalid filter.
    let o = extcap(
        &[
            s("--extcap-capture-filter"),
            os(b"host \xff"),
            s("--extcap-interface"),
            s("awsvpc"),
        ],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("The value of --extcap-capture-filter is not valid UTF-8"));
    // A capture: the fatal path, with the fifo opened and closed; also when the fifo's own
    // path is not UTF-8.
    // The first argument that is not UTF-8 is the one named.
    for (fifo_name, named) in [(&b"fifo"[..], "--eni"), (b"fifo-\xff", "--fifo")] {
        let fifo = home.path().join(os(fifo_name));
        mkfifo(&fifo);
        let reader = fifo_reader(&fifo);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let log = home.path().join("log");
        let o = extcap(
            &[
                s("--capture"),
                s("--extcap-interface"),
                s("awsvpc"),
                s("--fifo"),
                fifo.as_os_str(),
                s("--collector"),
                s("local"),
                s("--listen-addr"),
                s("127.0.0.1"),
                s("--listen-port"),
                s(&port),
                s("--log-file"),
                log.as_os_str(),
                s("--eni"),
                os(b"eni-\xff"),
            ],
            home.path(),
        );
        assert_eq!(o.status.code(), Some(1));
        let sentence = format!("The value of {named} is not valid UTF-8");
        one_line(&o, &[&sentence, "UTF-8 text"]);
        assert!(
            reader.join().unwrap().is_empty(),
            "fifo opened and closed, empty"
        );
        assert!(std::fs::read_to_string(&log)
            .unwrap()
            .contains(&format!("fatal: {sentence}")));
        std::fs::remove_file(&fifo).unwrap();
    }
}

// --- 12. AWS files that are links to /dev/zero or fifos -------------------------------------

fn aws_home(creds: impl FnOnce(&Path)) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(aws.join("config"), "[default]\nregion=eu-west-1\n").unwrap();
    creds(&aws.join("credentials"));
    home
}

#[test]
fn aws_files_that_never_end_do_not_hang_the_options_dialog() {
    let zero = aws_home(|c| symlink("/dev/zero", c));
    let fifo = aws_home(mkfifo);
    let big = aws_home(|c| std::fs::write(c, "#".repeat(2 << 20)).unwrap());
    for home in [&zero, &fifo, &big] {
        let o = extcap(
            &[s("--extcap-config"), s("--extcap-interface"), s("awsvpc")],
            home.path(),
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
        let listing = text(&o.stdout);
        assert!(
            listing.contains("{value=default}{display=default (eu-west-1)}"),
            "the config file is still read: {listing}"
        );
        assert!(listing.contains("{call=--eni}"), "{listing}");
    }
    // The other file of the pair is the one that never ends.
    let home = aws_home(|c| std::fs::write(c, "[lab]\naws_access_key_id=x\n").unwrap());
    let config = home.path().join(".aws/config");
    std::fs::remove_file(&config).unwrap();
    symlink("/dev/zero", &config);
    let o = extcap(
        &[s("--extcap-config"), s("--extcap-interface"), s("awsvpc")],
        home.path(),
    );
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("{value=lab}{display=lab}"));
}

#[test]
fn aws_files_that_never_end_refuse_a_capture_before_the_sdk_reads_them() {
    let zero = aws_home(|c| symlink("/dev/zero", c));
    let fifo = aws_home(mkfifo);
    // The SSO token cache, which the SDK reads for an sso profile.
    let sso = aws_home(|c| {
        let cache = c.parent().unwrap().join("sso/cache");
        std::fs::create_dir_all(&cache).unwrap();
        mkfifo(&cache.join("0123abcd.json"));
    });
    let big = aws_home(|c| std::fs::write(c, "#".repeat(2 << 20)).unwrap());
    for (home, named) in [
        (
            &zero,
            ".aws/credentials is a character device, not a regular file",
        ),
        (&fifo, ".aws/credentials is a fifo, not a regular file"),
        (
            &sso,
            ".aws/sso/cache/0123abcd.json is a fifo, not a regular file",
        ),
        (&big, ".aws/credentials is larger than 1 MiB"),
    ] {
        let f = home.path().join("capture.fifo");
        mkfifo(&f);
        let reader = fifo_reader(&f);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let o = extcap(
            &[
                s("--capture"),
                s("--extcap-interface"),
                s("awsvpc"),
                s("--fifo"),
                f.as_os_str(),
                s("--collector"),
                s("local"),
                s("--listen-addr"),
                s("127.0.0.1"),
                s("--listen-port"),
                s(&port),
                s("--eni"),
                s("eni-0abc"),
                s("--profile"),
                s("default"),
            ],
            home.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
        one_line(&o, &[named, "remove it"]);
        assert!(reader.join().unwrap().is_empty());
    }
}

// --- decap's input, and install --------------------------------------------------------------

#[test]
fn decap_inputs_that_are_not_capture_files_are_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pcapng");
    let o = decap(dir.path().join("missing.pcap"), &out, &[]);
    refused(&o, &["missing.pcap does not exist", "tcpdump -w"]);
    let o = decap(dir.path(), &out, &[]);
    refused(&o, &["is a folder; name the capture file in it"]);
    let o = decap("/dev/zero", &out, &[]);
    refused(&o, &["is not a pcap or pcapng capture"]);
    assert!(!out.exists());
    // An input named like the temporary file of its output is not overwritten either.
    let input = real_capture(dir.path(), ".o.pcapng.awsvpc-partial");
    let before = std::fs::read(&input).unwrap();
    let o = decap(&input, &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

fn install(exe: &Path, home: &Path, args: &[&OsStr]) -> Output {
    run_within(
        Command::new(exe)
            .arg("install")
            .args(args)
            .env("HOME", home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME"),
        LIMIT,
    )
}

#[test]
fn install_onto_itself_a_file_or_a_folder_is_one_sentence() {
    let home = tempfile::tempdir().unwrap();
    let ext = home.path().join("ext");
    std::fs::create_dir(&ext).unwrap();
    // The installed copy runs `install` again into its own folder.
    let installed = ext.join("awsvpc");
    std::fs::hard_link(bin(), &installed)
        .or_else(|_| std::fs::copy(bin(), &installed).map(|_| ()))
        .unwrap();
    let size = std::fs::metadata(&installed).unwrap().len();
    let o = install(&installed, home.path(), &[s("--dir"), ext.as_os_str()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("already installed"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(
        std::fs::metadata(&installed).unwrap().len(),
        size,
        "still there"
    );
    let o = install(
        &installed,
        home.path(),
        &[s("--dir"), ext.as_os_str(), s("--symlink")],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&installed).unwrap().is_file());
    // --dir naming a file, and a folder where the binary goes.
    let file = home.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let o = install(
        Path::new(bin()),
        home.path(),
        &[s("--dir"), file.as_os_str()],
    );
    refused(&o, &["is a file, not a folder", "--dir"]);
    let blocked = home.path().join("blocked");
    std::fs::create_dir_all(blocked.join("awsvpc")).unwrap();
    let o = install(
        Path::new(bin()),
        home.path(),
        &[s("--dir"), blocked.as_os_str()],
    );
    refused(&o, &["awsvpc is a folder, not awsvpc", "--dir"]);
    assert!(blocked.join("awsvpc").is_dir());
    // uninstall leaves a folder of that name alone.
    let o = run_within(
        Command::new(bin())
            .args(["uninstall", "--dir"])
            .arg(&blocked)
            .env("HOME", home.path()),
        LIMIT,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(blocked.join("awsvpc").is_dir());
}

#[test]
fn install_replaces_a_fifo_where_its_help_file_goes() {
    let home = tempfile::tempdir().unwrap();
    let help_dir = home.path().join(".local/share/awsvpc");
    std::fs::create_dir_all(&help_dir).unwrap();
    let help = help_dir.join("awsvpc.html");
    // A query call that finds a fifo where the page goes replaces it, never blocks on it.
    mkfifo(&help);
    let mut q = Command::new(bin())
        .arg("--extcap-interfaces")
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while q.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = q.kill();
            panic!("--extcap-interfaces blocked on a fifo where the help page goes");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(std::fs::symlink_metadata(&help).unwrap().is_file());
    // So does install.
    std::fs::remove_file(&help).unwrap();
    mkfifo(&help);
    let ext = home.path().join("ext");
    let o = install(
        Path::new(bin()),
        home.path(),
        &[s("--dir"), ext.as_os_str()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&help).unwrap().is_file());
    assert!(std::fs::read_to_string(&help)
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
    let leftovers: Vec<OsString> = std::fs::read_dir(&help_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![OsString::from("awsvpc.html")]);
}
