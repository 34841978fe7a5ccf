//! awsvpc.exe, linked with mingw-w64, run under Wine exactly as Wireshark for Windows runs
//! it: the query calls and a reload, `decap` of every real capture, and a live capture
//! into named pipes that a Windows peer (`tests/wine-peer/`) creates the way
//! extcap.c does and ends with `TerminateProcess`. Every output is compared with the Linux
//! build's, byte for byte. `scripts/cross.sh` builds both .exe files; CI runs it first.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The folder holding awsvpc.exe and the peer (`AWSVPC_WINDOWS_DIR`, as scripts/cross.sh
/// prints it). Absent: the tests are skipped, except where system tests must run.
fn windows_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("AWSVPC_WINDOWS_DIR").map(PathBuf::from);
    match dir {
        Some(d) if d.join("awsvpc.exe").is_file() => Some(d),
        _ if must_run_system_tests() => {
            panic!("AWSVPC_WINDOWS_DIR must name the folder with awsvpc.exe (bash scripts/cross.sh builds it)")
        }
        _ => None,
    }
}

/// One Wine prefix, made once (it takes seconds and 700 MB) and kept for later runs in the
/// user's cache folder, so that no run leaves another behind.
fn prefix() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| make_prefix("awsvpc-wine-prefix"))
}

/// The prefix of the test that runs Wine inside the network namespace `ns`: a wineserver
/// of its own, started there, so that no Windows process of the other tests starts in
/// that namespace nor one of this test outside it.
#[cfg(feature = "aws")]
fn netns_prefix(ns: &str) -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| make_prefix_in("awsvpc-wine-prefix-netns", Some(ns)))
}

fn make_prefix(name: &str) -> PathBuf {
    make_prefix_in(name, None)
}

fn make_prefix_in(name: &str, ns: Option<&str>) -> PathBuf {
    {
        let d = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache")
            .join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut w = match ns {
            Some(ns) => wine_in_netns(&d, ns),
            None => wine(&d),
        };
        let o = w.args(["cmd", "/c", "exit"]).output().expect("run wine");
        assert!(
            o.status.success(),
            "wine prefix: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        d
    }
}

fn awsvpc_exe(dir: &Path) -> Command {
    let mut c = wine(prefix());
    c.arg(dir.join("awsvpc.exe"));
    c
}

/// Lines of a query call's answer, with the Help page's path (per-OS data folder) cut.
fn comparable(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| match l.find("{help=") {
            Some(i) => format!("{}{{help=…}}", &l[..i]),
            None => l.to_string(),
        })
        .collect()
}

#[test]
fn query_calls_and_a_reload_answer_as_on_linux() {
    let Some(dir) = windows_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    std::fs::write(
        &config,
        "[default]\nregion = eu-west-1\n[profile lab]\nregion = us-east-2\n",
    )
    .unwrap();
    let calls: [&[&str]; 5] = [
        &["--extcap-interfaces"],
        &["--extcap-interfaces", "--extcap-version=4.4"],
        &["--extcap-dlts", "--extcap-interface", "awsvpc"],
        &["--extcap-config", "--extcap-interface", "awsvpc"],
        &[
            "--extcap-config",
            "--extcap-interface",
            "awsvpc",
            "--extcap-reload-option",
            "region",
        ],
    ];
    for args in calls {
        let linux = run(Command::new(bin())
            .args(args)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", tmp.path().join("none")));
        let win = run(awsvpc_exe(&dir)
            .args(args)
            .env("AWS_CONFIG_FILE", z(&config))
            .env("AWS_SHARED_CREDENTIALS_FILE", z(&tmp.path().join("none"))));
        assert!(
            win.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&win.stderr)
        );
        assert!(
            win.stderr.is_empty(),
            "{args:?} wrote to stderr: {}",
            String::from_utf8_lossy(&win.stderr)
        );
        assert_eq!(
            comparable(&win.stdout),
            comparable(&linux.stdout),
            "{args:?}"
        );
        assert!(!linux.stdout.is_empty());
    }
}

#[test]
fn decap_of_every_real_capture_equals_linux_byte_for_byte() {
    let Some(dir) = windows_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Folders with spaces and non-ASCII letters, as a user's Documents often has.
    let folder = tmp.path().join("captures de Jürgen 日本");
    let (lin_dir, win_dir) = (folder.join("on linux"), folder.join("on windows"));
    std::fs::create_dir_all(&lin_dir).unwrap();
    std::fs::create_dir_all(&win_dir).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(testdata("")).unwrap() {
        let original = e.unwrap().path();
        if !original.to_string_lossy().ends_with(".pcap") {
            continue;
        }
        let name = original.file_name().unwrap().to_string_lossy().into_owned();
        let input = folder.join(format!("mirror {name}"));
        std::fs::copy(&original, &input).unwrap();
        let out = format!("décapsulé {name}.pcapng");
        let (lin, win) = (lin_dir.join(&out), win_dir.join(&out));
        let l = run(Command::new(bin())
            .arg("decap")
            .arg(&input)
            .arg("-w")
            .arg(&lin));
        let w = run(awsvpc_exe(&dir).args(["decap", &z(&input), "-w", &z(&win)]));
        assert_eq!(
            w.status.code(),
            l.status.code(),
            "{name}: {}",
            String::from_utf8_lossy(&w.stderr)
        );
        // The summary names the output file, each in its OS's spelling.
        let said = |o: &std::process::Output, path: String| {
            String::from_utf8_lossy(&o.stdout).replace(&path, "OUT")
        };
        assert_eq!(
            said(&w, z(&win)),
            said(&l, lin.display().to_string()),
            "{name}"
        );
        let (lb, wb) = (std::fs::read(&lin).unwrap(), std::fs::read(&win).unwrap());
        // The section header names the OS that wrote it (shb_os) and the statistics the
        // time they were written (isb_endtime); everything else, interfaces, packets,
        // comments and counts, is the same byte for byte.
        let (lh, lrest) = split_section_header(&lb);
        let (wh, wrest) = split_section_header(&wb);
        let (lrest, wrest) = (without_end_times(lrest), without_end_times(wrest));
        assert!(contains(lh, b"linux x86_64") && contains(wh, b"windows x86_64"));
        assert!(!lrest.is_empty());
        assert!(
            lrest == wrest,
            "{name}: the Windows pcapng differs from the Linux one"
        );
        n += 1;
    }
    assert!(n >= 4, "every capture in ../shared/testdata ({n})");
}

/// A little-endian pcapng file's Section Header Block, and the rest.
fn split_section_header(b: &[u8]) -> (&[u8], &[u8]) {
    let len = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    b.split_at(len)
}

/// The blocks with each Interface Statistics Block's time of writing (its timestamp and
/// `isb_endtime`, option 3) zeroed.
fn without_end_times(b: &[u8]) -> Vec<u8> {
    let mut out = b.to_vec();
    let mut off = 0;
    while off + 12 <= out.len() {
        let word = |o: usize| u32::from_le_bytes(out[o..o + 4].try_into().unwrap()) as usize;
        let (ty, len) = (word(off), word(off + 4));
        if ty == 5 {
            // type, length, interface id, timestamp (8, when written), then options.
            out[off + 12..off + 20].fill(0);
            let mut o = off + 20;
            while o + 4 <= off + len - 4 {
                let code = u16::from_le_bytes([out[o], out[o + 1]]);
                let olen = u16::from_le_bytes([out[o + 2], out[o + 3]]) as usize;
                if code == 0 {
                    break;
                }
                if code == 3 {
                    out[o + 4..o + 4 + olen].fill(0);
                }
                o += 4 + olen.div_ceil(4) * 4;
            }
        }
        off += len.max(12);
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_filter_without_npcap_is_refused_in_one_sentence() {
    let Some(dir) = windows_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = testdata("vxlan-small.pcap");
    // Wine's own wpcap.dll is a stub (no pcap_open_dead): as a machine without Npcap.
    let w = run(awsvpc_exe(&dir).args([
        "decap",
        &z(&input),
        "-w",
        &z(&tmp.path().join("o")),
        "--filter",
        "udp",
    ]));
    let err = String::from_utf8_lossy(&w.stderr);
    assert!(!w.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("install Npcap"), "{err}");
}

/// The VXLAN datagrams (UDP payloads to port 4789) of a capture.
fn vxlan_payloads(path: &Path) -> Vec<Vec<u8>> {
    read_capture_frames(path)
        .into_iter()
        .filter_map(|f| {
            let p = etherparse::SlicedPacket::from_ethernet(&f).ok()?;
            match p.transport? {
                etherparse::TransportSlice::Udp(u) if u.destination_port() == 4789 => {
                    Some(u.payload().to_vec())
                }
                _ => None,
            }
        })
        .collect()
}

fn port_bound(port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| t.contains(&hex))
}

/// A live capture by awsvpc.exe (`collector` arguments, `env`) into the peer's named
/// pipes: the real AWS mirror capture's datagrams are sent to the collector's UDP port once
/// it is bound, and the peer ends awsvpc.exe by `TerminateProcess` after the last packet.
/// Its frames must equal the Linux build's decapsulation of the same datagrams.
fn capture_equals_linux(dir: &Path, collector: &[&str], env: &[(&str, std::ffi::OsString)]) {
    let tmp = tempfile::tempdir().unwrap();
    let input = testdata("aws-mirror-real.pcap");
    let datagrams = vxlan_payloads(&input);
    assert_eq!(datagrams.len(), 100);
    let source = "5569041=eni-0abc,02:85:69:c2:ab:02";
    let lin = tmp.path().join("linux.pcapng");
    let l = run(Command::new(bin())
        .arg("decap")
        .arg(&input)
        .arg("-w")
        .arg(&lin)
        .args(["--source", source]));
    assert!(l.status.success());
    let frames = |p: &Path| -> Vec<Vec<u8>> {
        read_pcapng(&std::fs::read(p).unwrap())
            .frames
            .into_iter()
            .map(|f| f.3)
            .collect()
    };
    let want = frames(&lin);
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tmp.path().join("win.pcapng");
    let log = tmp.path().join("awsvpc.log");
    let peer = wine(prefix())
        .arg(dir.join("wine_pipe_peer.exe"))
        .args([&z(&out), &want.len().to_string(), "120"])
        .arg(dir.join("awsvpc.exe"))
        .args(["--capture", "--extcap-interface", "awsvpc"])
        .args(collector)
        .args([
            "--listen-addr",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
        ])
        .args([
            "--source",
            source,
            "--log-level",
            "debug",
            "--log-file",
            &z(&log),
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The collector (awsvpc.exe's socket, or the relay it started over ssh) binds the port.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !port_bound(port) {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listened on UDP {port}; awsvpc's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in &datagrams {
        tx.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    let o = peer.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && said.contains(&format!("packets={}", want.len()))
            && said.contains("exit=None"),
        "every packet, then TerminateProcess: {said}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let got = frames(&out);
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "the frames through the named pipe equal the Linux pipeline's"
    );
}

#[test]
fn a_live_capture_into_named_pipes_equals_linux_and_stops_by_terminate_process() {
    let Some(dir) = windows_dir() else { return };
    capture_equals_linux(&dir, &["--collector", "local"], &[]);
}

/// The Linux end of the ssh stand-in: for each connection, the real ssh with the argv it
/// sends, its stdin and stdout carried over the connection (EOF included).
fn ssh_bridge() -> std::net::SocketAddr {
    ssh_bridge_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None).0
}

/// [`ssh_bridge`] accepting on `l` (made in the namespace `ns`: a socket stays in the
/// namespace it was made in, whichever thread accepts) and running ssh in `ns`; with the
/// number of connections whose ssh still runs.
fn ssh_bridge_on(
    l: std::net::TcpListener,
    ns: Option<&str>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{BufRead, Read, Write};
    use std::sync::atomic::Ordering;
    let addr = l.local_addr().unwrap();
    let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ns = ns.map(str::to_string);
    let count = live.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { return };
            let (ns, count) = (ns.clone(), count.clone());
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut rd = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut line = Vec::new();
                if rd.read_until(b'\n', &mut line).is_err() {
                    return;
                }
                line.pop();
                let args: Vec<String> = String::from_utf8_lossy(&line)
                    .split('\0')
                    .map(str::to_string)
                    .collect();
                let mut ssh = match &ns {
                    Some(ns) => {
                        let mut c = Command::new("ip");
                        c.args(["netns", "exec", ns, "ssh"]);
                        c
                    }
                    None => Command::new("ssh"),
                };
                let mut child = ssh
                    .args(&args)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut rd, &mut stdin);
                });
                let mut out = child.stdout.take().unwrap();
                let mut conn = conn;
                let mut buf = [0u8; 65536];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                // The stand-in is gone (awsvpc.exe was terminated) or ssh ended.
                let _ = child.kill();
                let _ = child.wait();
                let _ = conn.shutdown(std::net::Shutdown::Both);
                count.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, live)
}

/// The ssh config the bridge's real ssh reads: the key and known_hosts reach it there,
/// in the spelling it reads (the stand-in passes only its argv).
fn bridge_ssh_config(sshd: &common::sshd::Sshd, dir: &Path) -> PathBuf {
    let config = dir.join("wine_ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n",
            sshd.client_key.display(),
            sshd.known_hosts.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_host_collector_over_ssh_into_named_pipes_equals_linux() {
    let Some(dir) = windows_dir() else { return };
    if !system_ready(&["ssh", "ssh-keygen", "/usr/sbin/sshd", "python3"], true) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sshd = common::sshd::Sshd::start(tmp.path(), None, "");
    // Windows' ssh.exe is not here, and Wine cannot give this machine's OpenSSH client
    // (a Unix program) the pipes a Windows parent makes; so a Windows stand-in named
    // ssh.exe (tests/wine-peer/src/bin/ssh_shim.rs) relays its argv and stdio over
    // loopback to this bridge, which runs the real ssh with them. The key and known_hosts
    // reach ssh through its config file, in the spelling it reads.
    let config = bridge_ssh_config(&sshd, tmp.path());
    let port = sshd.port.to_string();
    capture_equals_linux(
        &dir,
        &[
            "--collector",
            "host",
            "--connect",
            "ssh",
            "--ssh-host",
            "127.0.0.1",
            "--ssh-user",
            "root",
            "--ssh-port",
            &port,
        ],
        &[
            ("AWSVPC_SSH", dir.join("ssh.exe").into()),
            ("AWSVPC_SSH_CONFIG", config.into()),
            ("AWSVPC_TEST_SSH_BRIDGE", ssh_bridge().to_string().into()),
        ],
    );
}

/// Issue 14 on Windows: Wireshark for Windows ends every extcap with `TerminateProcess`,
/// so the guardian is the only teardown a Windows capture gets. At every provisioning step
/// of every mode, awsvpc.exe (under Wine, in the AWS lab's collector namespace, against
/// wb-mini) is terminated by the peer; its guardian, a detached awsvpc.exe, must remove
/// everything without `awsvpc cleanup`, and the host collector's ssh (a child in awsvpc's
/// kill-on-close job) must end with it.
#[cfg(feature = "aws")]
#[test]
fn terminate_process_at_every_provisioning_step_leaves_nothing_without_cleanup() {
    use aws_lab::{in_netns, leftovers, Lab};
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let Some(dir) = windows_dir() else { return };
    if !aws_lab::ready(&["ip", "tc", "python3", "ssh", "/usr/sbin/sshd"]) {
        return;
    }
    let lab = Lab::start("wgk");
    let existing = aws_lab::untagged_target(&lab.col, &lab.world.collector_eni);
    let sshd = common::sshd::Sshd::start(lab.work.path(), Some(&lab.col), "");
    let config = bridge_ssh_config(&sshd, lab.work.path());
    let listener = in_netns(&lab.col, || {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    });
    let (bridge, bridged) = ssh_bridge_on(listener, Some(&lab.col));
    aws_lab::seed_al2023(&lab.col);
    // The key and known_hosts reach the bridge's real ssh through its config file: as
    // arguments awsvpc.exe would hand it Windows paths (Z:\…) that ssh cannot open.
    let mut modes = aws_lab::leak_matrix_modes(&sshd, &existing);
    for (_, args, _) in &mut modes {
        while let Some(i) = args
            .iter()
            .position(|a| a == "--ssh-key" || a == "--ssh-known-hosts")
        {
            args.drain(i..i + 2);
        }
    }
    let mut report = Vec::new();
    let mut times = Vec::new();
    for (mode, args, steps) in &modes {
        for step in *steps {
            let case = format!("{mode}-{step}-TerminateProcess");
            let w = lab.work.path();
            let state = w.join(format!("state-{case}"));
            let log = w.join(format!("{case}.log"));
            let kill = w.join(format!("{case}.kill"));
            let mut cmd = wine_in_netns(netns_prefix(&lab.col), &lab.col);
            aws_lab::aws_env(&mut cmd, lab.imds_port, &state);
            cmd.env("AWSVPC_STATE_DIR", z(&state))
                .env("AWSVPC_TEST_HOLD_AFTER", step)
                .env("AWSVPC_SSH", dir.join("ssh.exe"))
                .env("AWSVPC_SSH_CONFIG", &config)
                .env("AWSVPC_TEST_SSH_BRIDGE", bridge.to_string())
                .env("PEER_KILL_FILE", z(&kill))
                .arg(dir.join("wine_pipe_peer.exe"))
                .args([&z(&w.join(format!("{case}.pcapng"))), "0", "300"])
                .arg(dir.join("awsvpc.exe"))
                .args(["--capture", "--extcap-interface", "awsvpc"])
                .args(args.iter())
                .args(["--eni", &lab.world.source_eni, "--vpc", &lab.world.vpc])
                .args(["--log-level", "debug", "--log-file", &z(&log)])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
            let hold = format!("holding after creating the {step}");
            wait_for(Duration::from_secs(120), &hold, || {
                let l = log_text();
                assert!(!l.contains("fatal:"), "{case}: {l}");
                if let Ok(Some(s)) = child.try_wait() {
                    let mut out = String::new();
                    let mut err = String::new();
                    use std::io::Read;
                    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
                    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                    panic!("{case}: the peer ended first ({s}): {out}\n{err}\n{l}");
                }
                l.contains(&hold).then_some(())
            });
            assert!(
                log_text().contains("guardian started (pid "),
                "{case}: the guardian runs: {}",
                log_text()
            );
            if *mode == "host" {
                assert_eq!(
                    bridged.load(Ordering::SeqCst),
                    1,
                    "{case}: the collector's ssh runs"
                );
            }
            let col = lab.col.clone();
            let created = in_netns(&col, leftovers).len();
            assert!(created > 0, "{case}: something was created");

            // The peer's TerminateProcess, now.
            std::fs::write(&kill, b"").unwrap();
            let killed = Instant::now();
            let o = child.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&o.stdout);
            assert!(
                said.contains("exit=None"),
                "{case}: terminated, not exited: {said}"
            );
            let gone = wait_for(Duration::from_secs(150), "the guardian's teardown", || {
                let col = lab.col.clone();
                in_netns(&col, leftovers)
                    .is_empty()
                    .then(|| killed.elapsed())
            });
            wait_for(Duration::from_secs(30), "the guardian's last line", || {
                let l = log_text();
                l.lines()
                    .any(|x| x.contains("] guardian: ") && x.contains(" resources of run"))
                    .then_some(())
            });
            wait_for(Duration::from_secs(30), "the capture's ssh to end", || {
                (bridged.load(Ordering::SeqCst) == 0).then_some(())
            });
            let ledgers = std::fs::read_dir(&state).map_or(0, |d| d.count());
            assert_eq!(ledgers, 0, "{case}: the ledger is finished");
            times.push(gone);
            report.push(format!(
                "{case}: {created} created, 0 left {:.1} s after the kill",
                gone.as_secs_f64()
            ));
        }
    }
    assert!(
        aws_lab::target_exists(&lab.col, &existing),
        "the user's target {existing} survived every case"
    );
    times.sort();
    eprintln!(
        "Windows (Wine) guardian leak matrix:\n  {}\n  last resource gone after TerminateProcess: median {:.1} s, max {:.1} s",
        report.join("\n  "),
        times[times.len() / 2].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    drop(sshd);
}
