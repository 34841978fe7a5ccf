//! The bad-input table (README, "When a capture cannot start"): every way a capture can be started wrong, run
//! as Wireshark runs it (`--capture --extcap-interface awsvpc --fifo F …`, the fifo read by
//! a thread as dumpcap would), and for each the proof the issue asks for: a non-zero exit,
//! exactly one line on stderr that names the problem and the fix, the fifo opened and
//! closed with nothing in it, and nothing left behind: no awsvpc-tagged traffic-mirror
//! target, filter or session in the emulator (Describe calls in both regions used) and no
//! run left in the ledger.
//!
//! Everything runs in a network namespace of its own with only `lo` up: the emulator
//! (wb-mini, with its `/_fault` injection for AWS's error answers), a fake instance
//! metadata service, sshd, every awsvpc, and this test's own calls (from threads that
//! entered the namespace). An address the emulator invents can therefore never be reached.
//!
//! The table is printed at the end (`cargo test --test bad_input -- --nocapture`) in the
//! form the README keeps (R stands for the standard proof, REFUSED).
#![cfg(feature = "aws")]

mod common;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const REGION: &str = "us-east-1";
const OTHER_REGION: &str = "eu-west-1";

fn emulator() -> Option<String> {
    let home = std::env::var("HOME").unwrap_or_default();
    ["wb-mini".to_string(), format!("{home}/.cargo/bin/wb-mini")]
        .into_iter()
        .find(|w| have(w) || Path::new(w).exists())
}

/// Runs `f` on a thread inside network namespace `ns`; sockets it opens live there.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only, with a namespace fd we opened.
        assert_eq!(
            unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns {path}"
        );
        f()
    })
    .join()
    .unwrap()
}

fn ec2(port: u16, region: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(region.to_string()))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The seeded account: VPC A with a mirrorable source, the collector, an ENI on an
/// instance type AWS cannot mirror from, and one that already has 3 sessions (an IDS's);
/// VPC B with one more source.
#[derive(Clone)]
struct World {
    vpc: String,
    web: String,
    collector: String,
    c6i: String,
    busy: String,
    other_vpc_eni: String,
}

async fn eni_on_instance(
    c: &aws_sdk_ec2::Client,
    subnet: &str,
    ty: InstanceType,
    name: &str,
) -> String {
    let r = c
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(ty)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("Name").value(name).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let instance = r.instances()[0].instance_id().unwrap().to_string();
    if let Some(e) = r.instances()[0]
        .network_interfaces()
        .first()
        .and_then(|n| n.network_interface_id())
    {
        return e.to_string();
    }
    // The emulator gives instances no ENI of their own: attach one.
    let id = c
        .create_network_interface()
        .subnet_id(subnet)
        .send()
        .await
        .unwrap()
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_string();
    c.attach_network_interface()
        .network_interface_id(&id)
        .instance_id(&instance)
        .device_index(1)
        .send()
        .await
        .unwrap();
    id
}

async fn vpc_and_subnet(c: &aws_sdk_ec2::Client, cidr16: &str) -> (String, String) {
    let vpc = c
        .create_vpc()
        .cidr_block(format!("{cidr16}.0.0/16"))
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let subnet = c
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block(format!("{cidr16}.1.0/24"))
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    (vpc, subnet)
}

fn seed(port: u16) -> World {
    rt().block_on(async {
        let c = ec2(port, REGION);
        let (vpc, subnet) = vpc_and_subnet(&c, "10.77").await;
        let web = eni_on_instance(&c, &subnet, InstanceType::M5Large, "web-1").await;
        let collector = eni_on_instance(&c, &subnet, InstanceType::T3Micro, "collector").await;
        let c6i = eni_on_instance(&c, &subnet, InstanceType::C6iLarge, "new-api").await;
        let busy = eni_on_instance(&c, &subnet, InstanceType::M5Large, "db-1").await;
        let (_, subnet_b) = vpc_and_subnet(&c, "10.88").await;
        let other_vpc_eni = eni_on_instance(&c, &subnet_b, InstanceType::M5Large, "web-b").await;
        // An IDS already mirrors db-1 three times (AWS's limit per ENI): its own, untagged
        // target, filter and sessions, which awsvpc must never touch.
        let ids = eni_on_instance(&c, &subnet, InstanceType::M5Large, "ids").await;
        let target = c
            .create_traffic_mirror_target()
            .network_interface_id(&ids)
            .send()
            .await
            .unwrap()
            .traffic_mirror_target()
            .unwrap()
            .traffic_mirror_target_id()
            .unwrap()
            .to_string();
        let filter = c
            .create_traffic_mirror_filter()
            .send()
            .await
            .unwrap()
            .traffic_mirror_filter()
            .unwrap()
            .traffic_mirror_filter_id()
            .unwrap()
            .to_string();
        for n in 1..=3 {
            c.create_traffic_mirror_session()
                .network_interface_id(&busy)
                .traffic_mirror_target_id(&target)
                .traffic_mirror_filter_id(&filter)
                .session_number(n)
                .send()
                .await
                .unwrap();
        }
        // The public parameter of the latest Amazon Linux 2023 AMI, for the default
        // (arm64) collector type only.
        let ssm = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::Config::builder()
                .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
                .region(aws_sdk_ssm::config::Region::new(REGION))
                .endpoint_url(format!("http://127.0.0.1:{port}"))
                .credentials_provider(aws_sdk_ssm::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .build(),
        );
        ssm.put_parameter()
            .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
            .value("ami-0a1b2c3d4e5f60718")
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .unwrap();
        World {
            vpc,
            web,
            collector,
            c6i,
            busy,
            other_vpc_eni,
        }
    })
}

/// Every awsvpc-tagged traffic-mirror resource in either region.
fn leftovers(port: u16) -> Vec<String> {
    rt().block_on(async {
        let managed = |t: &[Tag]| t.iter().any(|t| t.key() == Some("awsvpc:managed"));
        let mut left = Vec::new();
        for region in [REGION, OTHER_REGION] {
            let c = ec2(port, region);
            let s = c.describe_traffic_mirror_sessions().send().await.unwrap();
            for x in s.traffic_mirror_sessions() {
                if managed(x.tags()) {
                    left.push(x.traffic_mirror_session_id().unwrap_or("").to_string());
                }
            }
            let f = c.describe_traffic_mirror_filters().send().await.unwrap();
            for x in f.traffic_mirror_filters() {
                if managed(x.tags()) {
                    left.push(x.traffic_mirror_filter_id().unwrap_or("").to_string());
                }
            }
            let t = c.describe_traffic_mirror_targets().send().await.unwrap();
            for x in t.traffic_mirror_targets() {
                if managed(x.tags()) {
                    left.push(x.traffic_mirror_target_id().unwrap_or("").to_string());
                }
            }
            let i = c.describe_instances().send().await.unwrap();
            for x in i.reservations().iter().flat_map(|r| r.instances()) {
                let live = x
                    .state()
                    .and_then(|s| s.name())
                    .is_some_and(|n| n.as_str() != "terminated");
                if managed(x.tags()) && live {
                    left.push(x.instance_id().unwrap_or("").to_string());
                }
            }
            let g = c.describe_security_groups().send().await.unwrap();
            for x in g.security_groups() {
                if managed(x.tags()) {
                    left.push(x.group_id().unwrap_or("").to_string());
                }
            }
        }
        left
    })
}

/// The namespace, the emulator and the fake IMDS; removed however the test ends.
struct Lab {
    ns: String,
    work: tempfile::TempDir,
    home: PathBuf,
    emu_port: u16,
    imds_port: u16,
    world: World,
    procs: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn free_port_in(ns: &str, udp: bool) -> u16 {
    in_netns(ns, move || {
        if udp {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        }
    })
}

impl Lab {
    fn start(emu: &str) -> Lab {
        let ns = format!("bi-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        assert!(run(Command::new("ip").args(["netns", "add", &ns]))
            .status
            .success());
        let mut lab = Lab {
            ns: ns.clone(),
            work: tempfile::tempdir().unwrap(),
            home: PathBuf::new(),
            emu_port: 0,
            imds_port: 0,
            world: World {
                vpc: String::new(),
                web: String::new(),
                collector: String::new(),
                c6i: String::new(),
                busy: String::new(),
                other_vpc_eni: String::new(),
            },
            procs: Vec::new(),
        };
        assert!(run(
            Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])
        )
        .status
        .success());
        let mut e = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                emu,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(lab.work.path().join("emulator.log")).unwrap())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(e.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        lab.procs.push(e);
        lab.emu_port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("emulator said {first:?}"));
        let port = lab.emu_port;
        // It accepts connections at once; wait until its services answer too.
        in_netns(&ns, move || {
            wait_for(Duration::from_secs(20), "the emulator", || {
                rt().block_on(ec2(port, REGION).describe_regions().send())
                    .ok()
            })
        });
        lab.world = in_netns(&ns, move || seed(port));

        let port_file = lab.work.path().join("imds.port");
        let imds = Command::new("ip")
            .args(["netns", "exec", &ns, "python3"])
            .arg(repo().join("tests/emulator/fake_imds.py"))
            .arg(&port_file)
            .args(["02:00:00:00:c0:11", &lab.world.collector, "10.77.1.10"])
            .spawn()
            .unwrap();
        lab.procs.push(imds);
        lab.imds_port = wait_for(Duration::from_secs(20), "fake IMDS", || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        });

        // A HOME of its own: shared config files with two profiles, an SSO profile whose
        // cached token has expired, no ~/.ssh.
        lab.home = lab.work.path().join("home");
        let aws = lab.home.join(".aws");
        std::fs::create_dir_all(aws.join("sso/cache")).unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = us-east-1\n\n[profile lab]\nregion = us-east-1\n\n\
             [profile sso]\nsso_session = corp\nsso_account_id = 123456789012\n\
             sso_role_name = Capture\nregion = us-east-1\n\n\
             [sso-session corp]\nsso_start_url = https://corp.awsapps.example/start\n\
             sso_region = us-east-1\nsso_registration_scopes = sso:account:access\n",
        )
        .unwrap();
        std::fs::write(aws.join("credentials"), "").unwrap();
        let sha1 = run(Command::new("sh").args(["-c", "printf corp | sha1sum"]));
        let key = String::from_utf8_lossy(&sha1.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        std::fs::write(
            aws.join(format!("sso/cache/{key}.json")),
            r#"{"accessToken":"expired-token","expiresAt":"2024-01-01T00:00:00Z","region":"us-east-1","startUrl":"https://corp.awsapps.example/start"}"#,
        )
        .unwrap();
        std::fs::write(lab.work.path().join("ssh_config"), "").unwrap();
        lab
    }

    fn faults(&self, method: &str, body: &str) -> String {
        let (port, method, body) = (self.emu_port, method.to_string(), body.to_string());
        in_netns(&self.ns, move || http(port, &method, "/_fault", &body))
    }

    fn leftovers(&self) -> Vec<String> {
        let port = self.emu_port;
        in_netns(&self.ns, move || leftovers(port))
    }

    /// The environment awsvpc gets: nothing from this machine but PATH; AWS only through
    /// the emulator, instance metadata only from the fake, retries off.
    fn env(&self, state: &Path) -> BTreeMap<String, String> {
        let mut e = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            e.insert(k.to_string(), v);
        };
        set("PATH", std::env::var("PATH").unwrap_or_default());
        set("HOME", self.home.display().to_string());
        set(
            "AWS_CONFIG_FILE",
            self.home.join(".aws/config").display().to_string(),
        );
        set(
            "AWS_SHARED_CREDENTIALS_FILE",
            self.home.join(".aws/credentials").display().to_string(),
        );
        set("AWS_ACCESS_KEY_ID", "test".into());
        set("AWS_SECRET_ACCESS_KEY", "test".into());
        set("AWS_REGION", REGION.into());
        set("AWS_MAX_ATTEMPTS", "1".into());
        set("AWS_RETRY_MODE", "standard".into());
        set(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", self.emu_port),
        );
        set("AWS_EC2_METADATA_DISABLED", "true".into());
        set(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{}", self.imds_port),
        );
        set("AWSVPC_STATE_DIR", state.display().to_string());
        set(
            "AWSVPC_SSH_CONFIG",
            self.work.path().join("ssh_config").display().to_string(),
        );
        e
    }
}

/// Reads a fifo to its end from a thread, as dumpcap would; the bytes arrive on the channel.
fn reader(fifo: &Path, close_early: Option<Box<dyn FnOnce() + Send>>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let p = fifo.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::File::open(&p).unwrap();
        let mut v = Vec::new();
        match close_early {
            // Wireshark goes away: the read end closes while awsvpc is still working.
            Some(wait) => {
                wait();
                drop(f);
            }
            None => {
                let _ = f.read_to_end(&mut v);
            }
        }
        let _ = tx.send(v);
    });
    rx
}

/// The fifo's bytes once the reader saw it closed; a panic when awsvpc never opened it.
fn fifo_bytes(rx: &mpsc::Receiver<Vec<u8>>, fifo: &Path, case: &str) -> Vec<u8> {
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(v) => v,
        Err(_) => {
            // Unblock the reader thread before failing.
            let _ = std::fs::OpenOptions::new().write(true).open(fifo);
            panic!("{case}: awsvpc never opened and closed the fifo (tshark would hang)");
        }
    }
}

struct Outcome {
    status: ExitStatus,
    stderr: String,
    fifo: Vec<u8>,
    log: String,
    state: PathBuf,
}

/// How a case is started beyond its arguments.
#[derive(Default)]
struct How {
    env_set: Vec<(&'static str, String)>,
    env_remove: Vec<&'static str>,
    /// Faults armed in the emulator first (JSON for `POST /_fault`).
    faults: Vec<String>,
    /// A program that runs awsvpc as its child (the caller Wireshark would be).
    parent: Vec<String>,
    /// Wireshark closes the fifo (or stops the capture) once the first fault has matched.
    close_fifo_mid_provisioning: bool,
    sigterm_mid_provisioning: bool,
    /// A capture that proceeds: wait for this log text, then stop it as Wireshark does.
    proceeds_until: Option<&'static str>,
    no_log: bool,
    /// The launched collectors' SSM agents report this PingStatus.
    ssm_ping: Option<&'static str>,
}

fn run_case(lab: &Lab, case: &str, args: &[String], how: How) -> Outcome {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = lab.work.path().join(format!("case{n:02}"));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state");
    let fifo = dir.join("fifo");
    let log = dir.join("awsvpc.log");
    mkfifo(&fifo);
    if let Some(p) = how.ssm_ping {
        let (port, body) = (lab.emu_port, format!("{{\"ping\":\"{p}\"}}"));
        in_netns(&lab.ns, move || http(port, "POST", "/_ssm", &body));
    }
    for f in &how.faults {
        lab.faults("POST", f);
    }
    let mut env = lab.env(&state);
    for k in &how.env_remove {
        env.remove(*k);
    }
    for (k, v) in &how.env_set {
        env.insert(k.to_string(), v.clone());
    }
    let hits = {
        let (port, ns) = (lab.emu_port, lab.ns.clone());
        move || {
            let ns = ns.clone();
            let body = in_netns(&ns, move || http(port, "GET", "/_fault", ""));
            !body.contains("\"hits\":0")
        }
    };
    let early: Option<Box<dyn FnOnce() + Send>> = if how.close_fifo_mid_provisioning {
        let hits = hits.clone();
        Some(Box::new(move || {
            wait_for(Duration::from_secs(60), "the slow AWS call", || {
                hits().then_some(())
            })
        }))
    } else {
        None
    };
    let rx = reader(&fifo, early);
    let mut cmd = match how.parent.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).args(["ip", "netns", "exec", &lab.ns]);
            c
        }
        None => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &lab.ns]);
            c
        }
    };
    cmd.arg(bin())
        .args(["--capture", "--extcap-interface", "awsvpc", "--fifo"])
        .arg(&fifo)
        .args(args);
    if !how.no_log {
        cmd.args(["--log-level", "debug", "--log-file"]).arg(&log);
    }
    cmd.env_clear()
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if how.sigterm_mid_provisioning {
        wait_for(Duration::from_secs(60), "the slow AWS call", || {
            hits().then_some(())
        });
        kill(child.id(), libc::SIGTERM);
    }
    if let Some(text) = how.proceeds_until {
        wait_for(Duration::from_secs(60), text, || {
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!l.contains("fatal:"), "{case}: {l}");
            l.contains(text).then_some(())
        });
        kill(child.id(), libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            // Stopped as Wireshark would, so it still removes what it made.
            kill(child.id(), libc::SIGTERM);
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            panic!(
                "{case}: awsvpc did not exit; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let fifo_data = fifo_bytes(&rx, &fifo, case);
    // Every armed fault was met: the call the case is about was really made.
    if !how.faults.is_empty() {
        let list = lab.faults("GET", "");
        assert!(
            !list.contains("\"hits\":0"),
            "{case}: a fault was never hit: {list}"
        );
        lab.faults("DELETE", "");
    }
    if how.ssm_ping.is_some() {
        let port = lab.emu_port;
        in_netns(&lab.ns, move || {
            http(port, "POST", "/_ssm", "{\"ping\":\"Online\"}")
        });
    }
    Outcome {
        status,
        stderr,
        fifo: fifo_data,
        log: std::fs::read_to_string(&log).unwrap_or_default(),
        state,
    }
}

fn ledger_runs(state: &Path) -> Vec<String> {
    std::fs::read_dir(state)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// One row of the table: what was given, the sentence seen, how it is proven.
struct Row {
    input: String,
    sentence: String,
    proof: String,
}

/// The standard proof of a refused capture, "R" in the README: exit 1; one stderr line; the
/// fifo opened and closed with 0 bytes; nothing tagged awsvpc left (Describe); ledger empty.
const REFUSED: &str = "R";

/// The standard proof for a refused capture; returns the sentence.
fn assert_refused(lab: &Lab, case: &str, o: &Outcome, wants: &[&str]) -> String {
    assert!(
        !o.status.success(),
        "{case}: a refused capture exits non-zero; log: {}",
        o.log
    );
    let line = o.stderr.trim_end_matches('\n');
    assert_eq!(
        o.stderr.lines().count(),
        1,
        "{case}: exactly one line on stderr: {:?}; log: {}",
        o.stderr,
        o.log
    );
    for w in wants {
        assert!(line.contains(w), "{case}: {w:?} missing from: {line}");
    }
    assert!(
        o.fifo.is_empty(),
        "{case}: the fifo was opened and closed with nothing in it"
    );
    let left = lab.leftovers();
    assert!(left.is_empty(), "{case}: left in the account: {left:?}");
    let runs = ledger_runs(&o.state);
    assert!(runs.is_empty(), "{case}: runs left in the ledger: {runs:?}");
    line.to_string()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn fault(action: &str, code: &str, status: u16, count: u32, message: &str) -> String {
    format!(
        r#"{{"action":"{action}","code":"{code}","status":{status},"count":{count},"message":"{message}"}}"#
    )
}

fn denied(action: &str) -> String {
    fault(
        action,
        "UnauthorizedOperation",
        403,
        0,
        "You are not authorized to perform this operation.",
    )
}

/// A python parent that maps a file named like Wireshark's library, then runs its
/// arguments as its child: the caller awsvpc inspects, as if it were that Wireshark.
fn fake_wireshark(dir: &Path, lib: &str) -> Vec<String> {
    let d = dir.join(lib.replace('.', "_"));
    std::fs::create_dir_all(&d).unwrap();
    let so = d.join(lib);
    std::fs::write(&so, vec![0u8; 4096]).unwrap();
    s(&[
        "python3",
        "-c",
        "import mmap,subprocess,sys\nf=open(sys.argv[1],'rb')\nm=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\nsys.exit(subprocess.call(sys.argv[2:]))",
        &so.display().to_string(),
    ])
}

#[test]
fn every_bad_input_is_one_sentence_and_leaves_nothing() {
    let Some(emu) = emulator() else {
        assert!(
            !must_run_system_tests(),
            "no AWS emulator installed; .ci/run installs one"
        );
        return;
    };
    if !system_ready(
        &[
            "ip",
            "python3",
            "sha1sum",
            "ssh",
            "ssh-keygen",
            "/usr/sbin/sshd",
        ],
        true,
    ) {
        return;
    }
    let started = Instant::now();
    let lab = Lab::start(&emu);
    let w = lab.world.clone();
    let mut rows: Vec<Row> = Vec::new();
    let local = |extra: &[&str]| -> Vec<String> {
        let mut v = s(&["--collector", "local", "--vpc", &w.vpc, "--eni", &w.web]);
        v.extend(s(extra));
        v
    };
    // A launched collector whose SSH is never reached: every case stops before it.
    let ephemeral = |extra: &[&str]| -> Vec<String> {
        let mut v = s(&[
            "--vpc",
            &w.vpc,
            "--eni",
            &w.web,
            "--ssh-host",
            "127.0.0.1",
            "--ssh-allow",
            "198.51.100.7/32",
        ]);
        v.extend(s(extra));
        v
    };
    let local_eni = |eni: &str, vpc: Option<&str>| -> Vec<String> {
        let mut v = s(&["--collector", "local", "--eni", eni]);
        if let Some(vpc) = vpc {
            v.extend(s(&["--vpc", vpc]));
        }
        v
    };

    // (input, args, how, key words of the sentence)
    type Simple = (String, Vec<String>, How, Vec<&'static str>);
    let mut simple: Vec<Simple> = vec![
        // Arguments: refused before any AWS call.
        (
            "malformed `--eni` list (`eni-0abc,i-123`)".into(),
            s(&["--collector", "local", "--eni", "eni-0abc,i-123"]),
            How::default(),
            vec!["--eni must list ENI ids", "\"i-123\" is not one"],
        ),
        (
            "`--eni` with no id in it (`\" , \"`)".into(),
            s(&["--collector", "local", "--eni", " , "]),
            How::default(),
            vec!["--eni is set but lists no ENI", "give ids"],
        ),
        (
            "conflicting arguments: `--target-id` with `--collector local`".into(),
            s(&["--collector", "local", "--target-id", "tmt-0abc12"]),
            How::default(),
            vec!["only --collector host uses", "clear it"],
        ),
        (
            "conflicting arguments: `--collector host --eni` without `--target-id`".into(),
            s(&["--collector", "host", "--ssh-host", "127.0.0.1", "--eni", &w.web]),
            How::default(),
            vec!["needs --target-id", "Collector tab"],
        ),
        (
            "conflicting arguments: `--vni 5` with a `--source` map that has no VNI 5".into(),
            s(&["--collector", "local", "--vni", "5", "--source", "7=eni-0abc12"]),
            How::default(),
            vec!["--vni 5", "add it to --source or clear --vni"],
        ),
        (
            "`--collector ephemeral` (the default) without `--eni`".into(),
            s(&[]),
            How::default(),
            vec!["--collector ephemeral launches a collector for the ENIs to mirror", "--eni"],
        ),
        (
            "`--collector host --connect ssm` without `--target-id` (which instance?)".into(),
            s(&["--collector", "host", "--connect", "ssm"]),
            How::default(),
            vec!["--collector host --connect ssm needs --target-id", "Collector tab"],
        ),
        (
            "`--listen-port 70000`".into(),
            s(&["--collector", "local", "--listen-port", "70000"]),
            How::default(),
            vec!["--listen-port must be a UDP port from 1 to 65535", "\"70000\""],
        ),
        (
            "log file not writable (`--log-file /nonexistent-dir/awsvpc.log`)".into(),
            s(&["--collector", "local", "--log-file", "/nonexistent-dir/awsvpc.log"]),
            How {
                no_log: true,
                ..Default::default()
            },
            vec!["Cannot write the log file /nonexistent-dir/awsvpc.log", "choose a writable path for --log-file"],
        ),
        (
            "invalid capture filter (`tcp port 99999`)".into(),
            local(&["--extcap-capture-filter", "tcp port 99999"]),
            How::default(),
            vec!["Invalid capture filter", "99999"],
        ),
        (
            "`--connect ssm` with a launched collector but no instance profile for its agent".into(),
            ephemeral(&["--connect", "ssm"]),
            How::default(),
            vec!["needs an instance profile for its SSM agent", "--instance-profile", "--launch-template"],
        ),
        (
            "`--instance-type` that is not one (`t4g`)".into(),
            ephemeral(&["--instance-type", "t4g"]),
            How::default(),
            vec!["--instance-type must be an EC2 instance type such as t4g.nano", "\"t4g\""],
        ),
        (
            "this machine's public address cannot be found (for the collector's SSH rule)".into(),
            s(&["--eni", &w.web, "--vpc", &w.vpc, "--ssh-host", "127.0.0.1"]),
            How {
                env_set: vec![(
                    "AWSVPC_CHECKIP_URL",
                    format!("http://127.0.0.1:{}/", free_port_in(&lab.ns, false)),
                )],
                ..Default::default()
            },
            vec!["Cannot find this machine's public address", "set --ssh-allow"],
        ),
        (
            "launch template that does not exist (`--launch-template lt-0123456789abcdef0`)".into(),
            ephemeral(&["--launch-template", "lt-0123456789abcdef0"]),
            How::default(),
            vec!["Launch template lt-0123456789abcdef0 not found in region us-east-1", "--launch-template"],
        ),
        (
            "no Amazon Linux 2023 AMI parameter for the collector's architecture (`--instance-type t3.nano`)".into(),
            ephemeral(&["--instance-type", "t3.nano"]),
            How::default(),
            vec!["al2023-ami-kernel-default-x86_64 does not exist in region us-east-1", "--launch-template"],
        ),
        (
            "no capacity for the collector (`InsufficientInstanceCapacity`)".into(),
            ephemeral(&[]),
            How {
                faults: vec![fault("RunInstances", "InsufficientInstanceCapacity", 500, 1, "We currently do not have sufficient t4g.nano capacity in the Availability Zone you requested.")],
                ..Default::default()
            },
            vec!["AWS has no t4g.nano capacity in", "try another --instance-type"],
        ),
        (
            "instance quota reached for the collector (`VcpuLimitExceeded`)".into(),
            ephemeral(&[]),
            How {
                faults: vec![fault("RunInstances", "VcpuLimitExceeded", 400, 1, "You have requested more vCPU capacity than your current vCPU limit of 0 allows.")],
                ..Default::default()
            },
            vec!["instance quota in this region is reached", "--collector host"],
        ),
        (
            "SSM agent offline on the launched collector (`PingStatus` ConnectionLost)".into(),
            ephemeral(&["--connect", "ssm", "--instance-profile", "awsvpc-collector"]),
            How {
                ssm_ping: Some("ConnectionLost"),
                env_set: vec![("AWSVPC_TEST_SSM_ONLINE_WAIT_SECS", "2".into())],
                ..Default::default()
            },
            vec!["The SSM agent on i-", "is offline (ConnectionLost", "AmazonSSMManagedInstanceCore"],
        ),
        // Credentials and configuration.
        (
            "unknown profile (`--profile nosuch`)".into(),
            local(&["--profile", "nosuch"]),
            How::default(),
            vec!["AWS profile \"nosuch\" is not in", "choose one of: default, lab, sso"],
        ),
        (
            "expired SSO token (`--profile sso`, cached token expired)".into(),
            local(&["--profile", "sso"]),
            How {
                env_remove: vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
                ..Default::default()
            },
            vec!["SSO session has expired", "aws sso login --profile sso"],
        ),
        (
            "no credentials (no keys, no profile with any)".into(),
            local(&[]),
            How {
                env_remove: vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
                ..Default::default()
            },
            vec!["No AWS credentials found", "--profile"],
        ),
        (
            "credentials AWS rejects (`InvalidClientTokenId` from STS)".into(),
            local(&[]),
            How {
                faults: vec![fault("GetCallerIdentity", "InvalidClientTokenId", 403, 1, "The security token included in the request is invalid.")],
                ..Default::default()
            },
            vec!["AWS rejected the credentials for sts:GetCallerIdentity", "check the profile's keys"],
        ),
        (
            "expired session credentials (`ExpiredToken` from STS)".into(),
            local(&[]),
            How {
                faults: vec![fault("GetCallerIdentity", "ExpiredToken", 403, 1, "The security token included in the request is expired")],
                ..Default::default()
            },
            vec!["The AWS session has expired", "aws sso login"],
        ),
        (
            "no region (none in the environment or the profile)".into(),
            local(&[]),
            How {
                env_remove: vec!["AWS_REGION"],
                env_set: vec![("AWS_CONFIG_FILE", "/dev/null".into())],
                ..Default::default()
            },
            vec!["No AWS Region", "set --region"],
        ),
        (
            "AWS endpoint unreachable (nothing listens at `AWS_ENDPOINT_URL`)".into(),
            local(&[]),
            How {
                env_set: vec![(
                    "AWS_ENDPOINT_URL",
                    format!("http://127.0.0.1:{}", free_port_in(&lab.ns, false)),
                )],
                ..Default::default()
            },
            vec!["Cannot reach the AWS endpoint for sts:GetCallerIdentity", "check the network"],
        ),
        (
            "region not enabled for the account (`OptInRequired`)".into(),
            local(&[]),
            How {
                faults: vec![fault("DescribeNetworkInterfaces", "OptInRequired", 401, 1, "You are not subscribed to this service.")],
                ..Default::default()
            },
            vec!["The region is not enabled", "choose another --region"],
        ),
        // The ENIs.
        (
            format!("region without the VPC (`--region {OTHER_REGION}`, VPC and ENI in {REGION})"),
            local(&["--region", OTHER_REGION]),
            How::default(),
            vec!["not found in region eu-west-1", "check --eni and --region"],
        ),
        (
            "ENI that does not exist".into(),
            local_eni("eni-0123456789abcdef0", Some(&w.vpc)),
            How::default(),
            vec!["eni-0123456789abcdef0 not found in region us-east-1", "check --eni"],
        ),
        (
            "ENI in another VPC than `--vpc`".into(),
            local_eni(&w.other_vpc_eni, Some(&w.vpc)),
            How::default(),
            vec!["not in the chosen VPC", "change --vpc"],
        ),
        (
            "ENIs of two VPCs in one capture (no `--vpc`)".into(),
            local_eni(&format!("{},{}", w.web, w.other_vpc_eni), None),
            How::default(),
            vec!["mirror ENIs of one VPC per capture"],
        ),
        (
            // With the default --capture-mode auto it is captured on its instance
            // (tests/on_host.rs); a mirror-only capture refuses it.
            "ENI of an unsupported instance type (c6i.large), `--capture-mode mirror`".into(),
            {
                let mut a = local_eni(&w.c6i, Some(&w.vpc));
                a.extend(s(&["--capture-mode", "mirror"]));
                a
            },
            How::default(),
            vec!["cannot be mirrored", "c6i", "choose another ENI", "--capture-mode auto"],
        ),
        (
            "ENI with 3 sessions already (another tool's)".into(),
            local_eni(&w.busy, Some(&w.vpc)),
            How::default(),
            vec!["already has 3 mirror sessions", "AWS's limit per ENI", "remove one or choose another ENI"],
        ),
        (
            "the collector's own ENI as a source".into(),
            local_eni(&w.collector, Some(&w.vpc)),
            How::default(),
            vec!["is the collector's own ENI", "choose another ENI"],
        ),
        (
            "`--collector local --eni` on a machine that is not an EC2 instance (no instance metadata)".into(),
            local(&[]),
            How {
                env_set: vec![(
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                    format!("http://127.0.0.1:{}", free_port_in(&lab.ns, false)),
                )],
                ..Default::default()
            },
            vec!["EC2 instance metadata, which is not reachable", "run awsvpc on an EC2 instance"],
        ),
        (
            "AWS refuses the ENI at session creation (`NetworkInterfaceNotSupported`)".into(),
            local(&[]),
            How {
                faults: vec![fault("CreateTrafficMirrorSession", "NetworkInterfaceNotSupported", 400, 1, "eni must be attached to a supported instance")],
                ..Default::default()
            },
            vec!["cannot be mirrored: AWS does not support traffic mirroring from its instance type", "choose another ENI"],
        ),
        // AWS refusing a call.
        (
            "quota exceeded: sources per target (`TrafficMirrorSourcesPerTargetLimitExceeded`)".into(),
            local(&[]),
            How {
                faults: vec![fault("CreateTrafficMirrorSession", "TrafficMirrorSourcesPerTargetLimitExceeded", 400, 1, "The maximum number of sources for the traffic mirror target has been reached.")],
                ..Default::default()
            },
            vec!["AWS quota reached for ec2:CreateTrafficMirrorSession", "awsvpc cleanup"],
        ),
        (
            "quota exceeded: filters per account (`TrafficMirrorFilterLimitExceeded`)".into(),
            local(&[]),
            How {
                faults: vec![fault("CreateTrafficMirrorFilter", "TrafficMirrorFilterLimitExceeded", 400, 1, "The maximum number of traffic mirror filters has been reached.")],
                ..Default::default()
            },
            vec!["AWS quota reached for ec2:CreateTrafficMirrorFilter", "awsvpc cleanup"],
        ),
        (
            "throttled (`RequestLimitExceeded`, retries off)".into(),
            local(&[]),
            How {
                faults: vec![fault("CreateTrafficMirrorTarget", "RequestLimitExceeded", 503, 1, "Request limit exceeded.")],
                ..Default::default()
            },
            vec!["AWS is throttling ec2:CreateTrafficMirrorTarget", "wait a minute"],
        ),
        (
            "permission missing: sts:GetCallerIdentity".into(),
            local(&[]),
            How {
                faults: vec![fault("GetCallerIdentity", "AccessDenied", 403, 1, "User is not authorized to perform: sts:GetCallerIdentity")],
                ..Default::default()
            },
            vec!["Permission missing: AWS denied sts:GetCallerIdentity", "grant it to your role", "iam-policy.json"],
        ),
    ];
    // Permission missing, one case per kind of call awsvpc makes to mirror.
    // A missing permission is missing for every call of that kind (the sweep of expired
    // leftovers also asks for some of them and only logs the refusal).
    for (action, extra) in [
        ("DescribeNetworkInterfaces", &[][..]),
        ("DescribeInstances", &[][..]),
        ("DescribeTrafficMirrorSessions", &[][..]),
        ("CreateTrafficMirrorTarget", &[][..]),
        ("CreateTrafficMirrorFilter", &[][..]),
        ("CreateTrafficMirrorFilterRule", &[][..]),
        (
            "ModifyTrafficMirrorFilterNetworkServices",
            &["--amazon-dns"][..],
        ),
        ("CreateTrafficMirrorSession", &[][..]),
    ] {
        let op = format!("ec2:{action}");
        simple.push((
            format!(
                "permission missing: {op}{}",
                if extra.is_empty() {
                    String::new()
                } else {
                    format!(" (with `{}`)", extra.join(" "))
                }
            ),
            local(extra),
            How {
                faults: vec![denied(action)],
                ..Default::default()
            },
            vec!["Permission missing: AWS denied", "grant it to your role"],
        ));
    }

    // BAD_INPUT_ONLY=text runs only the table's simple cases whose input contains it.
    let only = std::env::var("BAD_INPUT_ONLY").ok();
    for (input, args, how, wants) in simple {
        if only.as_ref().is_some_and(|o| !input.contains(o.as_str())) {
            continue;
        }
        let o = run_case(&lab, &input, &args, how);
        let line = assert_refused(&lab, &input, &o, &wants);
        if let Some(op) = input.strip_prefix("permission missing: ") {
            let op = op.split_whitespace().next().unwrap();
            assert!(line.contains(op), "{input}: names {op}: {line}");
        }
        rows.push(Row {
            input,
            sentence: line,
            proof: REFUSED.into(),
        });
    }

    if only.is_some() {
        return;
    }
    // The order of a capture's checks: arguments, local files, credentials, AWS resources,
    // the public address, creation. A wrong profile is named before any network call: every
    // address awsvpc could ask here (AWS, the public-address service, the collector's SSH) is
    // one loopback listener, and no connection may reach its backlog.
    for (input, args) in [
        (
            "unknown profile with the default collector and no `--ssh-allow` (no network call before the local checks)",
            s(&["--profile", "no-such-profile", "--region", "eu-west-1", "--eni", "eni-0123456789abcdef0"]),
        ),
        (
            "unknown profile with a host collector over SSH (checked before the collector is dialled)",
            s(&["--profile", "no-such-profile", "--collector", "host", "--ssh-host", "127.0.0.1",
                "--target-id", "tmt-0123456789abcdef0", "--eni", "eni-0123456789abcdef0"]),
        ),
    ] {
        let listener = in_netns(&lab.ns, || std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/");
        let mut args = args;
        args.extend(s(&["--ssh-port", &port.to_string()]));
        let started = Instant::now();
        let o = run_case(
            &lab,
            input,
            &args,
            How {
                env_set: vec![("AWSVPC_CHECKIP_URL", url.clone()), ("AWS_ENDPOINT_URL", url)],
                ..Default::default()
            },
        );
        let took = started.elapsed();
        let line = assert_refused(
            &lab,
            input,
            &o,
            &["AWS profile \"no-such-profile\" is not in", "choose one of: default, lab, sso"],
        );
        listener.set_nonblocking(true).unwrap();
        let contacted = listener.accept().is_ok();
        assert!(!contacted, "{input}: a network call came before the profile check; log: {}", o.log);
        // Offline, a lookup that came first would wait for DNS; the local check answers at once.
        assert!(took < Duration::from_secs(1), "{input}: answered in {took:?}");
        rows.push(Row {
            input: input.to_string(),
            sentence: line,
            proof: format!("{REFUSED}; no connection to any address awsvpc could ask (AWS, checkip, SSH) before it; answered in {} ms in a namespace with only loopback", took.as_millis()),
        });
    }

    // Untrusted inputs beyond the table above, as an attacker would shape them: helper
    // programs that hang or lie, values that would reach ssh as options, Regions that would
    // reach the SDK's endpoint resolver, megabyte values.
    {
        let dir = lab.work.path().join("hostile");
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("credential_process.pid");
        let marker = dir.join("smuggled");
        let config = dir.join("config");
        std::fs::write(
            &config,
            format!(
                "[profile hangs]\nregion = us-east-1\ncredential_process = sh -c 'echo $$ > {}; exec sleep 600'\n\n\
                 [profile garbage]\nregion = us-east-1\ncredential_process = echo this is not the credentials JSON\n",
                pid_file.display()
            ),
        )
        .unwrap();
        let helpers = || How {
            env_remove: vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            env_set: vec![("AWS_CONFIG_FILE", config.display().to_string())],
            ..Default::default()
        };
        let smuggle = format!("-oProxyCommand=touch {}", marker.display());
        let cases: Vec<Simple> = vec![
            (
                "profile whose `credential_process` hangs".into(),
                local(&["--profile", "hangs"]),
                helpers(),
                vec![
                    "credentials of profile hangs did not arrive in time",
                    "~/.aws/config",
                ],
            ),
            (
                "profile whose `credential_process` prints garbage".into(),
                local(&["--profile", "garbage"]),
                helpers(),
                vec![
                    "credential_process of profile garbage did not print AWS credentials",
                    "fix the command",
                ],
            ),
            (
                "`--region` that is no Region name (`EU-WEST-1`)".into(),
                local(&["--region", "EU-WEST-1"]),
                How::default(),
                vec![
                    "--region must be an AWS Region such as eu-west-1",
                    "\"EU-WEST-1\"",
                ],
            ),
            (
                "`AWS_REGION` that is no Region name (`eu_west_1`)".into(),
                local(&[]),
                How {
                    env_set: vec![("AWS_REGION", "eu_west_1".into())],
                    ..Default::default()
                },
                vec!["The AWS Region \"eu_west_1\"", "set --region"],
            ),
            (
                "`--ssh-host` that is an ssh option (`-oProxyCommand=…`)".into(),
                s(&["--collector", "host", "--ssh-host", &smuggle]),
                How::default(),
                vec!["--ssh-host must be a host name", "-oProxyCommand"],
            ),
            (
                "`--ssh-user` that is an ssh option (`-oProxyCommand=…`)".into(),
                s(&[
                    "--collector",
                    "host",
                    "--ssh-host",
                    "127.0.0.1",
                    "--ssh-user",
                    &smuggle,
                ]),
                How::default(),
                vec!["--ssh-user must be a user name", "-oProxyCommand"],
            ),
            (
                "`--ssh-key` whose name ssh would expand (`${HOME}/id`)".into(),
                s(&[
                    "--collector",
                    "host",
                    "--ssh-host",
                    "127.0.0.1",
                    "--ssh-key",
                    "${HOME}/id",
                ]),
                How::default(),
                vec!["--ssh-key", "rename the file or choose another"],
            ),
            (
                "a 100-kilobyte `--eni` value".into(),
                s(&[
                    "--collector",
                    "local",
                    "--eni",
                    &format!("eni-{}", "f".repeat(100_000)),
                ]),
                How::default(),
                vec!["--eni must list ENI ids", "…\" is not one"],
            ),
        ];
        for (input, args, how, wants) in cases {
            let o = run_case(&lab, &input, &args, how);
            let line = assert_refused(&lab, &input, &o, &wants);
            assert!(line.len() < 600, "{input}: a {}-byte line", line.len());
            let mut proof = REFUSED.to_string();
            if input.contains("hangs") {
                // The helper the SDK started (and gave up on) ended with awsvpc.
                let pid: i32 = std::fs::read_to_string(&pid_file)
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let alive = stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'));
                assert!(
                    !alive,
                    "{input}: the credential_process (pid {pid}) outlived awsvpc"
                );
                proof.push_str("; the hung credential_process is gone when awsvpc exits");
            }
            if input.contains("ssh option") {
                assert!(
                    !marker.exists(),
                    "{input}: ssh ran the smuggled ProxyCommand"
                );
                proof.push_str("; no program ran the smuggled option");
            }
            rows.push(Row {
                input,
                sentence: line,
                proof,
            });
        }
        // Query calls read the profile list and never run a profile's helper: the
        // configuration call answers at once with the hanging and lying profiles listed.
        let _ = std::fs::remove_file(&pid_file);
        let started = Instant::now();
        let o = run(Command::new(bin())
            .args(["--extcap-config", "--extcap-interface", "awsvpc"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &lab.home)
            .env("AWS_CONFIG_FILE", &config));
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("{value=hangs}"),
            "{text}"
        );
        assert!(
            !pid_file.exists(),
            "--extcap-config ran a credential_process"
        );
        assert!(
            took < Duration::from_secs(2),
            "--extcap-config took {took:?}"
        );
        rows.push(Row {
            input: "`--extcap-config` with a profile whose `credential_process` hangs".into(),
            sentence: "(the options dialog opens; the profile is listed)".into(),
            proof: format!(
                "exit 0 in {} ms; the credential_process never ran",
                took.as_millis()
            ),
        });
    }

    // Port 4789 already bound: refused before any AWS call, so nothing was created.
    {
        let ns = lab.ns.clone();
        let busy = in_netns(&ns, || std::net::UdpSocket::bind("0.0.0.0:4789").unwrap());
        let input = "port 4789 already bound (another collector)".to_string();
        let o = run_case(&lab, &input, &local(&[]), How::default());
        let line = assert_refused(&lab, &input, &o, &["4789", "in use"]);
        assert!(
            !o.log.contains("Connecting to AWS"),
            "no AWS call before the port: {}",
            o.log
        );
        drop(busy);
        rows.push(Row {
            input,
            sentence: line,
            proof: format!("{REFUSED}; the log shows no AWS call"),
        });
    }

    // A delete is denied during the rollback: the sentence says what is left and the
    // command that finishes it, and that command does.
    {
        let input = "permission missing: ec2:DeleteTrafficMirrorFilter, during the rollback of a refused session".to_string();
        let o = run_case(
            &lab,
            &input,
            &local(&[]),
            How {
                faults: vec![
                    fault(
                        "CreateTrafficMirrorSession",
                        "TrafficMirrorSourcesPerTargetLimitExceeded",
                        400,
                        1,
                        "The maximum number of sources for the traffic mirror target has been reached.",
                    ),
                    denied("DeleteTrafficMirrorFilter"),
                ],
                ..Default::default()
            },
        );
        assert!(!o.status.success());
        assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
        let line = o.stderr.trim_end().to_string();
        assert!(o.fifo.is_empty());
        for w in [
            "AWS quota reached",
            "Teardown could not remove tmf-",
            "Permission missing",
            "run awsvpc cleanup --run-id",
        ] {
            assert!(line.contains(w), "{w:?} missing from {line}");
        }
        let left = lab.leftovers();
        assert_eq!(left.len(), 1, "only the filter is left: {left:?}");
        let run_id = line
            .split("--run-id ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_string();
        assert_eq!(ledger_runs(&o.state), vec![format!("{run_id}.json")]);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &lab.ns])
            .arg(bin())
            .args(["cleanup", "--run-id", &run_id])
            .env_clear()
            .envs(lab.env(&o.state));
        let cl = run(&mut c);
        assert!(
            cl.status.success(),
            "cleanup: {}",
            String::from_utf8_lossy(&cl.stderr)
        );
        assert!(lab.leftovers().is_empty(), "cleanup removed it");
        assert!(ledger_runs(&o.state).is_empty(), "ledger finished");
        rows.push(Row {
            input,
            sentence: line,
            proof: "exit 1; one stderr line; fifo empty; exactly the filter is left and the ledger keeps the run; the `awsvpc cleanup --run-id` the sentence names removes it and the ledger empties".into(),
        });
    }

    // Wireshark stops the capture while AWS is still answering (a 1.5 s CreateTrafficMirrorFilter).
    let slow_filter = r#"{"action":"CreateTrafficMirrorFilter","delay_ms":1500,"count":1}"#;
    {
        let input = "Wireshark stops the capture mid-provisioning (SIGTERM during CreateTrafficMirrorFilter)".to_string();
        let o = run_case(
            &lab,
            &input,
            &local(&[]),
            How {
                faults: vec![slow_filter.into()],
                sigterm_mid_provisioning: true,
                ..Default::default()
            },
        );
        let line = assert_refused(
            &lab,
            &input,
            &o,
            &[
                "stopped during provisioning",
                "everything created so far was removed",
            ],
        );
        rows.push(Row {
            input,
            sentence: line,
            proof: REFUSED.into(),
        });
    }
    {
        let input = "fifo closed by Wireshark mid-provisioning (reader gone during CreateTrafficMirrorFilter)".to_string();
        let o = run_case(
            &lab,
            &input,
            &local(&[]),
            How {
                faults: vec![slow_filter.into()],
                close_fifo_mid_provisioning: true,
                ..Default::default()
            },
        );
        // Nobody reads stderr any more; what matters is the rollback and the exit.
        let line = assert_refused(&lab, &input, &o, &["Broken pipe"]);
        assert!(o.log.contains("teardown of run"), "{}", o.log);
        rows.push(Row {
            input,
            sentence: line,
            proof: format!("{REFUSED}; the log shows the teardown"),
        });
    }

    // A filter the mirror cannot be narrowed to: the capture proceeds with accept-all and
    // says so once in the log; stopping it removes everything.
    {
        let input =
            "capture filter that cannot narrow the mirror (`vlan and host 10.77.1.20`)".to_string();
        let o = run_case(
            &lab,
            &input,
            &local(&["--extcap-capture-filter", "vlan and host 10.77.1.20"]),
            How {
                proceeds_until: Some("waiting for mirrored packets"),
                ..Default::default()
            },
        );
        assert!(
            o.status.success(),
            "a stopped capture exits 0: {}",
            o.stderr
        );
        assert!(o.stderr.is_empty(), "nothing on stderr: {}", o.stderr);
        assert!(
            o.fifo.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]),
            "pcapng was written"
        );
        let sentence = o
            .log
            .lines()
            .find(|l| l.contains("does not narrow what AWS mirrors"))
            .unwrap_or_else(|| panic!("the log says it: {}", o.log));
        let sentence = sentence.split("] ").nth(1).unwrap_or(sentence).to_string();
        for rule in [
            "accept all from 0.0.0.0/0 to 0.0.0.0/0",
            "accept all from ::/0 to ::/0",
        ] {
            assert!(o.log.contains(rule), "accept-all rule {rule:?}: {}", o.log);
        }
        assert!(lab.leftovers().is_empty());
        assert!(ledger_runs(&o.state).is_empty());
        rows.push(Row {
            input,
            sentence: format!("(capture proceeds; in the log) {sentence}"),
            proof: "exit 0 after SIGTERM; stderr empty; pcapng in the fifo; accept-all rules logged; nothing left, ledger empty".into(),
        });
    }

    // The SSH collector: refused before anything is created in AWS.
    {
        let port = free_port_in(&lab.ns, false);
        let input = "unreachable collector (nothing listens on the SSH port)".to_string();
        let mut args = s(&[
            "--collector",
            "host",
            "--ssh-host",
            "127.0.0.1",
            "--ssh-user",
            "root",
            "--target-id",
            "tmt-0abc12",
            "--vpc",
            &w.vpc,
            "--eni",
            &w.web,
        ]);
        args.extend(["--ssh-port".into(), port.to_string()]);
        let o = run_case(&lab, &input, &args, How::default());
        let line = assert_refused(
            &lab,
            &input,
            &o,
            &["connection refused", "check --ssh-host and --ssh-port"],
        );
        rows.push(Row {
            input,
            sentence: line,
            proof: REFUSED.into(),
        });

        let dir = lab.work.path().join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let sshd = common::sshd::Sshd::start(&dir, Some(&lab.ns), "");
        let mut args = sshd.args();
        args.extend(s(&[
            "--target-id",
            "tmt-0abc12",
            "--vpc",
            &w.vpc,
            "--eni",
            &w.web,
        ]));
        let kh = args.iter().position(|a| a == "--ssh-known-hosts").unwrap() + 1;
        let empty = dir.join("empty_known_hosts");
        std::fs::write(&empty, "").unwrap();
        args[kh] = empty.display().to_string();
        let input = "unknown collector host key (not in known_hosts)".to_string();
        let o = run_case(&lab, &input, &args, How::default());
        let line = assert_refused(
            &lab,
            &input,
            &o,
            &["does not trust a host on first use", "add this line"],
        );
        rows.push(Row {
            input,
            sentence: line,
            proof: REFUSED.into(),
        });
        let other = dir.join("other_key");
        common::sshd::keygen(&other);
        let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
        let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
        let wrong = dir.join("wrong_known_hosts");
        std::fs::write(
            &wrong,
            format!("[127.0.0.1]:{} {}\n", sshd.port, other_key.join(" ")),
        )
        .unwrap();
        args[kh] = wrong.display().to_string();
        let input = "wrong collector host key (known_hosts has another key)".to_string();
        let o = run_case(&lab, &input, &args, How::default());
        let line = assert_refused(&lab, &input, &o, &["does not match", "ssh-keygen -R"]);
        rows.push(Row {
            input,
            sentence: line,
            proof: REFUSED.into(),
        });
        drop(sshd);
    }

    // Wireshark 4.4.0: refused at capture, marked in the interface list; 4.4.1 is not.
    {
        let ws440 = fake_wireshark(lab.work.path(), "libwireshark.so.18.0.0");
        let ws441 = fake_wireshark(lab.work.path(), "libwireshark.so.18.0.1");
        let listing = |parent: &[String]| {
            let o = run(Command::new(&parent[0])
                .args(&parent[1..])
                .arg(bin())
                .args(["--extcap-interfaces", "--extcap-version=4.4"]));
            assert!(o.status.success());
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        let marked = listing(&ws440);
        assert!(
            marked.contains("interface {value=awsvpc}{control=3}{display=AWS VPC Traffic Mirroring (unsupported in Wireshark 4.4.0: upgrade Wireshark)}"),
            "{marked}"
        );
        let plain = listing(&ws441);
        assert!(
            plain.contains(
                "interface {value=awsvpc}{control=3}{display=AWS VPC Traffic Mirroring}\n"
            ),
            "{plain}"
        );
        let args = s(&["--collector", "local", "--listen-port", "70000"]);
        let input = "Wireshark 4.4.0 (ignores extcap options)".to_string();
        let o = run_case(
            &lab,
            &input,
            &args,
            How {
                parent: ws440,
                ..Default::default()
            },
        );
        let line = assert_refused(
            &lab,
            &input,
            &o,
            &["Wireshark 4.4.0 is not supported", "upgrade Wireshark"],
        );
        // Under 4.4.1 the same arguments reach the next check.
        let o = run_case(
            &lab,
            "Wireshark 4.4.1",
            &args,
            How {
                parent: ws441,
                ..Default::default()
            },
        );
        assert_refused(&lab, "Wireshark 4.4.1", &o, &["--listen-port must be"]);
        rows.push(Row {
            input,
            sentence: line,
            proof: format!("{REFUSED}; `--extcap-interfaces` under it lists the interface as \"AWS VPC Traffic Mirroring (unsupported in Wireshark 4.4.0: upgrade Wireshark)\"; under 4.4.1 neither happens"),
        });
    }

    // `awsvpc decap` of a file that is not a capture.
    {
        let input = "`awsvpc decap` of a file that is not a capture".to_string();
        let dir = lab.work.path().join("decap");
        std::fs::create_dir_all(&dir).unwrap();
        let notes = dir.join("notes.pcap");
        std::fs::write(&notes, "these are my notes, not packets\n").unwrap();
        let out = dir.join("clean.pcapng");
        let o = run(Command::new(bin())
            .arg("decap")
            .arg(&notes)
            .arg("-w")
            .arg(&out)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default()));
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("notes.pcap"), "{err}");
        rows.push(Row {
            input,
            sentence: err.trim_end().to_string(),
            proof: "exit 1; one stderr line naming the file".into(),
        });
    }

    // Covered by tests/ssh_collector.rs (it needs a user without python3 on the collector).
    rows.push(Row {
        input: "relay missing python3 on the collector".into(),
        sentence: "The collector 127.0.0.1 has no python3, which the relay needs; install it (sudo dnf install python3, or sudo apt install python3-minimal) or use an Amazon Linux 2023 or Ubuntu 22.04+ collector.".into(),
        proof: "`ssh_collector::nothing_listening_and_no_python3_are_explained`".into(),
    });

    let mut table =
        String::from("| # | input | the sentence the user sees | proof |\n|---|---|---|---|\n");
    for (i, r) in rows.iter().enumerate() {
        table.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            i + 1,
            r.input,
            r.sentence.replace('|', "\\|"),
            r.proof
        ));
    }
    eprintln!(
        "bad-input table: {} cases in {:.1} s\n{table}",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(rows.len() >= 25, "the issue asks for at least 25 cases");
}
