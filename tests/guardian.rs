//! The guardian (`awsvpc guard`, src/aws/guardian.rs): teardown that survives a killed
//! awsvpc, against the wb-mini emulator in a testbed namespace as tests/aws_lifecycle.rs.
//!
//! - SIGKILL at every provisioning step of every mode leaves nothing, without
//!   `awsvpc cleanup`; how long the guardian took is printed (README leak matrix).
//! - A capture that stops normally: its guardian exits without an AWS call.
//! - The guardian holds none of the capture's handles (fifo, control pipes, stdio).
//! - Killing the guardian leaves the capture and its own teardown working.
//! - Junk on its pipe, a missing ledger, an unreachable AWS: one log line, nothing removed.
//! - tshark stops as promptly after `-a duration` with the guardian as without.
#![cfg(feature = "aws")]

mod common;
use common::aws_lab::*;
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pid in the capture log's "guardian started (pid N)" line.
fn guardian_pid(log: &Path) -> u32 {
    wait_for(Duration::from_secs(30), "the guardian's start", || {
        let l = std::fs::read_to_string(log).unwrap_or_default();
        let rest = l.split("guardian started (pid ").nth(1)?;
        rest.split(')').next()?.parse().ok()
    })
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next()),
            Some('Z') | Some('X')
        ),
        Err(_) => false,
    }
}

fn fd_links(pid: u32) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                link.display().to_string(),
            ))
        })
        .collect();
    v.sort();
    v
}

/// The guardian holds only its own pipe (stdin), /dev/null and the log file: none of the
/// capture's fifo, control pipes, stdout or stderr.
fn assert_holds_nothing_of(guardian: u32, capture: u32, theirs: &[&Path], log: &Path) {
    let mine = fd_links(guardian);
    let capture_fds = fd_links(capture);
    let stdio: Vec<&String> = capture_fds
        .iter()
        .filter(|(fd, l)| (fd == "1" || fd == "2") && l != "/dev/null")
        .map(|(_, l)| l)
        .collect();
    let log = std::fs::canonicalize(log).unwrap().display().to_string();
    for (fd, link) in &mine {
        assert!(
            !stdio.contains(&link),
            "guardian fd {fd} is the capture's stdout/stderr {link}: {mine:?}"
        );
        for p in theirs {
            let p = std::fs::canonicalize(p).unwrap().display().to_string();
            assert_ne!(*link, p, "guardian fd {fd} holds {p}: {mine:?}");
        }
        match fd.as_str() {
            "0" => assert!(link.starts_with("pipe:"), "stdin is its pipe: {mine:?}"),
            "1" | "2" => assert_eq!(link, "/dev/null", "{mine:?}"),
            _ => assert_eq!(*link, log, "only the log file besides: {mine:?}"),
        }
    }
    let pipe = &mine.iter().find(|(fd, _)| fd == "0").unwrap().1;
    // Both ends of a pipe show the same inode: the capture has one, and it writes.
    let ends: Vec<&String> = capture_fds
        .iter()
        .filter(|(_, l)| l == pipe)
        .map(|(fd, _)| fd)
        .collect();
    assert_eq!(
        ends.len(),
        1,
        "the capture holds only the write end: {capture_fds:?}"
    );
    let info = std::fs::read_to_string(format!("/proc/{capture}/fdinfo/{}", ends[0])).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .unwrap();
    assert_eq!(flags & 3, libc::O_WRONLY as u32, "{info}");
    assert_ne!(
        flags & libc::O_CLOEXEC as u32,
        0,
        "no other child inherits it: {info}"
    );
}

/// A capture through awsvpc, as Wireshark starts it, in the lab's collector namespace.
fn capture(lab: &Lab, args: &[String], case: &str, env: &[(&str, &str)]) -> Capture {
    let state = lab.work.path().join(format!("state-{case}"));
    capture_in(lab, args, case, env, &state)
}

/// [`capture`] with the ledger folder `state`.
fn capture_in(
    lab: &Lab,
    args: &[String],
    case: &str,
    env: &[(&str, &str)],
    state: &Path,
) -> Capture {
    let w = lab.work.path();
    let state = state.to_path_buf();
    let log = w.join(format!("{case}.log"));
    let fifo = w.join(format!("{case}.fifo"));
    mkfifo(&fifo);
    let reader = fifo_reader(&fifo);
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.col])
        .arg(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .args(args)
        .args(["--eni", &lab.world.source_eni, "--vpc", &lab.world.vpc])
        .args(["--log-level", "debug", "--log-file"])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    aws_env(&mut c, lab.imds_port, &state);
    Capture {
        child: c.spawn().unwrap(),
        state,
        log,
        fifo,
        reader: Some(reader),
    }
}

struct Capture {
    child: Child,
    state: PathBuf,
    log: PathBuf,
    fifo: PathBuf,
    reader: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Capture {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str) {
        wait_for(Duration::from_secs(90), needle, || {
            let l = self.log_text();
            assert!(!l.contains("fatal:"), "{l}");
            l.contains(needle).then_some(())
        })
    }

    /// Waits for the exit: its status, stderr and what reached the fifo.
    fn exit(&mut self) -> (std::process::ExitStatus, String, Vec<u8>) {
        let status = wait_for(Duration::from_secs(60), "awsvpc's exit", || {
            self.child.try_wait().unwrap()
        });
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let bytes = self.reader.take().unwrap().join().unwrap();
        (status, err, bytes)
    }

    fn ledgers(&self) -> usize {
        std::fs::read_dir(&self.state).map_or(0, |d| d.count())
    }
}

/// Processes whose parent is `pid`, by name.
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let comm = stat.split('(').nth(1).and_then(|r| r.rsplit_once(')'));
            let Some((comm, rest)) = comm else {
                return false;
            };
            let ppid: Option<u32> = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok());
            comm == name && ppid == Some(pid)
        })
        .collect()
}

fn guardian_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("] guardian: ")).collect()
}

#[test]
fn kill_at_every_provisioning_step_leaves_nothing_without_cleanup() {
    if !ready(&["ip", "tc", "python3", "ssh", "/usr/sbin/sshd"]) {
        return;
    }
    let lab = Lab::start("agk");
    let existing = untagged_target(&lab.col, &lab.world.collector_eni);
    let sshd = common::sshd::Sshd::start(lab.work.path(), Some(&lab.col), "");
    seed_al2023(&lab.col);
    let modes = leak_matrix_modes(&sshd, &existing);
    let ssh_config = sshd.ssh_config.display().to_string();
    let mut report = Vec::new();
    let mut times = Vec::new();
    for (mode, args, steps) in &modes {
        for step in *steps {
            let case = format!("{mode}-{step}-KILL");
            let mut c = capture(
                &lab,
                args,
                &case,
                &[
                    ("AWSVPC_TEST_HOLD_AFTER", step),
                    ("AWSVPC_SSH_CONFIG", &ssh_config),
                ],
            );
            c.wait_log(&format!("holding after creating the {step}"));
            let guardian = guardian_pid(&c.log);
            assert!(alive(guardian), "{case}: the guardian runs");
            assert_holds_nothing_of(guardian, c.child.id(), &[&c.fifo], &c.log);
            let ssh = children_named(c.child.id(), "ssh");
            if *mode == "host" {
                assert_eq!(ssh.len(), 1, "{case}: the collector's ssh runs");
            }
            let created = in_netns(&lab.col, leftovers).len();
            assert!(created > 0, "{case}: something was created");

            kill(c.child.id(), libc::SIGKILL);
            let killed = Instant::now();
            let _ = c.exit();
            let gone = wait_for(Duration::from_secs(150), "the guardian's teardown", || {
                let left = in_netns(&lab.col, leftovers);
                left.is_empty().then(|| killed.elapsed())
            });
            wait_for(Duration::from_secs(30), "the guardian's exit", || {
                (!alive(guardian)).then_some(())
            });
            for pid in &ssh {
                wait_for(Duration::from_secs(10), "the capture's ssh to end", || {
                    (!alive(*pid)).then_some(())
                });
            }
            assert_eq!(c.ledgers(), 0, "{case}: the ledger is finished");
            let l = c.log_text();
            let lines = guardian_lines(&l);
            assert!(
                lines
                    .iter()
                    .any(|x| x.contains("removed") && x.contains(" resources of run")),
                "{case}: the guardian logged what it removed: {lines:?}"
            );
            // The ssh is gone (waited for above). Who ended it is a race: the guardian, or
            // ssh itself on SIGPIPE once its reader was killed; the log says which.
            if *mode == "host" && !lines.iter().any(|x| x.contains("ended 1 child process")) {
                eprintln!("{case}: the capture's ssh ended on its own before the guardian looked");
            }
            times.push(gone);
            report.push(format!(
                "{case}: {created} created, 0 left {:.1} s after the kill",
                gone.as_secs_f64()
            ));
        }
    }
    assert!(
        target_exists(&lab.col, &existing),
        "the user's target {existing} survived every case"
    );
    times.sort();
    eprintln!(
        "guardian leak matrix:\n  {}\n  last resource gone after the kill: median {:.1} s, max {:.1} s",
        report.join("\n  "),
        times[times.len() / 2].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    drop(sshd);
}

#[test]
fn a_normal_stop_leaves_the_guardian_nothing_to_do_and_it_holds_no_capture_handle() {
    if !ready(&["ip", "tc", "python3"]) {
        return;
    }
    let lab = Lab::start("agn");
    // Control pipes as Wireshark makes them: the guardian must hold neither.
    let w = lab.work.path();
    let (cin, cout) = (w.join("control-in"), w.join("control-out"));
    mkfifo(&cin);
    mkfifo(&cout);
    let control_out = fifo_reader(&cout);
    let control_in = {
        let p = cin.clone();
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(p).unwrap())
    };
    let args: Vec<String> = vec![
        "--collector".into(),
        "local".into(),
        "--extcap-control-in".into(),
        cin.display().to_string(),
        "--extcap-control-out".into(),
        cout.display().to_string(),
    ];
    let mut c = capture(&lab, &args, "normal", &[]);
    let control_in = control_in.join().unwrap();
    c.wait_log("listening on");
    let guardian = guardian_pid(&c.log);
    assert_holds_nothing_of(guardian, c.child.id(), &[&c.fifo, &cin, &cout], &c.log);
    kill(c.child.id(), libc::SIGTERM);
    let (status, err, _) = c.exit();
    assert!(status.success(), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    drop(control_in);
    let _ = control_out.join();
    wait_for(Duration::from_secs(10), "the guardian's exit", || {
        (!alive(guardian)).then_some(())
    });
    let l = c.log_text();
    assert_eq!(
        guardian_lines(&l),
        vec![l
            .lines()
            .find(|x| x.contains("guardian: the capture finished its own teardown; exiting"))
            .expect("the guardian's one line")],
        "the guardian said only that it had nothing to do: no AWS call, nothing removed"
    );
    assert!(in_netns(&lab.col, leftovers).is_empty());
    assert_eq!(c.ledgers(), 0);
}

/// Wireshark's development branch (toward 5.0) asks an interface that advertises the quit
/// control to stop with `Q` + a zero length on `--extcap-control-in` and sends no SIGTERM
/// (`extcap_request_stop` in extcap.c); with `{control=2}` it passes control-in alone. The
/// mirror is torn down by the capture itself, as on SIGTERM: the guardian has nothing to do.
#[test]
fn a_quit_message_tears_down_as_sigterm_does() {
    if !ready(&["ip", "tc", "python3"]) {
        return;
    }
    let lab = Lab::start("agq");
    let cin = lab.work.path().join("control-in");
    mkfifo(&cin);
    let control_in = {
        let p = cin.clone();
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(p).unwrap())
    };
    let args: Vec<String> = vec![
        "--collector".into(),
        "local".into(),
        "--extcap-control-in".into(),
        cin.display().to_string(),
    ];
    let mut c = capture(&lab, &args, "quit", &[]);
    let mut control_in = control_in.join().unwrap();
    c.wait_log("listening on");
    let guardian = guardian_pid(&c.log);
    assert!(
        !in_netns(&lab.col, leftovers).is_empty(),
        "a mirror to tear down"
    );
    control_in.write_all(&[b'Q', 0, 0, 0]).unwrap();
    let (status, err, _) = c.exit();
    assert!(status.success(), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    wait_for(Duration::from_secs(10), "the guardian's exit", || {
        (!alive(guardian)).then_some(())
    });
    let l = c.log_text();
    assert!(l.contains("Wireshark asked awsvpc to quit"), "{l}");
    assert!(
        l.contains("guardian: the capture finished its own teardown; exiting"),
        "{l}"
    );
    assert!(in_netns(&lab.col, leftovers).is_empty());
    assert_eq!(c.ledgers(), 0);
}

#[test]
fn killing_the_guardian_leaves_the_capture_and_its_teardown_working() {
    if !ready(&["ip", "tc", "python3"]) {
        return;
    }
    let lab = Lab::start("agg");
    let args: Vec<String> = ["--collector", "local", "--vni", "4242"]
        .map(String::from)
        .to_vec();
    let mut c = capture(&lab, &args, "guardian-killed", &[]);
    c.wait_log("listening on");
    let guardian = guardian_pid(&c.log);
    kill(guardian, libc::SIGKILL);
    wait_for(Duration::from_secs(10), "the guardian's death", || {
        (!alive(guardian)).then_some(())
    });
    let t = lab.tb.sh(&["traffic"]);
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    wait_for(Duration::from_secs(30), "mirrored packets", || {
        (logged_packets(&c.log) >= 40).then_some(())
    });
    kill(c.child.id(), libc::SIGTERM);
    let (status, err, bytes) = c.exit();
    assert!(status.success(), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    assert!(
        read_pcapng(&bytes).frames.len() >= 40,
        "the capture kept working"
    );
    assert!(c.log_text().contains("teardown of run"));
    assert!(
        in_netns(&lab.col, leftovers).is_empty(),
        "its own teardown removed everything"
    );
    assert_eq!(c.ledgers(), 0, "ledger finished");
}

/// `awsvpc guard` run by hand on `ledger`, fed `input` then EOF: its exit status.
fn guard_by_hand(lab: &Lab, ledger: &Path, log: &Path, input: &[u8], env: &[(&str, &str)]) -> bool {
    let mut g = Command::new("ip");
    g.args(["netns", "exec", &lab.col])
        .arg(bin())
        .args(["guard", "--ledger"])
        .arg(ledger)
        .arg("--log-file")
        .arg(log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    aws_env(&mut g, lab.imds_port, ledger.parent().unwrap());
    for (k, v) in env {
        g.env(k, v);
    }
    let mut child = g.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    wait_for(Duration::from_secs(60), "the guardian's exit", || {
        child.try_wait().unwrap()
    })
    .success()
}

/// (name, ledger, bytes on the pipe, environment, the log line says, exit success)
type Case<'a> = (
    &'a str,
    PathBuf,
    &'a [u8],
    Vec<(&'a str, &'a str)>,
    &'a str,
    bool,
);

#[test]
fn junk_a_missing_ledger_or_an_unreachable_aws_ends_the_guardian_with_one_line() {
    if !ready(&["ip", "tc", "python3"]) {
        return;
    }
    let lab = Lab::start("agj");
    // A held run without its own guardian: resources and a ledger to (not) remove.
    let args: Vec<String> = ["--collector", "local"].map(String::from).to_vec();
    let mut c = capture(
        &lab,
        &args,
        "held",
        &[
            ("AWSVPC_TEST_HOLD_AFTER", "session"),
            ("AWSVPC_TEST_NO_GUARDIAN", "1"),
        ],
    );
    c.wait_log("holding after creating the session");
    let ledger = std::fs::read_dir(&c.state)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let before = in_netns(&lab.col, leftovers);
    assert_eq!(before.len(), 3, "session, filter, target: {before:?}");
    let w = lab.work.path();
    let cases: [Case; 4] = [
        (
            "junk",
            ledger.clone(),
            b"xD",
            vec![],
            "unexpected byte 0x78",
            false,
        ),
        (
            "junk-after-a-child",
            ledger.clone(),
            &[b'C', 1, 0, 0, 0, 0xff],
            vec![],
            "unexpected byte 0xff",
            false,
        ),
        (
            "missing-ledger",
            w.join("state-held/none.json"),
            b"",
            vec![],
            "is gone: nothing to remove",
            true,
        ),
        (
            "unreachable-aws",
            ledger.clone(),
            b"",
            vec![("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
            "run awsvpc cleanup --run-id",
            false,
        ),
    ];
    for (name, l, input, env, says, ok) in cases {
        let log = w.join(format!("guard-{name}.log"));
        let status = guard_by_hand(&lab, &l, &log, input, &env);
        assert_eq!(status, ok, "{name}: exit status");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines = guardian_lines(&text);
        // Unreachable AWS: "died… removing" then the one line saying what failed.
        let expected = if name == "unreachable-aws" { 2 } else { 1 };
        assert_eq!(lines.len(), expected, "{name}: {text}");
        assert!(lines.last().unwrap().contains(says), "{name}: {text}");
        assert!(!text.contains("panicked"), "{name}: {text}");
        assert_eq!(
            in_netns(&lab.col, leftovers),
            before,
            "{name}: nothing removed"
        );
        assert!(ledger.exists(), "{name}: the ledger is kept");
    }
    kill(c.child.id(), libc::SIGTERM);
    let _ = c.exit();
    assert!(in_netns(&lab.col, leftovers).is_empty());
}

#[test]
fn postkill_removes_dead_runs_and_leaves_live_ones() {
    if !ready(&["ip", "tc", "python3"]) {
        return;
    }
    let lab = Lab::start("agp");
    let state = lab.work.path().join("state-shared");
    let hold = [
        ("AWSVPC_TEST_HOLD_AFTER", "session"),
        ("AWSVPC_TEST_NO_GUARDIAN", "1"),
    ];
    // Two runs in one ledger folder, neither with a guardian: one killed, one live.
    let local: Vec<String> = ["--collector", "local"].map(String::from).to_vec();
    let mut dead = capture_in(&lab, &local, "pk-dead", &hold, &state);
    dead.wait_log("holding after creating the session");
    let dead_ids = in_netns(&lab.col, leftovers);
    let other_port: Vec<String> = ["--collector", "local", "--listen-port", "4790"]
        .map(String::from)
        .to_vec();
    let mut live = capture_in(&lab, &other_port, "pk-live", &hold, &state);
    live.wait_log("holding after creating the session");
    let all = in_netns(&lab.col, leftovers);
    let live_ids: Vec<String> = all
        .iter()
        .filter(|i| !dead_ids.contains(i))
        .cloned()
        .collect();
    assert_eq!(all.len(), dead_ids.len() + live_ids.len());
    assert_eq!(live.ledgers(), 2);

    // Wireshark's call after a kill, as extcap_terminate_cb makes it: SIGKILL, then at once
    // (the killed capture not yet reaped) the extcap with this one argument, in another
    // folder (the global extcap folder).
    kill(dead.child.id(), libc::SIGKILL);
    let mut pk = Command::new("ip");
    pk.args(["netns", "exec", &lab.col])
        .arg(bin())
        .arg("--extcap-cleanup-postkill")
        .current_dir("/");
    aws_env(&mut pk, lab.imds_port, &state);
    let o = run(&mut pk);
    let _ = dead.exit();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        in_netns(&lab.col, leftovers),
        live_ids,
        "the dead run is removed, the live one untouched"
    );
    assert_eq!(live.ledgers(), 1, "the dead run's ledger is finished");
    kill(live.child.id(), libc::SIGTERM);
    let _ = live.exit();
    assert!(in_netns(&lab.col, leftovers).is_empty());
    assert_eq!(live.ledgers(), 0);
}

#[test]
fn tshark_stops_as_promptly_after_a_duration_with_the_guardian_as_without() {
    if !ready(&["tshark", "ip", "tc", "python3"]) {
        return;
    }
    let lab = Lab::start("agt");
    let home = installed_home();
    let w = lab.work.path();
    // Alternating, twice each: the first capture in a fresh emulator can be slower.
    let mut took = Vec::new();
    for (round, (name, guardian)) in [("without", false), ("with", true)]
        .into_iter()
        .cycle()
        .take(4)
        .enumerate()
    {
        let name = format!("{name}-{round}");
        let log = w.join(format!("tshark-{name}.log"));
        let err = w.join(format!("tshark-{name}.err"));
        let state = w.join(format!("state-tshark-{name}"));
        let mut ts = Command::new("ip");
        ts.args(["netns", "exec", &lab.col, "tshark", "-i", "awsvpc"])
            .args(["-a", "duration:10", "-w"])
            .arg(w.join(format!("{name}.pcapng")))
            .args(["-o", "extcap.awsvpc.collector:local"])
            .args(["-o", &format!("extcap.awsvpc.eni:{}", lab.world.source_eni)])
            .args(["-o", &format!("extcap.awsvpc.vpc:{}", lab.world.vpc)])
            .args(["-o", "extcap.awsvpc.loglevel:debug"])
            .args(["-o", &format!("extcap.awsvpc.logfile:{}", log.display())])
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap());
        if !guardian {
            ts.env("AWSVPC_TEST_NO_GUARDIAN", "1");
        }
        aws_env(&mut ts, lab.imds_port, &state);
        let t0 = Instant::now();
        let mut tshark = ts.spawn().unwrap();
        let status = wait_for(Duration::from_secs(120), "tshark's exit", || {
            tshark.try_wait().unwrap()
        });
        let elapsed = t0.elapsed();
        let e = std::fs::read_to_string(&err).unwrap();
        assert!(status.success(), "{name}: {e}");
        assert!(!e.contains("extcap"), "{name}: {e}");
        let l = std::fs::read_to_string(&log).unwrap();
        assert!(l.contains("teardown of run"), "{name}: {l}");
        assert_eq!(l.contains("guardian started"), guardian, "{name}: {l}");
        assert!(in_netns(&lab.col, leftovers).is_empty(), "{name}");
        took.push((guardian, elapsed));
    }
    let best = |g: bool| {
        took.iter()
            .filter(|(with, _)| *with == g)
            .map(|(_, t)| *t)
            .min()
            .unwrap()
    };
    let all: Vec<String> = took
        .iter()
        .map(|(g, t)| {
            format!(
                "{} {:.2} s",
                if *g { "with" } else { "without" },
                t.as_secs_f64()
            )
        })
        .collect();
    eprintln!(
        "tshark -a duration:10 through awsvpc, spawn to exit: {} (best: {:.2} s without the guardian, {:.2} s with it)",
        all.join(", "),
        best(false).as_secs_f64(),
        best(true).as_secs_f64()
    );
    // A correctness bound, not a speed test: a guardian holding tshark's pipes would keep
    // it waiting until the guardian exits (never, while the run lives).
    assert!(
        best(true) < best(false) + Duration::from_secs(10),
        "the guardian holds tshark up: {all:?}"
    );
}
