//! The AWS control plane end to end against an emulator running as a separate process on
//! loopback: discovery (reload), provisioning, a live capture from the namespace testbed
//! through tshark, teardown, and nothing left afterwards, checked with Describe calls.
//!
//! Everything AWS-related runs inside the testbed's collector namespace: the emulator, a
//! fake instance-metadata service, tshark with awsvpc, and this test's own checks (from a
//! thread that entered the namespace). Traffic therefore only ever reaches that namespace's
//! loopback; the addresses the emulator invents are never dialled.
#![cfg(feature = "aws")]

mod common;
use aws_sdk_ec2::types::Filter;
use common::aws_lab::*;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The live sessions on the source ENI: (VNI, tags).
fn sessions_on(eni: String) -> Vec<(i32, Vec<(String, String)>)> {
    rt().block_on(async {
        ec2()
            .describe_traffic_mirror_sessions()
            .filters(
                Filter::builder()
                    .name("network-interface-id")
                    .values(&eni)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .traffic_mirror_sessions()
            .iter()
            .filter(|s| s.network_interface_id() == Some(eni.as_str()))
            .map(|s| {
                (
                    s.virtual_network_id().unwrap_or(-1),
                    s.tags()
                        .iter()
                        .map(|t| (t.key().unwrap_or("").into(), t.value().unwrap_or("").into()))
                        .collect(),
                )
            })
            .collect()
    })
}

/// The rules of the awsvpc-tagged filters: "direction #number action proto src[:ports] > dst[:ports]".
fn managed_filter_rules() -> Vec<String> {
    rt().block_on(async {
        let mut out = Vec::new();
        for f in ec2()
            .describe_traffic_mirror_filters()
            .send()
            .await
            .unwrap()
            .traffic_mirror_filters()
        {
            if !f.tags().iter().any(|t| t.key() == Some("awsvpc:managed")) {
                continue;
            }
            for r in f
                .ingress_filter_rules()
                .iter()
                .chain(f.egress_filter_rules())
            {
                let ports = |p: Option<&aws_sdk_ec2::types::TrafficMirrorPortRange>| {
                    p.map(|p| {
                        format!(
                            ":{}-{}",
                            p.from_port().unwrap_or(-1),
                            p.to_port().unwrap_or(-1)
                        )
                    })
                    .unwrap_or_default()
                };
                out.push(format!(
                    "{} #{} {} proto {} {}{} > {}{}",
                    r.traffic_direction().map(|d| d.as_str()).unwrap_or("?"),
                    r.rule_number().unwrap_or(-1),
                    r.rule_action().map(|a| a.as_str()).unwrap_or("?"),
                    r.protocol()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "all".into()),
                    r.source_cidr_block().unwrap_or("?"),
                    ports(r.source_port_range()),
                    r.destination_cidr_block().unwrap_or("?"),
                    ports(r.destination_port_range()),
                ));
            }
        }
        out.sort();
        out
    })
}

#[test]
fn capture_filters_become_mirror_rules() {
    if !ready(&["ip", "tc", "python3"]) {
        return;
    }
    let Lab {
        tb,
        col,
        work,
        procs,
        world,
        imds_port,
    } = Lab::start("awf");
    // (filter, rules every direction must have, rules none may have)
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "tcp port 443",
            &[
                "accept proto 6 0.0.0.0/0:443-443 > 0.0.0.0/0",
                "accept proto 6 0.0.0.0/0 > 0.0.0.0/0:443-443",
                "accept proto 6 ::/0:443-443 > ::/0",
            ],
            &["proto all 0.0.0.0/0 > 0.0.0.0/0"],
        ),
        (
            "host 10.77.1.20 and (udp portrange 5000-5100 or icmp)",
            &[
                "accept proto 17 10.77.1.20/32 > 0.0.0.0/0:5000-5100",
                "accept proto 1 0.0.0.0/0 > 10.77.1.20/32",
            ],
            &["::/0", "proto all"],
        ),
        (
            "vlan and host 10.77.1.20",
            &[
                "accept proto all 0.0.0.0/0 > 0.0.0.0/0",
                "accept proto all ::/0 > ::/0",
            ],
            &[],
        ),
    ];
    for (i, (filter, must, must_not)) in cases.iter().enumerate() {
        let state = work.path().join(format!("state{i}"));
        let log = work.path().join(format!("awsvpc{i}.log"));
        let fifo = work.path().join(format!("fifo{i}"));
        mkfifo(&fifo);
        let reader = fifo_reader(&fifo);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &col])
            .arg(bin())
            .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
            .arg(&fifo)
            .args([
                "--collector",
                "local",
                "--eni",
                &world.source_eni,
                "--vpc",
                &world.vpc,
            ])
            .args([
                "--extcap-capture-filter",
                filter,
                "--log-level",
                "debug",
                "--log-file",
            ])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        aws_env(&mut c, imds_port, &state);
        // Long captures push their expiry tag forward (hourly; every second here).
        c.env("AWSVPC_TEST_REFRESH_SECS", "1");
        let mut child = c.spawn().unwrap();
        wait_for(Duration::from_secs(60), "provisioning", || {
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!l.contains("fatal:"), "{l}");
            l.contains("listening on").then_some(())
        });
        let rules = in_netns(&col, managed_filter_rules);
        eprintln!(
            "filter {filter:?} → {} rules:\n  {}",
            rules.len(),
            rules.join("\n  ")
        );
        for dir in ["ingress", "egress"] {
            let of_dir: Vec<&String> = rules.iter().filter(|r| r.starts_with(dir)).collect();
            assert!(of_dir.len() <= 10, "quota: {of_dir:?}");
            assert!(
                of_dir.iter().any(|r| r.contains("reject")),
                "the collector's own VXLAN is rejected first: {of_dir:?}"
            );
            for m in *must {
                assert!(
                    of_dir.iter().any(|r| r.contains(m)),
                    "{dir}: {m:?} missing from {of_dir:?}"
                );
            }
            for m in *must_not {
                assert!(
                    !of_dir.iter().any(|r| r.contains("accept") && r.contains(m)),
                    "{dir}: {m:?} present in {of_dir:?}"
                );
            }
        }
        // The emulator accepts CreateTags but does not show the new value in Describe, so
        // the refresh is checked through the calls it answered.
        wait_for(Duration::from_secs(20), "two expiry refreshes", || {
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            (l.matches("resources now expire at").count() >= 2).then_some(())
        });
        let l = std::fs::read_to_string(&log).unwrap();
        assert!(
            l.contains("filter rule"),
            "the rules created are listed in the log: {l}"
        );
        let status = stop_child(&mut child, libc::SIGTERM);
        assert!(status.success());
        assert!(reader.join().is_ok());
        assert!(
            in_netns(&col, leftovers).is_empty(),
            "nothing left after {filter:?}"
        );
    }
    drop(procs);
    drop(tb);
}

#[test]
fn discovery_provision_capture_teardown_nothing_left() {
    if !ready(&["tshark", "ip", "tc", "curl", "dig", "ping", "ss", "python3"]) {
        return;
    }
    let Lab {
        tb,
        col,
        work,
        procs,
        world,
        imds_port,
    } = Lab::start("awl");
    let state = work.path().join("state");
    let home = tempfile::tempdir().unwrap();
    let o = run(Command::new(bin())
        .args(["install", "--symlink"])
        .env("HOME", home.path()));
    assert!(o.status.success());

    // Discovery: the reload the options dialog makes for the ENI list.
    let mut reload = Command::new("ip");
    reload.args(["netns", "exec", &col]).arg(bin()).args([
        "--extcap-config",
        "--extcap-interface",
        "awsvpc",
        "--extcap-reload-option",
        "eni",
        "--vpc",
        &world.vpc,
    ]);
    aws_env(&mut reload, imds_port, &state);
    let listing = String::from_utf8_lossy(&run(&mut reload).stdout).to_string();
    assert!(
        listing.contains(&format!("{{value={}}}", world.source_eni)),
        "{listing}"
    );
    assert!(
        listing.contains("web-1") && listing.contains("m5.large"),
        "{listing}"
    );

    // Capture: provisioning with the testbed's VNI, so its kernel VXLAN maps to the session.
    let log = work.path().join("awsvpc.log");
    let out = work.path().join("capture.pcapng");
    let mut ts = Command::new("ip");
    ts.args(["netns", "exec", &col, "tshark", "-i", "awsvpc", "-w"])
        .arg(&out)
        .args([
            "-o",
            "extcap.awsvpc.collector:local",
            "-o",
            &format!("extcap.awsvpc.eni:{}", world.source_eni),
        ])
        .args([
            "-o",
            &format!("extcap.awsvpc.vpc:{}", world.vpc),
            "-o",
            "extcap.awsvpc.vni:4242",
        ])
        .args([
            "-o",
            "extcap.awsvpc.loglevel:debug",
            "-o",
            &format!("extcap.awsvpc.logfile:{}", log.display()),
        ])
        .env("HOME", home.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("tshark.err")).unwrap());
    aws_env(&mut ts, imds_port, &state);
    let mut tshark = ts.spawn().unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_log(&log, "listening on");
    let live = in_netns(&col, {
        let eni = world.source_eni.clone();
        move || sessions_on(eni)
    });
    assert_eq!(live.len(), 1, "one session on the source ENI: {live:?}");
    assert_eq!(live[0].0, 4242);
    let tag = |k: &str| {
        live[0]
            .1
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(tag("awsvpc:managed").as_deref(), Some("true"));
    assert!(tag("awsvpc:run-id").is_some() && tag("awsvpc:expires").is_some());
    assert!(tag("awsvpc:created-by").is_some_and(|a| a.starts_with("arn:")));
    let ledgers = std::fs::read_dir(&state).unwrap().count();
    assert_eq!(ledgers, 1, "the run's ledger exists while capturing");

    let t = tb.sh(&["traffic"]);
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    wait_for(Duration::from_secs(30), "mirrored packets", || {
        (logged_packets(&log) >= 40).then_some(())
    });
    kill(tshark.id(), libc::SIGINT);
    let status = wait_for(Duration::from_secs(40), "tshark exit", || {
        tshark.try_wait().unwrap()
    });
    let err = std::fs::read_to_string(work.path().join("tshark.err")).unwrap();
    assert!(status.success(), "{err}");
    assert!(!err.contains("Error by extcap pipe"), "{err}");

    let pcap = read_pcapng(&std::fs::read(&out).unwrap());
    assert_eq!(
        pcap.interfaces,
        vec![world.source_eni.clone()],
        "frames named after the mirrored ENI"
    );
    assert!(pcap.frames.len() >= 40);
    let l = log_text();
    assert!(l.contains("teardown of run"), "{l}");
    assert!(
        in_netns(&col, leftovers).is_empty(),
        "nothing left in the account"
    );
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "ledger finished"
    );
    drop(procs);
    drop(tb);
}

#[test]
fn host_collector_over_ssh_with_an_existing_target() {
    if !ready(&[
        "tshark",
        "tcpdump",
        "ip",
        "tc",
        "curl",
        "dig",
        "ssh",
        "/usr/sbin/sshd",
        "python3",
    ]) {
        return;
    }
    let Lab {
        tb,
        col,
        work,
        procs,
        world,
        imds_port,
    } = Lab::start("awh");
    // The host's own, untagged target: awsvpc uses it and must never delete it.
    let target = untagged_target(&col, &world.collector_eni);
    let sshd = common::sshd::Sshd::start(work.path(), Some(&col), "");
    let state = work.path().join("state");
    let home = installed_home();
    let (log, out) = (
        work.path().join("awsvpc.log"),
        work.path().join("awsvpc.pcapng"),
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &col, "tshark", "-i", "awsvpc", "-w"])
        .arg(&out);
    let mut prefs: Vec<(String, String)> = sshd
        .args()
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    prefs.extend(
        [
            ("--target-id", target.as_str()),
            ("--eni", world.source_eni.as_str()),
            ("--vpc", world.vpc.as_str()),
            ("--vni", "4242"),
            ("--log-level", "debug"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    prefs.push(("--log-file".into(), log.display().to_string()));
    for (k, v) in &prefs {
        cmd.arg("-o").arg(format!(
            "extcap.awsvpc.{}:{v}",
            awsvpc::manifest::pref_suffix(k)
        ));
    }
    cmd.env("HOME", home.path())
        .env("AWSVPC_SSH_CONFIG", &sshd.ssh_config);
    aws_env(&mut cmd, imds_port, &state);
    let mut ts = spawn_logged(cmd, &work.path().join("tshark.err"));
    wait_for(
        Duration::from_secs(60),
        "SSH, provisioning, capture",
        || {
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!l.contains("fatal:"), "{l}");
            l.contains("relay on 127.0.0.1").then_some(())
        },
    );
    let rules = in_netns(&col, managed_filter_rules);
    assert!(
        rules.iter().any(|r| r.starts_with("ingress")
            && r.contains("reject proto 6")
            && r.contains(&format!("/32:{}-{}", sshd.port, sshd.port))),
        "the SSH tunnel from the collector is not mirrored: {rules:?}"
    );
    assert!(
        rules.iter().any(|r| r.starts_with("egress")
            && r.contains("reject proto 17 0.0.0.0/0 >")
            && r.ends_with("/32:4789-4789")),
        "nor the VXLAN to it: {rules:?}"
    );
    // Direction comes from the mirrored ENI's MAC, which the emulator picks; so frames only.
    traffic_matches_direct(
        &tb,
        work.path(),
        &mut ts,
        &log,
        &out,
        &world.source_eni,
        Oracle::Frames,
    );
    assert!(
        in_netns(&col, leftovers).is_empty(),
        "nothing awsvpc created is left"
    );
    let still = target_exists(&col, &target);
    assert!(still, "the user's own target {target} was not deleted");
    drop(sshd);
    drop(procs);
    drop(tb);
}

/// The leak matrix: a signal at each provisioning step, for each collector mode. SIGTERM
/// and SIGINT must roll back everything before exiting; after SIGKILL (which no process can
/// catch) `awsvpc cleanup --run-id` must find and remove everything the run created.
#[test]
fn leak_matrix_signals_at_every_provisioning_step() {
    if !ready(&["ip", "tc", "python3", "ssh", "/usr/sbin/sshd"]) {
        return;
    }
    let Lab {
        tb,
        col,
        work,
        procs,
        world,
        imds_port,
    } = Lab::start("awk");
    let existing = untagged_target(&col, &world.collector_eni);
    let sshd = common::sshd::Sshd::start(work.path(), Some(&col), "");
    seed_al2023(&col);
    let modes = leak_matrix_modes(&sshd, &existing);
    let mut report = Vec::new();
    for (mode, args, steps) in &modes {
        for step in *steps {
            for (sig, name) in [
                (libc::SIGTERM, "TERM"),
                (libc::SIGINT, "INT"),
                (libc::SIGKILL, "KILL"),
            ] {
                let case = format!("{mode}-{step}-{name}");
                let state = work.path().join(format!("state-{case}"));
                let log = work.path().join(format!("{case}.log"));
                let fifo = work.path().join(format!("{case}.fifo"));
                mkfifo(&fifo);
                let reader = fifo_reader(&fifo);
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &col])
                    .arg(bin())
                    .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
                    .arg(&fifo)
                    .args(args.iter())
                    .args(["--eni", &world.source_eni, "--vpc", &world.vpc])
                    .args(["--log-level", "debug", "--log-file"])
                    .arg(&log)
                    .env("AWSVPC_TEST_HOLD_AFTER", step)
                    .env("AWSVPC_SSH_CONFIG", &sshd.ssh_config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                aws_env(&mut c, imds_port, &state);
                if sig == libc::SIGKILL {
                    // Without the guardian (tests/guardian.rs): KILL must leave what it
                    // made for the last line of defence, `awsvpc cleanup --run-id`.
                    c.env("AWSVPC_TEST_NO_GUARDIAN", "1");
                }
                let mut child = c.spawn().unwrap();
                wait_for(Duration::from_secs(60), "the hold point", || {
                    let l = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(!l.contains("fatal:"), "{case}: {l}");
                    l.contains(&format!("holding after creating the {step}"))
                        .then_some(())
                });
                let created_before = in_netns(&col, leftovers).len();
                assert!(created_before > 0, "{case}: something was created");
                kill(child.id(), sig);
                let status = wait_for(Duration::from_secs(40), "exit", || {
                    child.try_wait().unwrap()
                });
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                let fifo_bytes = reader.join().unwrap();
                let left = in_netns(&col, leftovers);
                let outcome = if sig == libc::SIGKILL {
                    assert_eq!(
                        left.len(),
                        created_before,
                        "{case}: KILL leaves what it made"
                    );
                    let run_id = std::fs::read_dir(&state)
                        .unwrap()
                        .filter_map(|e| e.ok())
                        .find_map(|e| {
                            e.file_name()
                                .to_str()?
                                .strip_suffix(".json")
                                .map(str::to_string)
                        })
                        .unwrap_or_else(|| panic!("{case}: the ledger records the run"));
                    let mut cl = Command::new("ip");
                    cl.args(["netns", "exec", &col])
                        .arg(bin())
                        .args(["cleanup", "--run-id", &run_id]);
                    aws_env(&mut cl, imds_port, &state);
                    let o = run(&mut cl);
                    assert!(
                        o.status.success(),
                        "{case}: cleanup: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    assert!(
                        in_netns(&col, leftovers).is_empty(),
                        "{case}: awsvpc cleanup --run-id removed everything"
                    );
                    format!("{case}: {created_before} left by KILL, all removed by `awsvpc cleanup --run-id`")
                } else {
                    // Stopped before the last resource: one sentence, empty fifo. After it
                    // the capture had begun: a normal stop (exit 0, nothing on stderr).
                    if status.success() {
                        assert!(err.is_empty(), "{case}: {err}");
                    } else {
                        assert_eq!(err.lines().count(), 1, "{case}: one line: {err}");
                        assert!(err.contains("stopped during provisioning"), "{case}: {err}");
                        assert!(fifo_bytes.is_empty(), "{case}: fifo opened and closed");
                    }
                    assert!(
                        left.is_empty(),
                        "{case}: rolled back, nothing left: {left:?}"
                    );
                    assert_eq!(
                        std::fs::read_dir(&state).unwrap().count(),
                        0,
                        "{case}: ledger finished"
                    );
                    format!("{case}: {created_before} created, 0 left")
                };
                report.push(outcome);
            }
        }
    }
    let still = target_exists(&col, &existing);
    assert!(still, "the user's target {existing} survived every case");
    eprintln!("leak matrix:\n  {}", report.join("\n  "));
    drop(sshd);
    drop(procs);
    drop(tb);
}

/// The collector awsvpc launched, as EC2 lists it once it runs: its id, primary ENI and
/// user data (base64, as DescribeInstanceAttribute returns it).
fn launched_collector() -> Option<(String, String, String)> {
    rt().block_on(async {
        let c = ec2();
        let r = c.describe_instances().send().await.unwrap();
        let i = r
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| {
                i.tags().iter().any(|t| t.key() == Some("awsvpc:managed"))
                    && i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running")
            })?;
        let id = i.instance_id()?.to_string();
        let eni = i
            .network_interfaces()
            .iter()
            .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))?
            .network_interface_id()?
            .to_string();
        let ud = c
            .describe_instance_attribute()
            .instance_id(&id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let data = ud.user_data()?.value()?.to_string();
        Some((id, eni, data))
    })
}

/// What cloud-init would install from `user_data` (base64), after cloud-init's own strict
/// schema check (tests/cloud_init/user_data.py).
fn as_cloud_init_applies_it(work: &Path, user_data: &str) -> serde_json::Value {
    let f = work.join("user-data.b64");
    std::fs::write(&f, user_data).unwrap();
    let o = run(Command::new("/usr/bin/python3")
        .arg(repo().join("tests/cloud_init/user_data.py"))
        .arg(&f));
    assert!(
        o.status.success(),
        "cloud-init rejects the collector's user data: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Waits for the collector awsvpc launches (while its log shows no fatal error): its id,
/// primary ENI, and what cloud-init would install from its user data.
fn booted_collector(col: &str, work: &Path, log: &Path) -> (String, String, serde_json::Value) {
    let (instance, eni, user_data) = wait_for(Duration::from_secs(60), "the collector", || {
        let l = std::fs::read_to_string(log).unwrap_or_default();
        assert!(!l.contains("fatal:"), "{l}");
        in_netns(col, launched_collector)
    });
    (instance, eni, as_cloud_init_applies_it(work, &user_data))
}

/// Nothing awsvpc created is left in the emulator, and the run's ledger is finished.
fn assert_nothing_left(col: &str, state: &Path) {
    assert!(
        in_netns(col, leftovers).is_empty(),
        "nothing awsvpc created is left"
    );
    assert_eq!(
        std::fs::read_dir(state).unwrap().count(),
        0,
        "ledger finished"
    );
}

/// The awsvpc-tagged security group's ingress rules: "proto from-to cidr".
fn managed_group_ingress() -> Vec<String> {
    rt().block_on(async {
        let mut out = Vec::new();
        for g in ec2()
            .describe_security_groups()
            .send()
            .await
            .unwrap()
            .security_groups()
        {
            if !g.tags().iter().any(|t| t.key() == Some("awsvpc:managed")) {
                continue;
            }
            for p in g.ip_permissions() {
                for r in p.ip_ranges() {
                    out.push(format!(
                        "{} {}-{} {}",
                        p.ip_protocol().unwrap_or("?"),
                        p.from_port().unwrap_or(-1),
                        p.to_port().unwrap_or(-1),
                        r.cidr_ip().unwrap_or("?")
                    ));
                }
            }
        }
        out.sort();
        out
    })
}

/// The network interface of every awsvpc-tagged mirror target.
fn managed_target_enis() -> Vec<String> {
    rt().block_on(async {
        ec2()
            .describe_traffic_mirror_targets()
            .send()
            .await
            .unwrap()
            .traffic_mirror_targets()
            .iter()
            .filter(|t| t.tags().iter().any(|t| t.key() == Some("awsvpc:managed")))
            .filter_map(|t| t.network_interface_id().map(str::to_string))
            .collect()
    })
}

fn cloud_init_ready() -> bool {
    let ok = Path::new("/var/cache/awsvpc-test/cloud-init/usr/lib/python3/dist-packages/cloudinit")
        .exists();
    assert!(
        ok || !must_run_system_tests(),
        "cloud-init is not unpacked; run scripts/install-deps.sh"
    );
    ok
}

/// tshark capturing through awsvpc with `prefs` (option, value) into `out`.
fn tshark_with(
    lab_col: &str,
    work: &Path,
    home: &Path,
    imds_port: u16,
    prefs: &[(&str, String)],
    out: &Path,
) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", lab_col, "tshark", "-i", "awsvpc", "-w"])
        .arg(out);
    for (k, v) in prefs {
        cmd.arg("-o").arg(format!(
            "extcap.awsvpc.{}:{v}",
            awsvpc::manifest::pref_suffix(k)
        ));
    }
    cmd.env("HOME", home);
    aws_env(&mut cmd, imds_port, &work.join("state"));
    spawn_logged(cmd, &work.join("tshark.err"))
}

/// `--collector ephemeral --connect ssh` end to end. awsvpc launches the collector with
/// its user data; this test plays EC2 and cloud-init: it reads that user data back from the
/// emulator through cloud-init's own schema check and boots the "instance" from it — a real
/// sshd in the collector namespace with exactly the host key and authorized key it
/// carries. awsvpc must reach it with its pinned keys, mirror the testbed into it, deliver
/// what a direct tcpdump sees, and leave nothing: no instance, group, target, filter or
/// session, no ledger.
#[test]
fn ephemeral_collector_over_ssh_end_to_end() {
    if !ready(&[
        "tshark",
        "tcpdump",
        "ip",
        "tc",
        "curl",
        "dig",
        "ssh-keygen",
        "/usr/sbin/sshd",
        "python3",
    ]) || !cloud_init_ready()
    {
        return;
    }
    let Lab {
        tb,
        col,
        work,
        procs,
        world,
        imds_port,
    } = Lab::start("awe");
    seed_al2023(&col);
    let home = installed_home();
    let (log, out) = (
        work.path().join("awsvpc.log"),
        work.path().join("awsvpc.pcapng"),
    );
    let prefs: Vec<(&str, String)> = vec![
        ("--collector", "ephemeral".into()),
        ("--connect", "ssh".into()),
        ("--eni", world.source_eni.clone()),
        ("--vpc", world.vpc.clone()),
        ("--vni", "4242".into()),
        // The emulator's instance addresses are never dialled: the "instance" is here.
        ("--ssh-host", "127.0.0.1".into()),
        ("--ssh-port", "2222".into()),
        ("--ssh-user", "root".into()),
        ("--ssh-allow", "198.51.100.7/32".into()),
        ("--log-level", "debug".into()),
        ("--log-file", log.display().to_string()),
    ];
    let mut ts = tshark_with(&col, work.path(), home.path(), imds_port, &prefs, &out);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let (instance, eni, cfg) = booted_collector(&col, work.path(), &log);
    let authorized = cfg["users"]["awsvpc"][0]
        .as_str()
        .expect("the client key")
        .to_string();
    let boot = work.path().join("collector");
    std::fs::create_dir_all(&boot).unwrap();
    // sshd with the keys and the sshd_config drop-in cloud-init writes.
    let drop_in = cfg["files"]["/etc/ssh/sshd_config.d/50-awsvpc.conf"]["content"]
        .as_str()
        .expect("the sshd drop-in");
    let sshd = common::sshd::Sshd::start_with(
        &boot,
        Some(&col),
        Some(2222),
        drop_in,
        cfg["host_private"].as_str().expect("the host key"),
        &authorized,
    );
    wait_for(Duration::from_secs(60), "the relay over pinned SSH", || {
        let l = log_text();
        assert!(!l.contains("fatal:"), "{l}");
        l.contains("relay running on").then_some(())
    });
    let l = log_text();
    assert!(
        l.contains(&format!(
            "collector instance {instance} (t4g.nano, ami-0a1b2c3d4e5f60718)"
        )),
        "{l}"
    );
    assert_eq!(
        in_netns(&col, managed_group_ingress),
        vec![
            "tcp 2222-2222 198.51.100.7/32",
            "udp 4789-4789 10.77.0.0/16"
        ],
        "the group admits the VXLAN from the VPC and SSH from --ssh-allow only"
    );
    assert_eq!(
        in_netns(&col, managed_target_enis),
        vec![eni],
        "the target is the collector's ENI"
    );
    let rules = in_netns(&col, managed_filter_rules);
    assert!(
        rules.iter().any(|r| r.starts_with("ingress")
            && r.contains("reject proto 6")
            && r.contains("/32:2222-2222")),
        "the SSH from the collector is not mirrored: {rules:?}"
    );
    traffic_matches_direct(
        &tb,
        work.path(),
        &mut ts,
        &log,
        &out,
        &world.source_eni,
        Oracle::Frames,
    );
    let l = log_text();
    assert!(l.contains("teardown of run"), "{l}");
    assert_nothing_left(&col, &work.path().join("state"));
    drop(sshd);
    drop(procs);
    drop(tb);
}

/// `--collector ephemeral --connect ssm` end to end: as above, but the "instance" runs the
/// relay listener its user data installs (the relay file decoded as cloud-init decodes it),
/// and Session Manager is the emulator's StartSession plus this test's data-channel peer
/// (`tests/common/ssm_peer.rs`: the gateway and the agent, framed independently of awsvpc,
/// at the agent's 1 KB-per-millisecond pace). The capture uses SSM's default snaplen.
#[test]
fn ephemeral_collector_over_ssm_end_to_end() {
    if !ready(&["tshark", "tcpdump", "ip", "tc", "curl", "dig", "python3"]) || !cloud_init_ready() {
        return;
    }
    let Lab {
        tb,
        col,
        work,
        mut procs,
        world,
        imds_port,
    } = Lab::start("awm");
    seed_al2023(&col);
    // The agent's side: port sessions go to the relay listener on the instance's loopback.
    let peer = session_manager_in(&col, 4790);
    let home = installed_home();
    let (log, out) = (
        work.path().join("awsvpc.log"),
        work.path().join("awsvpc.pcapng"),
    );
    let prefs: Vec<(&str, String)> = vec![
        ("--collector", "ephemeral".into()),
        ("--connect", "ssm".into()),
        ("--instance-profile", "awsvpc-collector".into()),
        ("--eni", world.source_eni.clone()),
        ("--vpc", world.vpc.clone()),
        ("--vni", "4242".into()),
        ("--log-level", "debug".into()),
        ("--log-file", log.display().to_string()),
    ];
    let mut ts = tshark_with(&col, work.path(), home.path(), imds_port, &prefs, &out);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let (_, eni, cfg) = booted_collector(&col, work.path(), &log);
    // Boot: the files cloud-init writes (the relay's path moved into this test's folder),
    // then the listener its runcmd starts.
    let files = cfg["files"].as_object().unwrap();
    let boot = work.path().join("collector");
    std::fs::create_dir_all(&boot).unwrap();
    let relay = boot.join("relay.py");
    std::fs::write(
        &relay,
        files["/usr/local/lib/awsvpc/relay.py"]["content"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let listener = files["/usr/local/lib/awsvpc/listener.py"]["content"]
        .as_str()
        .unwrap()
        .replace(
            "/usr/local/lib/awsvpc/relay.py",
            &relay.display().to_string(),
        );
    std::fs::write(boot.join("listener.py"), listener).unwrap();
    let mut l = Command::new("ip");
    l.args(["netns", "exec", &col, "/usr/bin/python3"])
        .arg(boot.join("listener.py"));
    procs.0.push(spawn_logged(l, &boot.join("listener.err")));
    wait_for(
        Duration::from_secs(90),
        "the relay through Session Manager",
        || {
            let l = log_text();
            assert!(!l.contains("fatal:"), "{l}");
            l.contains("relay running").then_some(())
        },
    );
    assert_eq!(
        in_netns(&col, managed_group_ingress),
        vec!["udp 4789-4789 10.77.0.0/16"],
        "no inbound SSH for a Session Manager collector"
    );
    assert_eq!(in_netns(&col, managed_target_enis), vec![eni]);
    traffic_matches_direct(
        &tb,
        work.path(),
        &mut ts,
        &log,
        &out,
        &world.source_eni,
        Oracle::Truncated(awsvpc::transport::ssm::DEFAULT_SNAPLEN as usize),
    );
    let report = peer.report.lock().unwrap();
    assert!(
        report.problems.is_empty(),
        "the agent's side saw: {:?}",
        report.problems
    );
    assert!(report.connections >= 1 && report.data_sent > 0);
    drop(report);
    assert_nothing_left(&col, &work.path().join("state"));
    drop(peer);
    drop(procs);
    drop(tb);
}

/// `--collector host --connect ssm` with the user's existing target. The test plays the
/// instance's SSM agent: it runs what Run Command was sent, as root in the collector
/// namespace as the agent would, reports it done, and forwards port sessions with the tests'
/// peer. The capture must equal the direct tcpdump (cut to SSM's default snaplen), the
/// listener must have dropped root, and nothing awsvpc created may be left.
#[test]
fn host_collector_over_ssm_with_an_existing_target() {
    if !ready(&[
        "tshark", "tcpdump", "ip", "tc", "curl", "dig", "python3", "pgrep",
    ]) {
        return;
    }
    let Lab {
        tb,
        col,
        work,
        procs,
        world,
        imds_port,
    } = Lab::start("awq");
    let target = untagged_target(&col, &world.collector_eni);
    // The port comes from each session's URL (the emulator appends the session's port).
    let peer = session_manager_in(&col, 9);
    let home = installed_home();
    let (log, out) = (
        work.path().join("awsvpc.log"),
        work.path().join("awsvpc.pcapng"),
    );
    let prefs: Vec<(&str, String)> = vec![
        ("--collector", "host".into()),
        ("--connect", "ssm".into()),
        ("--target-id", target.clone()),
        ("--eni", world.source_eni.clone()),
        ("--vpc", world.vpc.clone()),
        ("--vni", "4242".into()),
        ("--log-level", "debug".into()),
        ("--log-file", log.display().to_string()),
    ];
    let mut ts = tshark_with(&col, work.path(), home.path(), imds_port, &prefs, &out);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    // The agent: what Run Command was asked to run, run on the collector.
    play_run_command(&col, &col, &log, |_| {});
    wait_for(
        Duration::from_secs(60),
        "the relay through Session Manager",
        || {
            let l = log_text();
            assert!(!l.contains("fatal:"), "{l}");
            l.contains("relay running").then_some(())
        },
    );
    assert!(log_text().contains("stream compressed"), "{}", log_text());
    // The listener Run Command started as root runs as nobody.
    let pids = run(Command::new("pgrep").args(["-f", "import base64,os,socket"]));
    let pids: Vec<String> = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(!pids.is_empty(), "the listener runs");
    for p in &pids {
        let who = run(Command::new("ps").args(["-o", "user=", "-p", p]));
        assert_eq!(String::from_utf8_lossy(&who.stdout).trim(), "nobody");
    }
    traffic_matches_direct(
        &tb,
        work.path(),
        &mut ts,
        &log,
        &out,
        &world.source_eni,
        Oracle::Truncated(awsvpc::transport::ssm::DEFAULT_SNAPLEN as usize),
    );
    assert!(peer.report.lock().unwrap().problems.is_empty());
    assert_nothing_left(&col, &work.path().join("state"));
    assert!(target_exists(&col, &target), "the user's target survives");
    for p in &pids {
        let _ = Command::new("kill").arg(p).status();
    }
    drop(peer);
    drop(procs);
    drop(tb);
}
