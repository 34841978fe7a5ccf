//! The AWS emulator lab the AWS system tests share: wb-mini and a fake instance-metadata
//! service inside a testbed's collector namespace, a seeded VPC, and Describe-based checks
//! of what awsvpc left (tests/aws_lifecycle.rs, tests/guardian.rs).

use super::*;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const EMULATOR_PORT: u16 = 5555;

/// The emulator: wb-mini (tests/emulator/wb-mini, winterbaume's EC2/STS/SSM on loopback),
/// the only one found that implements the whole traffic-mirror lifecycle with AWS's error
/// codes (tests/emulator/NOTES.md). moto lacks filter rules and target/filter deletion.
pub fn emulator() -> Option<Vec<String>> {
    let home = std::env::var("HOME").unwrap_or_default();
    ["wb-mini".to_string(), format!("{home}/.cargo/bin/wb-mini")]
        .into_iter()
        .find(|w| have(w) || Path::new(w).exists())
        .map(|w| {
            vec![
                w,
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                EMULATOR_PORT.to_string(),
            ]
        })
}

/// Whether the emulator and `tools` (and root) are there: in CI they must be.
pub fn ready(tools: &[&str]) -> bool {
    if emulator().is_none() {
        assert!(
            !must_run_system_tests(),
            "no AWS emulator installed; .ci/run installs one"
        );
        eprintln!("skipping: no AWS emulator installed");
        return false;
    }
    system_ready(tools, true)
}

/// Runs `f` on a thread inside network namespace `ns`; sockets it opens live there.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
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

pub fn ec2() -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{EMULATOR_PORT}"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub struct World {
    pub vpc: String,
    pub source_eni: String,
    pub collector_eni: String,
}

/// A VPC with a source instance (m5.large: can be mirrored) and a collector instance, each
/// with an ENI (the emulator gives instances none of their own, so ENIs are attached).
pub fn seed() -> World {
    rt().block_on(async {
        let c = ec2();
        // The emulator accepts connections before its services answer.
        for _ in 0..400 {
            if c.describe_regions().send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let vpc = c
            .create_vpc()
            .cidr_block("10.77.0.0/16")
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
            .cidr_block("10.77.1.0/24")
            .availability_zone("us-east-1a")
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_string();
        let mut enis = Vec::new();
        for (ty, name) in [
            (InstanceType::M5Large, "web-1"),
            (InstanceType::T3Micro, "collector"),
        ] {
            let r = c
                .run_instances()
                .image_id("ami-12c6146b")
                .instance_type(ty)
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnet)
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
            let eni = match r.instances()[0]
                .network_interfaces()
                .first()
                .and_then(|n| n.network_interface_id())
            {
                Some(e) => e.to_string(),
                None => {
                    let e = c
                        .create_network_interface()
                        .subnet_id(&subnet)
                        .send()
                        .await
                        .unwrap();
                    let id = e
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
            };
            enis.push(eni);
        }
        World {
            vpc,
            source_eni: enis[0].clone(),
            collector_eni: enis[1].clone(),
        }
    })
}

/// Every awsvpc-tagged traffic-mirror resource the emulator still has.
pub fn leftovers() -> Vec<String> {
    rt().block_on(async {
        let c = ec2();
        let managed = |t: &[Tag]| t.iter().any(|t| t.key() == Some("awsvpc:managed"));
        let mut left = Vec::new();
        for s in c
            .describe_traffic_mirror_sessions()
            .send()
            .await
            .unwrap()
            .traffic_mirror_sessions()
        {
            if managed(s.tags()) {
                left.push(s.traffic_mirror_session_id().unwrap_or("").to_string());
            }
        }
        for f in c
            .describe_traffic_mirror_filters()
            .send()
            .await
            .unwrap()
            .traffic_mirror_filters()
        {
            if managed(f.tags()) {
                left.push(f.traffic_mirror_filter_id().unwrap_or("").to_string());
            }
        }
        for t in c
            .describe_traffic_mirror_targets()
            .send()
            .await
            .unwrap()
            .traffic_mirror_targets()
        {
            if managed(t.tags()) {
                left.push(t.traffic_mirror_target_id().unwrap_or("").to_string());
            }
        }
        for i in c
            .describe_instances()
            .send()
            .await
            .unwrap()
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
        {
            let live = i
                .state()
                .and_then(|s| s.name())
                .is_some_and(|n| n.as_str() != "terminated");
            if managed(i.tags()) && live {
                left.push(i.instance_id().unwrap_or("").to_string());
            }
        }
        for g in c
            .describe_security_groups()
            .send()
            .await
            .unwrap()
            .security_groups()
        {
            if managed(g.tags()) {
                left.push(g.group_id().unwrap_or("").to_string());
            }
        }
        left
    })
}

pub struct Killer(pub Vec<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn aws_env(cmd: &mut Command, imds_port: u16, state: &Path) {
    cmd.env(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{EMULATOR_PORT}"),
    )
    .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
    .env("AWS_SECRET_ACCESS_KEY", "secret")
    .env("AWS_REGION", "us-east-1")
    .env("AWS_MAX_ATTEMPTS", "1")
    .env(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        format!("http://127.0.0.1:{imds_port}"),
    )
    .env("AWSVPC_STATE_DIR", state)
    .env_remove("AWS_PROFILE");
}

/// The emulator and a fake IMDS inside a testbed's collector namespace, with a seeded world.
pub struct Lab {
    pub tb: Testbed,
    pub col: String,
    pub work: tempfile::TempDir,
    pub procs: Killer,
    pub world: World,
    pub imds_port: u16,
}

impl Lab {
    pub fn start(name: &str) -> Lab {
        let emu = emulator().expect("checked by the caller");
        let prefix = format!("{name}{}", std::process::id() % 100_000);
        let tb = Testbed::up(&prefix);
        let col = format!("{prefix}-col");
        let work = tempfile::tempdir().unwrap();
        let mut procs = Killer(Vec::new());

        let mut e = Command::new("ip");
        e.args(["netns", "exec", &col])
            .args(&emu)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("emulator.log")).unwrap());
        procs.0.push(e.spawn().unwrap());
        let world = in_netns(&col, seed);

        let port_file = work.path().join("imds.port");
        let mut imds = Command::new("ip");
        imds.args(["netns", "exec", &col, "python3"])
            .arg(repo().join("tests/emulator/fake_imds.py"))
            .arg(&port_file)
            .args(["02:00:00:00:c0:11", &world.collector_eni, "10.77.1.10"]);
        procs.0.push(imds.spawn().unwrap());
        let imds_port: u16 = wait_for(Duration::from_secs(20), "fake IMDS", || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        });
        Lab {
            tb,
            col,
            work,
            procs,
            world,
            imds_port,
        }
    }
}

/// A mirror target the user made (untagged): awsvpc may use it, never delete it.
pub fn untagged_target(col: &str, eni: &str) -> String {
    let eni = eni.to_string();
    in_netns(col, move || {
        rt().block_on(async move {
            ec2()
                .create_traffic_mirror_target()
                .network_interface_id(eni)
                .send()
                .await
                .unwrap()
                .traffic_mirror_target()
                .unwrap()
                .traffic_mirror_target_id()
                .unwrap()
                .to_string()
        })
    })
}

pub fn target_exists(col: &str, id: &str) -> bool {
    let id = id.to_string();
    in_netns(col, move || {
        rt().block_on(async move {
            ec2()
                .describe_traffic_mirror_targets()
                .send()
                .await
                .unwrap()
                .traffic_mirror_targets()
                .iter()
                .any(|x| x.traffic_mirror_target_id() == Some(id.as_str()))
        })
    })
}

/// The public SSM parameter of the latest Amazon Linux 2023 AMI, which AWS has and the
/// emulator does not.
pub fn seed_al2023(col: &str) {
    in_netns(col, || {
        rt().block_on(async {
            let conf = aws_sdk_ssm::Config::builder()
                .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
                .region(aws_sdk_ssm::config::Region::new("us-east-1"))
                .endpoint_url(format!("http://127.0.0.1:{EMULATOR_PORT}"))
                .credentials_provider(aws_sdk_ssm::config::Credentials::new(
                    "AKIDTEST", "secret", None, None, "test",
                ))
                .build();
            aws_sdk_ssm::Client::from_conf(conf)
                .put_parameter()
                .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
                .value("ami-0a1b2c3d4e5f60718")
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send()
                .await
                .unwrap();
        })
    });
}

/// The leak matrix's rows: each collector mode, the awsvpc arguments that run it in the
/// lab (`host`: `sshd`'s, with the user's own target `existing`), and the provisioning
/// steps a capture can be stopped after (`AWSVPC_TEST_HOLD_AFTER`). The ephemeral
/// "instance" never boots here: the stop always comes before SSH.
#[allow(dead_code)] // not every test binary runs the matrix
pub fn leak_matrix_modes(
    sshd: &super::sshd::Sshd,
    existing: &str,
) -> Vec<(&'static str, Vec<String>, &'static [&'static str])> {
    let mut host = sshd.args();
    host.extend(["--target-id".into(), existing.to_string()]);
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "local",
            strings(&["--collector", "local"]),
            &["target", "filter", "rule", "session"],
        ),
        ("host", host, &["filter", "rule", "session"]),
        (
            "ephemeral",
            strings(&[
                "--collector",
                "ephemeral",
                "--ssh-host",
                "127.0.0.1",
                "--ssh-allow",
                "198.51.100.7/32",
            ]),
            &[
                "security-group",
                "instance",
                "target",
                "filter",
                "rule",
                "session",
            ],
        ),
    ]
}

/// Session Manager inside the lab: the tests' gateway-and-agent peer in namespace `col`
/// (forwarding to `port` on its loopback, or to the port a session's URL names), and the
/// emulator's StartSession answering with it.
#[allow(dead_code)] // not every test binary uses Session Manager
pub fn session_manager_in(col: &str, port: u16) -> super::ssm_peer::Peer {
    use super::ssm_peer::{Faults, Peer, TOKEN};
    let peer = in_netns(col, move || {
        Peer::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Faults::default(),
            Duration::from_secs(60),
        )
    });
    let body = serde_json::json!({"stream_url": peer.url, "token": TOKEN}).to_string();
    in_netns(col, move || http(EMULATOR_PORT, "POST", "/_ssm", &body));
    peer
}

/// Plays the SSM agent for Run Command: waits for the command awsvpc sent (its JSON:
/// id, instances, commands), lets `before` see it, runs it as the agent would (root, the
/// system's python3, not this machine's pyenv under /root) in namespace `run_in`, and
/// reports it done.
#[allow(dead_code)]
pub fn play_run_command(
    col: &str,
    run_in: &str,
    log: &Path,
    before: impl FnOnce(&str),
) -> serde_json::Value {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let col2 = col.to_string();
    let sent: serde_json::Value = wait_for(Duration::from_secs(60), "Run Command", || {
        assert!(!log_text().contains("fatal:"), "{}", log_text());
        let c = col2.clone();
        let list: serde_json::Value = serde_json::from_str(&in_netns(&c, || {
            http(EMULATOR_PORT, "GET", "/_ssm/commands", "")
        }))
        .unwrap();
        list.as_array().and_then(|a| a.first().cloned())
    });
    let command = sent["commands"][0].as_str().unwrap().to_string();
    before(&command);
    let o = run(Command::new("ip")
        .args(["netns", "exec", run_in, "sh", "-c", &command])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let done = serde_json::json!({"id": sent["id"], "status": "Success"}).to_string();
    in_netns(col, move || {
        http(EMULATOR_PORT, "POST", "/_ssm/done", &done)
    });
    sent
}

/// An ENI's private address and subnet.
#[allow(dead_code)]
pub async fn eni_facts(c: &aws_sdk_ec2::Client, eni: &str) -> (String, String) {
    let n = c
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .unwrap();
    let n = n
        .network_interfaces()
        .iter()
        .find(|n| n.network_interface_id() == Some(eni))
        .unwrap();
    (
        n.private_ip_address().unwrap().to_string(),
        n.subnet_id().unwrap().to_string(),
    )
}
