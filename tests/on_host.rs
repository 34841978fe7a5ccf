//! On-host capture (issue 15, src/plan/onhost.rs, src/relay/onhost.py): an ENI AWS cannot mirror
//! (an m7i.large's, in the emulator) captured on its own instance. The testbed's source
//! namespace plays that instance: its device `vs` is given the ENI's MAC, its sshd is
//! reached over the testbed's underlay as `~/.ssh/config` would map the instance id. The
//! oracle is a direct tcpdump of `vs`. tshark runs awsvpc in the collector namespace,
//! beside the emulator (tests/common/aws_lab.rs).
#![cfg(feature = "aws")]

mod common;
use aws_sdk_ec2::types::InstanceType;
use common::aws_lab::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The source namespace's underlay address (tests/testbed/netns.sh `US4`).
const INSTANCE_ADDR: &str = "198.51.100.1";

struct Instance {
    id: String,
    eni: String,
    mac: String,
}

/// An m7i.large (AWS cannot mirror it) in the world's subnet; its primary ENI and MAC.
fn m7i(col: &str, source_eni: &str) -> Instance {
    let eni = source_eni.to_string();
    in_netns(col, move || {
        rt().block_on(async move {
            let c = ec2();
            let (_, subnet) = eni_facts(&c, &eni).await;
            let r = c
                .run_instances()
                .image_id("ami-12c6146b")
                .instance_type(InstanceType::M7iLarge)
                .min_count(1)
                .max_count(1)
                .subnet_id(subnet)
                .send()
                .await
                .unwrap();
            let i = &r.instances()[0];
            let nic = &i.network_interfaces()[0];
            Instance {
                id: i.instance_id().unwrap().to_string(),
                eni: nic.network_interface_id().unwrap().to_string(),
                mac: nic.mac_address().unwrap().to_string(),
            }
        })
    })
}

struct Setup {
    lab: Lab,
    instance: Instance,
    ssh_config: PathBuf,
    /// The same instance, logged in as a user whose PATH has no python3.
    nopython_config: PathBuf,
    _sshd: common::sshd::Sshd,
}

/// The lab, the m7i "instance" played by the source namespace (vs has its ENI's MAC), and
/// an ssh config that reaches it by its instance id, as a user's would.
fn setup(name: &str) -> Option<Setup> {
    if !ready(&[
        "ip",
        "tc",
        "python3",
        "ssh",
        "/usr/sbin/sshd",
        "tcpdump",
        "tshark",
        "curl",
        "dig",
    ]) {
        return None;
    }
    let lab = Lab::start(name);
    let instance = m7i(&lab.col, &lab.world.source_eni);
    let src = lab.tb.ns("src");
    assert!(run(Command::new("ip").args([
        "-n",
        &src,
        "link",
        "set",
        "vs",
        "address",
        &instance.mac
    ]))
    .status
    .success());
    // A second login without python3 on the same "instance" (the bad-input rows).
    let (nopython, env_line) = common::sshd::nopython_user(lab.work.path());
    let sshd = common::sshd::Sshd::start(
        lab.work.path(),
        Some(&src),
        &format!("ListenAddress {INSTANCE_ADDR}\nMatch User {nopython}\n  {env_line}"),
    );
    common::sshd::share_authorized_keys(lab.work.path());
    let known = std::fs::read_to_string(&sshd.known_hosts)
        .unwrap()
        .replace("[127.0.0.1]", &format!("[{INSTANCE_ADDR}]"));
    let kh = lab.work.path().join("instance_known_hosts");
    std::fs::write(&kh, known).unwrap();
    let config = |user: &str, name: &str| {
        let path = lab.work.path().join(name);
        std::fs::write(
            &path,
            format!(
                "Host i-*\n  HostName {INSTANCE_ADDR}\n  Port {}\n  User {user}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n",
                sshd.port,
                sshd.client_key.display(),
                kh.display()
            ),
        )
        .unwrap();
        path
    };
    let ssh_config = config("root", "instance_ssh_config");
    let nopython_config = config(nopython, "nopython_ssh_config");
    Some(Setup {
        lab,
        instance,
        ssh_config,
        nopython_config,
        _sshd: sshd,
    })
}

/// tshark capturing through awsvpc in the lab's collector namespace, as a user would run it.
fn tshark(
    s: &Setup,
    home: &Path,
    prefs: &[(&str, &str)],
    filter: Option<&str>,
) -> (std::process::Child, PathBuf, PathBuf) {
    tshark_over(s, home, prefs, filter, "ssh")
}

/// [`tshark`] reaching the instance over `via` (`ssh` or `ssm`).
fn tshark_over(
    s: &Setup,
    home: &Path,
    prefs: &[(&str, &str)],
    filter: Option<&str>,
    via: &str,
) -> (std::process::Child, PathBuf, PathBuf) {
    let w = s.lab.work.path();
    let (log, out) = (w.join("awsvpc.log"), w.join("awsvpc.pcapng"));
    let pref =
        |call: &str, v: &str| format!("extcap.awsvpc.{}:{v}", awsvpc::manifest::pref_suffix(call));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &s.lab.col, "tshark", "-i", "awsvpc"]);
    for (call, v) in prefs {
        cmd.arg("-o").arg(pref(call, v));
    }
    cmd.args(["-o", &pref("--vpc", &s.lab.world.vpc)])
        .args(["-o", &pref("--on-host-connect", via)])
        .args(["-o", &pref("--log-level", "debug")])
        .args(["-o", &pref("--log-file", &log.display().to_string())]);
    if let Some(f) = filter {
        cmd.args(["-f", f]);
    }
    cmd.arg("-w")
        .arg(&out)
        .env("HOME", home)
        .env("AWSVPC_SSH_CONFIG", &s.ssh_config);
    aws_env(&mut cmd, s.lab.imds_port, &w.join("state"));
    let child = spawn_logged(cmd, &w.join("tshark.err"));
    (child, log, out)
}

/// The relay processes running in the "instance".
fn relays_on_instance(ns: &str) -> Vec<u32> {
    let o = run(Command::new("ip").args(["netns", "pids", ns]));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    // Not Session Manager's listener, whose own command line names them too.
                    c.contains("--on-host") && !c.contains("import base64,os,socket")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The frames of interface `iface` only.
fn only(p: &Pcapng, iface: u32) -> Pcapng {
    Pcapng {
        frames: p.frames.iter().filter(|f| f.0 == iface).cloned().collect(),
        ..Default::default()
    }
}

#[test]
fn an_on_host_capture_equals_tcpdump_of_the_instance_device() {
    let Some(s) = setup("ohe") else { return };
    let home = installed_home();
    let (mut ts, log, out) = tshark(&s, home.path(), &[("--eni", &s.instance.eni)], None);
    wait_text(&log, "relay running on");
    let ours = traffic_matches_direct(
        &s.lab.tb,
        s.lab.work.path(),
        &mut ts,
        &log,
        &out,
        &s.instance.eni,
        Oracle::FramesAndDirection,
    );
    assert!(!ours.frames.is_empty());
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(
        l.contains(&format!(
            "{}: on-host capture on {} over SSH",
            s.instance.eni, s.instance.id
        )),
        "{l}"
    );
    assert!(
        in_netns(&s.lab.col, leftovers).is_empty(),
        "nothing was created in AWS"
    );
    wait_for(
        Duration::from_secs(20),
        "the relay to end with the capture",
        || {
            relays_on_instance(&s.lab.tb.ns("src"))
                .is_empty()
                .then_some(())
        },
    );
}

#[test]
fn with_a_capture_filter_only_matching_frames_leave_the_instance() {
    let Some(s) = setup("ohf") else { return };
    let home = installed_home();
    let filter = "icmp or udp port 53";
    let (mut ts, log, out) = tshark(&s, home.path(), &[("--eni", &s.instance.eni)], Some(filter));
    wait_text(&log, "relay running on");
    let w = s.lab.work.path();
    let (_oracle, _direct) = DirectCapture::during_traffic(&s.lab.tb, w);
    // What tcpdump keeps of the same frames with the same filter.
    let kept = w.join("direct-filtered.pcap");
    let o = run(Command::new("tcpdump")
        .args(["-r"])
        .arg(w.join("direct.pcap"))
        .arg("-w")
        .arg(&kept)
        .arg(filter));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = read_capture_frames(&kept);
    assert!(
        !want.is_empty() && want.len() < _direct.len(),
        "the filter keeps some, not all"
    );
    wait_for(
        Duration::from_secs(30),
        "awsvpc to receive the kept frames",
        || (logged_packets(&log) >= want.len() as u64).then_some(()),
    );
    assert!(stop_child(&mut ts, libc::SIGINT).success());
    let ours = read_pcapng(&std::fs::read(&out).unwrap());
    let got: Vec<Vec<u8>> = ours.frames.iter().map(|f| f.3.clone()).collect();
    let (mut a, mut b) = (got.clone(), want.clone());
    a.sort();
    b.sort();
    assert!(
        a == b,
        "awsvpc {} frames, tcpdump with the filter {}",
        got.len(),
        want.len()
    );
    // Counted at the relay's end: every datagram that crossed was a kept frame.
    let l = std::fs::read_to_string(&log).unwrap();
    let stats = l
        .lines()
        .rev()
        .find(|x| x.contains(" datagrams received; "))
        .unwrap_or_else(|| panic!("no statistics line: {l}"));
    assert!(
        stats.contains(&format!(
            ": {} datagrams received; {} packets",
            want.len(),
            want.len()
        )) && stats.contains("; 0 not matching the capture filter;"),
        "only matching frames left the instance: {stats}"
    );
}

#[test]
fn killing_awsvpc_leaves_no_capture_on_the_instance() {
    let Some(s) = setup("ohk") else { return };
    let home = installed_home();
    let (mut ts, log, _out) = tshark(&s, home.path(), &[("--eni", &s.instance.eni)], None);
    wait_text(&log, "relay running on");
    let src = s.lab.tb.ns("src");
    assert_eq!(
        relays_on_instance(&src).len(),
        1,
        "the relay runs on the instance"
    );
    // tshark starts its extcaps itself: awsvpc is the child of this test's tshark.
    let awsvpc: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u32>().ok());
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            ppid == Some(ts.id()) && String::from_utf8_lossy(&cmd).contains("--capture")
        })
        .collect();
    assert_eq!(awsvpc.len(), 1, "one awsvpc capture: {awsvpc:?}");
    kill(awsvpc[0], libc::SIGKILL);
    let killed = Instant::now();
    let gone = wait_for(
        Duration::from_secs(60),
        "the relay to end on the instance",
        || {
            relays_on_instance(&src)
                .is_empty()
                .then(|| killed.elapsed())
        },
    );
    eprintln!(
        "on-host relay gone {:.1} s after SIGKILL of awsvpc",
        gone.as_secs_f64()
    );
    let _ = stop_child(&mut ts, libc::SIGINT);
}

#[test]
fn a_mixed_capture_gives_each_eni_its_interface_equal_to_its_tcpdump() {
    let Some(s) = setup("ohm") else { return };
    let home = installed_home();
    // The m5.large's ENI is mirrored by the testbed (tc mirred into VXLAN, VNI 4242) to
    // this collector; the m7i's is captured on its instance. Both watch vs.
    let enis = format!("{},{}", s.lab.world.source_eni, s.instance.eni);
    let (mut ts, log, out) = tshark(
        &s,
        home.path(),
        &[
            ("--eni", &enis),
            ("--collector", "local"),
            ("--vni", "4242"),
        ],
        None,
    );
    wait_text(&log, "relay running on");
    wait_text(&log, "mirror session");
    let w = s.lab.work.path();
    let (oracle, direct) = DirectCapture::during_traffic(&s.lab.tb, w);
    wait_for(
        Duration::from_secs(30),
        "both copies of every frame",
        || (logged_packets(&log) >= 2 * direct.len() as u64).then_some(()),
    );
    assert!(stop_child(&mut ts, libc::SIGINT).success());
    let ours = read_pcapng(&std::fs::read(&out).unwrap());
    let index = |name: &str| {
        ours.interfaces
            .iter()
            .position(|i| i == name)
            .unwrap_or_else(|| panic!("{name} in {:?}", ours.interfaces)) as u32
    };
    let (mirrored, on_host) = (index(&s.lab.world.source_eni), index(&s.instance.eni));
    assert_eq!(ours.interfaces.len(), 2);
    // The emulator gives the mirrored ENI no MAC: its frames without direction.
    oracle.assert_same_frames(&only(&ours, mirrored));
    oracle.assert_same(&only(&ours, on_host));
    assert!(
        in_netns(&s.lab.col, leftovers).is_empty(),
        "the mirror was torn down"
    );
}

/// TCP connections to 127.0.0.1:`port` in namespace `from` carried to 127.0.0.1:`port` in
/// namespace `to`: the test's Session Manager peer dials "the instance" in its own
/// namespace, the instance is another.
fn forward(from: &str, to: &str, port: u16) {
    let l = in_netns(from, move || {
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap()
    });
    let to = to.to_string();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let to = to.clone();
            std::thread::spawn(move || {
                let Ok(d) = in_netns(&to, move || {
                    std::net::TcpStream::connect(("127.0.0.1", port))
                }) else {
                    return;
                };
                let (mut c2, mut d2) = (c.try_clone().unwrap(), d.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut d2);
                    let _ = d2.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut d) = (c, d);
                let _ = std::io::copy(&mut d, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

#[test]
fn an_on_host_capture_over_session_manager_equals_tcpdump() {
    let Some(s) = setup("ohq") else { return };
    let (col, src) = (s.lab.col.clone(), s.lab.tb.ns("src"));
    // The gateway-and-agent peer dials the port each session's URL names.
    let peer = session_manager_in(&col, 9);
    let home = installed_home();
    // Whole frames (the default over Session Manager is 128 bytes), so that every byte and
    // direction flag can be compared.
    let (mut ts, log, out) = tshark_over(
        &s,
        home.path(),
        &[("--eni", &s.instance.eni), ("--snaplen", "0")],
        None,
        "ssm",
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    // The agent, on the instance; its peer reaches the listener's port there.
    let sent = play_run_command(&col, &src, &log, |command| {
        let port: u16 = command
            .split("l.bind((\"127.0.0.1\",")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the listener's port in {command}"));
        forward(&col, &src, port);
    });
    assert_eq!(
        sent["instances"][0].as_str(),
        Some(s.instance.id.as_str()),
        "{sent}"
    );
    wait_log(&log, "relay running");
    // Root only to open the packet socket: the relay on the instance runs as nobody.
    let relays = relays_on_instance(&src);
    assert_eq!(relays.len(), 1);
    let status = std::fs::read_to_string(format!("/proc/{}/status", relays[0])).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid}"
    );
    traffic_matches_direct(
        &s.lab.tb,
        s.lab.work.path(),
        &mut ts,
        &log,
        &out,
        &s.instance.eni,
        Oracle::FramesAndDirection,
    );
    assert!(
        log_text().contains("stream compressed"),
        "zlib, as for a remote collector"
    );
    assert!(peer.report.lock().unwrap().problems.is_empty());
    assert!(
        in_netns(&col, leftovers).is_empty(),
        "nothing was created in AWS"
    );
    // The listener exits a minute after its last relay; here it is ended with the test.
    for p in run(Command::new("ip").args(["netns", "pids", &src]))
        .stdout
        .split(|b| b.is_ascii_whitespace())
    {
        if let Some(pid) = std::str::from_utf8(p)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains("import base64,os,socket") {
                kill(pid, libc::SIGTERM);
            }
        }
    }
    drop(peer);
}

/// A capture that must be refused: exit 1, one stderr line, the fifo opened and closed
/// empty, nothing created in AWS, no ledger (the bad-input table's proof R). Returns the line.
fn refused(s: &Setup, case: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let w = s.lab.work.path();
    let fifo = w.join(format!("{case}.fifo"));
    mkfifo(&fifo);
    let reader = fifo_reader(&fifo);
    let state = w.join(format!("state-{case}"));
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &s.lab.col])
        .arg(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .args(["--vpc", &s.lab.world.vpc])
        .args(args)
        .args(["--log-file"])
        .arg(w.join(format!("{case}.log")))
        .env("AWSVPC_SSH_CONFIG", &s.ssh_config);
    aws_env(&mut c, s.lab.imds_port, &state);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = run(&mut c);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{case}: {err}");
    assert_eq!(err.lines().count(), 1, "{case}: one line: {err}");
    assert!(
        reader.join().unwrap().is_empty(),
        "{case}: the fifo is empty"
    );
    assert!(
        in_netns(&s.lab.col, leftovers).is_empty(),
        "{case}: nothing created"
    );
    assert_eq!(
        std::fs::read_dir(&state).map_or(0, |d| d.count()),
        0,
        "{case}: no ledger"
    );
    err.trim_end().to_string()
}

/// An ENI of no instance (a managed service's, or detached): nothing to capture on.
fn detached_eni(col: &str, source_eni: &str) -> String {
    let eni = source_eni.to_string();
    in_netns(col, move || {
        rt().block_on(async move {
            let c = ec2();
            let (_, subnet) = eni_facts(&c, &eni).await;
            c.create_network_interface()
                .subnet_id(subnet)
                .send()
                .await
                .unwrap()
                .network_interface()
                .unwrap()
                .network_interface_id()
                .unwrap()
                .to_string()
        })
    })
}

/// The on-host rows of the bad-input table: each refused before anything is created, in one
/// sentence naming the problem and the fix.
#[test]
fn on_host_refusals_are_one_sentence_before_anything_is_created() {
    let Some(s) = setup("ohr") else { return };
    let (col, eni, id) = (
        s.lab.col.clone(),
        s.instance.eni.clone(),
        s.instance.id.clone(),
    );
    let mut rows = Vec::new();

    let managed = detached_eni(&col, &s.lab.world.source_eni);
    let line = refused(
        &s,
        "managed",
        &["--eni", &managed, "--capture-mode", "on-host"],
        &[],
    );
    assert!(
        line.contains(&format!("{managed} is attached to no instance of yours"))
            && line.contains("capture the instances that talk to it instead"),
        "{line}"
    );
    rows.push(("an ENI of no instance (RDS, a load balancer, a detached one) with `--capture-mode on-host`", line));

    in_netns(&col, || {
        http(
            EMULATOR_PORT,
            "POST",
            "/_fault",
            r#"{"action":"SendCommand","code":"AccessDeniedException","message":"User is not authorized to perform: ssm:SendCommand","status":400,"count":0}"#,
        )
    });
    let line = refused(&s, "runcommand", &["--eni", &eni], &[]);
    assert!(line.contains("ssm:SendCommand"), "{line}");
    rows.push((
        "no permission for Run Command (`ssm:SendCommand`), over Session Manager",
        line,
    ));
    in_netns(&col, || http(EMULATOR_PORT, "DELETE", "/_fault", ""));

    in_netns(&col, || {
        http(
            EMULATOR_PORT,
            "POST",
            "/_ssm",
            r#"{"ping":"ConnectionLost"}"#,
        )
    });
    let line = refused(&s, "agent", &["--eni", &eni], &[]);
    assert!(
        line.contains(&format!("The SSM agent on {id} is offline")),
        "{line}"
    );
    rows.push((
        "the instance's SSM agent offline, over Session Manager",
        line,
    ));
    in_netns(&col, || {
        http(EMULATOR_PORT, "POST", "/_ssm", r#"{"ping":"Online"}"#)
    });

    let line = refused(
        &s,
        "python",
        &["--eni", &eni, "--on-host-connect", "ssh"],
        &[("AWSVPC_SSH_CONFIG", s.nopython_config.to_str().unwrap())],
    );
    assert!(
        line.contains(&format!("The instance {id} has no python3")),
        "{line}"
    );
    rows.push(("no python3 on the instance, over SSH", line));

    eprintln!("on-host bad-input rows:");
    for (input, line) in rows {
        eprintln!("| {input} | {} | R |", line.replace('|', "\\|"));
    }
}
