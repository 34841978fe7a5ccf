//! "When nothing arrives, say why", end to end against the emulator: the account is seeded
//! with a broken path, a capture starts (`--collector local`, this namespace's ENI as the
//! target), no datagram arrives, and the log shows the finding, and Wireshark's toolbar
//! receives it as a status-bar frame on control-out; fixing the account makes the next
//! check say the path is open.
//! The checks run 1 s after the start and every 2 s here (AWSVPC_TEST_DIAGNOSE_*).
#![cfg(feature = "aws")]

mod common;
use aws_sdk_ec2::types::{InstanceType, IpPermission, IpRange, PortRange, RuleAction};
use common::aws_lab::*;
use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A security group in `vpc` admitting UDP 4789 from `cidr` (or nothing, with `None`).
async fn group(c: &aws_sdk_ec2::Client, vpc: &str, cidr: Option<&str>) -> String {
    let g = c
        .create_security_group()
        .group_name(format!("collector-{}", uuid()))
        .description("collector")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    if let Some(cidr) = cidr {
        allow_vxlan(c, &g, cidr).await;
    }
    g
}

async fn allow_vxlan(c: &aws_sdk_ec2::Client, group: &str, cidr: &str) {
    c.authorize_security_group_ingress()
        .group_id(group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("udp")
                .from_port(4789)
                .to_port(4789)
                .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

fn uuid() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn set_groups(c: &aws_sdk_ec2::Client, eni: &str, groups: &[&str]) {
    let mut m = c
        .modify_network_interface_attribute()
        .network_interface_id(eni);
    for g in groups {
        m = m.groups(*g);
    }
    m.send().await.unwrap();
}

async fn subnet(c: &aws_sdk_ec2::Client, vpc: &str, cidr: &str) -> String {
    c.create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string()
}

/// A mirrorable source (an m5.large's ENI) in `subnet` with address `ip`.
async fn source_in(c: &aws_sdk_ec2::Client, subnet: &str, ip: &str) -> String {
    let r = c
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::M5Large)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .send()
        .await
        .unwrap();
    let instance = r.instances()[0].instance_id().unwrap().to_string();
    let eni = c
        .create_network_interface()
        .subnet_id(subnet)
        .private_ip_address(ip)
        .send()
        .await
        .unwrap()
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_string();
    c.attach_network_interface()
        .network_interface_id(&eni)
        .instance_id(&instance)
        .device_index(1)
        .send()
        .await
        .unwrap();
    eni
}

/// `f` with the emulator's client, inside the lab's namespace.
fn ec2_in<T: Send + 'static, F>(
    col: &str,
    f: impl FnOnce(aws_sdk_ec2::Client) -> F + Send + 'static,
) -> T
where
    F: std::future::Future<Output = T>,
{
    in_netns(col, move || rt().block_on(f(ec2())))
}

struct Capture {
    child: Child,
    log: PathBuf,
    reader: std::thread::JoinHandle<Vec<u8>>,
    /// The status-bar messages Wireshark's toolbar received, in order.
    status_bar: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Wireshark's end of control-in, open for the whole capture.
    _control_in: std::fs::File,
}

fn capture(lab: &Lab, name: &str, eni: &str, vpc: &str, filter: Option<&str>) -> Capture {
    capture_with(lab, name, eni, vpc, filter, &[])
}

/// A capture as Wireshark starts it, with both control pipes: the GUI's side reads every
/// status-bar frame from control-out (tests/extcap_protocol.rs has the whole toolbar).
fn capture_with(
    lab: &Lab,
    name: &str,
    eni: &str,
    vpc: &str,
    filter: Option<&str>,
    extra: &[&str],
) -> Capture {
    use std::io::Write;
    let w = lab.work.path();
    let log = w.join(format!("{name}.log"));
    let fifo = w.join(format!("{name}.fifo"));
    let (cin, cout) = (
        w.join(format!("{name}.cin")),
        w.join(format!("{name}.cout")),
    );
    for p in [&fifo, &cin, &cout] {
        mkfifo(p);
    }
    let reader = fifo_reader(&fifo);
    let status_bar = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = status_bar.clone();
    let cout2 = cout.clone();
    std::thread::spawn(move || {
        let mut from_extcap = std::fs::File::open(cout2).unwrap();
        while let Ok(f) = awsvpc::extcap::control::read_frame(&mut from_extcap) {
            if f.command == 6 {
                let text = String::from_utf8_lossy(&f.payload).to_string();
                seen.lock().unwrap().push(text);
            }
        }
    });
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.col])
        .arg(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .arg("--extcap-control-out")
        .arg(&cout)
        .arg("--extcap-control-in")
        .arg(&cin)
        .args(extra)
        .args(["--collector", "local", "--eni", eni, "--vpc", vpc])
        .args(["--log-level", "debug", "--log-file"])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(w.join(format!("{name}.err"))).unwrap());
    if let Some(f) = filter {
        c.args(["--extcap-capture-filter", f]);
    }
    aws_env(&mut c, lab.imds_port, &w.join(format!("{name}.state")));
    c.env("AWSVPC_TEST_DIAGNOSE_AFTER_SECS", "1")
        .env("AWSVPC_TEST_DIAGNOSE_EVERY_SECS", "2");
    let child = c.spawn().unwrap();
    // Blocks until awsvpc opens control-in, as the GUI's main thread does; then Initialized.
    let mut control_in = std::fs::OpenOptions::new().write(true).open(&cin).unwrap();
    control_in.write_all(&[b'T', 0, 0, 2, 0, 0]).unwrap();
    Capture {
        child,
        log,
        reader,
        status_bar,
        _control_in: control_in,
    }
}

impl Capture {
    /// The first diagnosis line of `eni` after line `from` that contains `needle`; every
    /// diagnosis line seen before it must be `before` (the finding not yet fixed) or `needle`.
    fn finding(&self, eni: &str, needle: &str, from: usize) -> (String, usize) {
        let prefix = format!("Nothing from {eni} for ");
        let start = std::time::Instant::now();
        loop {
            let l = std::fs::read_to_string(&self.log).unwrap_or_default();
            assert!(!l.contains("fatal:"), "{l}");
            let found = l
                .lines()
                .enumerate()
                .skip(from)
                .find(|(_, line)| line.contains(&prefix) && line.contains(needle));
            if let Some((i, line)) = found {
                return (line.to_string(), i + 1);
            }
            // A hang guard: the log says what happened instead.
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {needle:?} for {eni}:\n{l}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a status-bar frame equal to the log's `line` (the part after the log's
    /// `[level] ` prefix): what the user sees in Wireshark.
    fn on_status_bar(&self, line: &str) {
        let text = line.split_once("] ").map_or(line, |(_, t)| t).to_string();
        let start = std::time::Instant::now();
        loop {
            if self.status_bar.lock().unwrap().contains(&text) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "not on the status bar: {text:?}; it showed {:#?}",
                self.status_bar.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(mut self, col: &str) {
        let status = stop_child(&mut self.child, libc::SIGTERM);
        assert!(status.success());
        let _ = self.reader.join();
        assert!(in_netns(col, leftovers).is_empty(), "nothing left");
        let err = std::fs::read_to_string(self.log.with_extension("err")).unwrap();
        assert!(err.is_empty(), "nothing on stderr: {err}");
    }
}

/// A lab whose collector's group admits the VXLAN from anywhere: (lab, VPC, source ENI,
/// collector ENI).
fn open_lab(name: &str) -> (Lab, String, String, String) {
    let lab = Lab::start(name);
    let (vpc, src, col_eni) = (
        lab.world.vpc.clone(),
        lab.world.source_eni.clone(),
        lab.world.collector_eni.clone(),
    );
    let (v, c2) = (vpc.clone(), col_eni.clone());
    ec2_in(&lab.col, move |c| async move {
        let sg = group(&c, &v, Some("0.0.0.0/0")).await;
        set_groups(&c, &c2, &[&sg]).await;
    });
    (lab, vpc, src, col_eni)
}

fn open_sentence(eni: &str) -> String {
    format!("the path to the collector is open; {eni} sent nothing that matches.")
}

#[test]
fn security_group_without_vxlan_then_fixed() {
    if !ready(&["ip", "python3"]) {
        return;
    }
    let lab = Lab::start("dsg");
    let (vpc, src, col_eni) = (
        lab.world.vpc.clone(),
        lab.world.source_eni.clone(),
        lab.world.collector_eni.clone(),
    );
    let (v, c2) = (vpc.clone(), col_eni.clone());
    let (sg, src_ip) = ec2_in(&lab.col, {
        let src = src.clone();
        move |c| async move {
            let sg = group(&c, &v, None).await;
            set_groups(&c, &c2, &[&sg]).await;
            (sg, eni_facts(&c, &src).await.0)
        }
    });
    let cap = capture(&lab, "sg", &src, &vpc, None);
    let (line, at) = cap.finding(&src, "security group", 0);
    cap.on_status_bar(&line);
    assert!(
        line.contains(&format!(
            "security group {sg} of the collector {col_eni} admits no UDP 4789 from {src_ip}; add that rule (awsvpc adds it to groups it created)."
        )),
        "{line}"
    );
    let g = sg.clone();
    ec2_in(&lab.col, move |c| async move {
        allow_vxlan(&c, &g, &format!("{src_ip}/32")).await
    });
    let (open, _) = cap.finding(&src, &open_sentence(&src), at);
    cap.on_status_bar(&open);
    cap.stop(&lab.col);
}

#[test]
fn network_acl_denies_inbound_then_fixed() {
    if !ready(&["ip", "python3"]) {
        return;
    }
    let lab = Lab::start("dnacl");
    let (vpc, col_eni) = (lab.world.vpc.clone(), lab.world.collector_eni.clone());
    let (v, c2) = (vpc.clone(), col_eni.clone());
    let (src, acl, col_subnet) = ec2_in(&lab.col, move |c| async move {
        let sg = group(&c, &v, Some("0.0.0.0/0")).await;
        set_groups(&c, &c2, &[&sg]).await;
        let other = subnet(&c, &v, "10.77.2.0/24").await;
        let src = source_in(&c, &other, "10.77.2.15").await;
        let col_subnet = eni_facts(&c, &c2).await.1;
        // A custom ACL on the collector's subnet: rule 90 denies the VXLAN, 100 allows all.
        let acl = c
            .create_network_acl()
            .vpc_id(&v)
            .send()
            .await
            .unwrap()
            .network_acl()
            .unwrap()
            .network_acl_id()
            .unwrap()
            .to_string();
        let entry = |n: i32, egress: bool, allow: bool, proto: &str, ports: bool| {
            let mut e = c
                .create_network_acl_entry()
                .network_acl_id(&acl)
                .rule_number(n)
                .egress(egress)
                .protocol(proto)
                .rule_action(if allow {
                    RuleAction::Allow
                } else {
                    RuleAction::Deny
                })
                .cidr_block("0.0.0.0/0");
            if ports {
                e = e.port_range(PortRange::builder().from(4789).to(4789).build());
            }
            e.send()
        };
        entry(90, false, false, "17", true).await.unwrap();
        entry(100, false, true, "-1", false).await.unwrap();
        entry(100, true, true, "-1", false).await.unwrap();
        let acls = c.describe_network_acls().send().await.unwrap();
        let assoc = acls
            .network_acls()
            .iter()
            .flat_map(|a| a.associations())
            .find(|a| a.subnet_id() == Some(col_subnet.as_str()))
            .and_then(|a| a.network_acl_association_id())
            .unwrap()
            .to_string();
        c.replace_network_acl_association()
            .association_id(assoc)
            .network_acl_id(&acl)
            .send()
            .await
            .unwrap();
        (src, acl, col_subnet)
    });
    let cap = capture(&lab, "nacl", &src, &vpc, None);
    let (line, at) = cap.finding(&src, "network ACL", 0);
    cap.on_status_bar(&line);
    assert!(
        line.contains(&format!(
            "network ACL {acl} of the collector's subnet {col_subnet} denies inbound UDP 4789 from 10.77.2.15 (rule 90)"
        )),
        "{line}"
    );
    let a = acl.clone();
    ec2_in(&lab.col, move |c| async move {
        c.delete_network_acl_entry()
            .network_acl_id(a)
            .rule_number(90)
            .egress(false)
            .send()
            .await
            .unwrap();
    });
    cap.finding(&src, &open_sentence(&src), at);
    cap.stop(&lab.col);
}

#[test]
fn different_vpcs_without_a_route_then_peered() {
    if !ready(&["ip", "python3"]) {
        return;
    }
    let lab = Lab::start("drt");
    let (vpc, col_eni) = (lab.world.vpc.clone(), lab.world.collector_eni.clone());
    let (v, c2) = (vpc.clone(), col_eni.clone());
    let (vpc2, src, rtb, target_ip) = ec2_in(&lab.col, move |c| async move {
        let sg = group(&c, &v, Some("0.0.0.0/0")).await;
        set_groups(&c, &c2, &[&sg]).await;
        let vpc2 = c
            .create_vpc()
            .cidr_block("10.78.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc()
            .unwrap()
            .vpc_id()
            .unwrap()
            .to_string();
        let sub = subnet(&c, &vpc2, "10.78.1.0/24").await;
        let src = source_in(&c, &sub, "10.78.1.15").await;
        let rtb = c
            .create_route_table()
            .vpc_id(&vpc2)
            .send()
            .await
            .unwrap()
            .route_table()
            .unwrap()
            .route_table_id()
            .unwrap()
            .to_string();
        c.associate_route_table()
            .route_table_id(&rtb)
            .subnet_id(&sub)
            .send()
            .await
            .unwrap();
        (vpc2, src, rtb, eni_facts(&c, &c2).await.0)
    });
    let cap = capture(&lab, "route", &src, &vpc2, None);
    let (line, at) = cap.finding(&src, "no peering or transit gateway route", 0);
    cap.on_status_bar(&line);
    assert!(
        line.contains(&format!(
            "the source is in {vpc2} and the target in {vpc} with no peering or transit gateway route; add a route to {target_ip} in {rtb}, or use a collector in {vpc2}."
        )),
        "{line}"
    );
    let (v, v2, r) = (vpc.clone(), vpc2.clone(), rtb.clone());
    ec2_in(&lab.col, move |c| async move {
        let pcx = c
            .create_vpc_peering_connection()
            .vpc_id(v2)
            .peer_vpc_id(v)
            .send()
            .await
            .unwrap()
            .vpc_peering_connection()
            .unwrap()
            .vpc_peering_connection_id()
            .unwrap()
            .to_string();
        c.create_route()
            .route_table_id(r)
            .destination_cidr_block(format!("{target_ip}/32"))
            .vpc_peering_connection_id(pcx)
            .send()
            .await
            .unwrap();
    });
    cap.finding(&src, &open_sentence(&src), at);
    cap.stop(&lab.col);
}

#[test]
fn filter_rules_accept_nothing_of_the_eni() {
    if !ready(&["ip", "python3"]) {
        return;
    }
    let (lab, vpc, src, _) = open_lab("dflt");
    let f = "src host 10.9.9.9 and dst host 10.8.8.8";
    let cap = capture(&lab, "never", &src, &vpc, Some(f));
    let (line, _) = cap.finding(&src, "accept nothing", 0);
    cap.on_status_bar(&line);
    assert!(
        line.contains(&format!(
            "the mirror filter's rules accept nothing of what {src} sends (capture filter '{f}' narrowed to all 10.9.9.9 10.8.8.8;"
        )) && line.ends_with("change the capture filter."),
        "{line}"
    );
    cap.stop(&lab.col);
    // A filter that can match, on an open path: the filter or an idle ENI.
    let cap = capture(&lab, "narrowed", &src, &vpc, Some("tcp port 8443"));
    let (line, _) = cap.finding(&src, "accept nothing", 0);
    cap.on_status_bar(&line);
    assert!(
        line.contains(&format!(
            "the mirror filter's rules accept nothing of what {src} sends (capture filter 'tcp port 8443' narrowed to TCP 8443); the ENI may be idle."
        )),
        "{line}"
    );
    cap.stop(&lab.col);
}

#[test]
fn a_missing_permission_degrades_the_check() {
    if !ready(&["ip", "python3"]) {
        return;
    }
    let (lab, vpc, src, _) = open_lab("dperm");
    in_netns(&lab.col, || {
        http(
            EMULATOR_PORT,
            "POST",
            "/_fault",
            r#"{"action":"DescribeSecurityGroups","code":"UnauthorizedOperation","message":"You are not authorized to perform this operation.","status":403,"count":0}"#,
        )
    });
    let cap = capture(&lab, "perm", &src, &vpc, None);
    let (line, _) = cap.finding(&src, "could not check", 0);
    cap.on_status_bar(&line);
    assert!(
        line.contains(&format!(
            "{}; but awsvpc could not check the collector's security groups (permission ec2:DescribeSecurityGroups missing).",
            open_sentence(&src).trim_end_matches('.')
        )),
        "{line}"
    );
    in_netns(&lab.col, || http(EMULATOR_PORT, "DELETE", "/_fault", ""));
    cap.stop(&lab.col);
}

/// What `warn_before` says through its status callback, run in the lab's namespace.
fn warnings(col: &str, cfg: awsvpc::config::CaptureConfig, target: &str, eni: &str) -> Vec<String> {
    use aws_smithy_mocks::{mock_client, Rule, RuleMode};
    let (target, eni) = (target.to_string(), eni.to_string());
    in_netns(col, move || {
        rt().block_on(async move {
            let none = Vec::<Rule>::new();
            let aws = awsvpc::aws::client::Aws {
                ec2: ec2(),
                sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &none),
                ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &none),
                cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &none),
                region: "us-east-1".into(),
                profile: None,
            };
            let said = std::sync::Mutex::new(Vec::<String>::new());
            awsvpc::aws::path_facts::warn_before(&aws, &cfg, &target, &eni, &|s| {
                said.lock().unwrap().push(s.to_string())
            })
            .await;
            said.into_inner().unwrap()
        })
    })
}

/// With `--target-id` the path is checked before anything is created: a closed one is a
/// warning through the status callback, an open one says nothing there.
#[test]
fn an_existing_target_is_checked_before_provisioning() {
    if !ready(&["ip", "python3"]) {
        return;
    }
    let lab = Lab::start("dpre");
    let (vpc, src, col_eni) = (
        lab.world.vpc.clone(),
        lab.world.source_eni.clone(),
        lab.world.collector_eni.clone(),
    );
    let (v, c2) = (vpc.clone(), col_eni.clone());
    let sg = ec2_in(&lab.col, move |c| async move {
        let sg = group(&c, &v, None).await;
        set_groups(&c, &c2, &[&sg]).await;
        sg
    });
    let target = untagged_target(&lab.col, &col_eni);
    let argv: Vec<String> = [
        "--capture",
        "--collector",
        "host",
        "--ssh-host",
        "collector.example",
        "--target-id",
        &target,
        "--eni",
        &src,
        "--vpc",
        &vpc,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let args = awsvpc::extcap::parse_argv(&argv);
    let cfg = awsvpc::config::CaptureConfig::from_args(&args, awsvpc::manifest::Manifest::load())
        .unwrap();
    let src_ip = ec2_in(&lab.col, {
        let src = src.clone();
        move |c| async move { eni_facts(&c, &src).await.0 }
    });
    let said = warnings(&lab.col, cfg.clone(), &target, &col_eni);
    assert_eq!(
        said,
        vec![format!(
            "Warning: {src} can deliver nothing to {target}: security group {sg} of the collector {col_eni} admits no UDP 4789 from {src_ip}; add that rule (awsvpc adds it to groups it created)."
        )]
    );
    let g = sg.clone();
    ec2_in(&lab.col, move |c| async move {
        allow_vxlan(&c, &g, "0.0.0.0/0").await
    });
    assert!(
        warnings(&lab.col, cfg, &target, &col_eni).is_empty(),
        "an open path is no warning"
    );
}

/// Every Reachability Analyzer resource the emulator still has.
fn insights_left(col: &str) -> Vec<String> {
    ec2_in(col, |c| async move {
        let mut left: Vec<String> = c
            .describe_network_insights_paths()
            .send()
            .await
            .unwrap()
            .network_insights_paths()
            .iter()
            .filter_map(|p| p.network_insights_path_id().map(str::to_string))
            .collect();
        left.extend(
            c.describe_network_insights_analyses()
                .send()
                .await
                .unwrap()
                .network_insights_analyses()
                .iter()
                .filter_map(|a| a.network_insights_analysis_id().map(str::to_string)),
        );
        left
    })
}

/// `--diagnose reachability`: the silent source's path goes to Reachability Analyzer once
/// (tagged, in the ledger, deleted after the answer), and its answer reaches the status bar.
/// wb-mini's analyzer finds every path open; the translation of AWS's explanation codes is
/// unit-tested in src/aws/reachability.rs.
#[test]
fn reachability_analyzer_once_per_source_and_nothing_left() {
    if !ready(&["ip", "python3"]) {
        return;
    }
    let (lab, vpc, src, col_eni) = open_lab("dra");
    let cap = capture_with(
        &lab,
        "reach",
        &src,
        &vpc,
        None,
        &["--diagnose", "reachability"],
    );
    let (line, at) = cap.finding(&src, "Reachability Analyzer", 0);
    assert!(
        line.contains(&format!(
            "Reachability Analyzer finds the path from {src} to {col_eni} on UDP 4789 open (analysis nia-"
        )) && line.ends_with(&format!("); {src} sent nothing that matches.")),
        "{line}"
    );
    cap.on_status_bar(&line);
    // The evaluator's checks go on; the analyzer, billed, is not asked again.
    let (_, later) = cap.finding(&src, &open_sentence(&src), at);
    cap.finding(&src, &open_sentence(&src), later);
    let log = std::fs::read_to_string(&cap.log).unwrap();
    assert_eq!(
        log.matches("asking Reachability Analyzer").count(),
        1,
        "one analysis per source: {log}"
    );
    assert!(
        insights_left(&lab.col).is_empty(),
        "the path and the analysis were deleted once answered"
    );
    cap.stop(&lab.col);
    assert!(insights_left(&lab.col).is_empty());
}
