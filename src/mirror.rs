//! A capture's mirror in AWS, from start to teardown: credentials and caller identity, the
//! sweep of the caller's expired leftovers, the collector's ENI, provisioning with rollback,
//! and teardown. Everything created is in the run ledger and tagged before it is used.

use crate::aws::cleanup::{self, Selection};
use crate::aws::client::{self, Aws};
use crate::aws::discovery;
use crate::aws::launch::{self, LaunchRequest, Launched};
use crate::aws::ledger::{state_dir, Ledger};
use crate::aws::provision::{self, Exclusion, Request, Target};
use crate::aws::{tags, teardown};
use crate::config::CaptureConfig;
use crate::sources::KnownSource;
use crate::{log_info, log_msg};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// AWS's price of a mirror session-hour (US East example; regions differ slightly).
pub const SESSION_HOUR_USD: f64 = 0.015;

pub struct Mirror {
    /// The capture's one runtime (`client::capture_runtime`).
    rt: Arc<Runtime>,
    aws: Aws,
    /// Shared with the diagnosis thread, whose Reachability Analyzer paths are part of the
    /// run (`aws::reachability`); locked for a moment at a time, never across a request.
    ledger: Arc<Mutex<Ledger>>,
    run_id: String,
    pub sources: Vec<KnownSource>,
    pub sessions: Vec<String>,
    /// The collector instance launched for this capture (`--collector ephemeral`).
    pub collector: Option<Launched>,
    /// It was given a public IPv4 address (billed hourly).
    public_ip: bool,
    refresher: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    /// Its teardown ran (or was given up); dropping it does nothing more.
    torn_down: bool,
}

/// How often a running capture pushes its resources' `awsvpc:expires` tag forward, so that a
/// capture longer than the 12 h lifetime is never swept as a leftover by another start.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// Re-tags `ids` with a fresh expiry every `every` until `stop` is set, on the capture's
/// runtime `rt`.
fn refresh_expiry(
    rt: Arc<Runtime>,
    ec2: aws_sdk_ec2::Client,
    ids: Vec<String>,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let expires = tags::expires_after(tags::LIFETIME);
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key(tags::EXPIRES)
            .value(&expires)
            .build();
        let call = || {
            rt.block_on(
                ec2.create_tags()
                    .set_resources(Some(ids.clone()))
                    .tags(tag.clone())
                    .send(),
            )
            .map_err(|e| crate::aws::errors::explain("ec2:CreateTags", &e, None))
        };
        // Once more on failure: the first call may find a connection the capture's runtime
        // opened and left.
        let r = call().or_else(|_| call());
        match r {
            Ok(_) => log_info!("{} resources now expire at {expires}", ids.len()),
            // Not fatal: the cost is only that a sweep could end this capture's mirror early.
            Err(e) => log_msg!("could not extend the expiry tags: {e}"),
        }
    }
}

/// This instance's ENI and private IP, from instance metadata (IMDS): the primary MAC,
/// then that interface's id and address. No EC2 call is needed.
async fn local_eni() -> Result<(String, Option<String>), String> {
    let imds = aws_config::imds::Client::builder().build();
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "--collector local with --eni needs this machine's ENI from EC2 instance metadata, which is not reachable ({e}); run awsvpc on an EC2 instance in the mirrored VPC, or clear --eni to receive VXLAN that is already mirrored here."
        )
    };
    let get = |path: String| {
        let imds = imds.clone();
        async move {
            imds.get(path)
                .await
                .map(|v| String::from(v).trim().to_string())
        }
    };
    let mac = get("/latest/meta-data/mac".into())
        .await
        .map_err(|e| unreachable(&e))?;
    let base = format!("/latest/meta-data/network/interfaces/macs/{mac}");
    let eni = get(format!("{base}/interface-id"))
        .await
        .map_err(|e| unreachable(&e))?;
    if !eni.starts_with("eni-") {
        return Err(format!(
            "Instance metadata gave {eni:?} as this machine's ENI, which is not an ENI id."
        ));
    }
    let ip = get(format!("{base}/local-ipv4s"))
        .await
        .ok()
        .and_then(|v| v.lines().next().map(str::to_string));
    Ok((eni, ip))
}

/// Reject rules' subjects: the VXLAN to the collector at `ip`, and its transport
/// (`(protocol, port)`), so a mirrored ENI in their path does not mirror the capture.
fn exclusions(ip: Option<&str>, listen_port: u16, transport: Vec<(i32, u16)>) -> Vec<Exclusion> {
    ip.iter()
        .flat_map(|ip| {
            std::iter::once((17, listen_port))
                .chain(transport.iter().copied())
                .map(move |(protocol, port)| Exclusion {
                    cidr: format!("{ip}/32"),
                    protocol,
                    port: i32::from(port),
                })
        })
        .collect()
}

/// A security group is freed 30–90 s after its instance terminates, longer than Wireshark
/// waits for a capture to stop: a detached `awsvpc cleanup --run-id` (its own session, so
/// Wireshark's stop does not reach it; no stdio) waits for it and finishes the ledger.
fn finish_in_background(ledger: &Ledger, deferred: &[String]) {
    if deferred.is_empty() {
        return;
    }
    let run = &ledger.run_id;
    let mut c =
        std::process::Command::new(std::env::current_exe().unwrap_or_else(|_| "awsvpc".into()));
    c.args(["cleanup", "--run-id", run, "--region", &ledger.region]);
    if let Some(p) = &ledger.profile {
        c.args(["--profile", p]);
    }
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match crate::sys::spawn_detached(&mut c) {
        Ok(child) => log_msg!(
            "{} will be removed once the collector has terminated, by awsvpc cleanup --run-id {run} (pid {})",
            deferred.join(", "),
            child.id()
        ),
        Err(e) => log_msg!(
            "could not start awsvpc cleanup for {} ({e}); run awsvpc cleanup --run-id {run} in a minute",
            deferred.join(", ")
        ),
    }
}

impl Mirror {
    /// Provisions the mirror for `cfg`. On any failure, what was created is removed before
    /// the error is returned. With `launch`, the collector is an instance launched for the capture
    /// (`--collector ephemeral`); otherwise it is `--target-id`'s or this machine's ENI. Its
    /// AWS calls run on the capture's runtime `rt`.
    pub fn start(
        rt: Arc<Runtime>,
        cfg: &CaptureConfig,
        launch: Option<LaunchRequest>,
        stop: Arc<AtomicBool>,
        status: &dyn Fn(&str),
    ) -> Result<Mirror, String> {
        status("Connecting to AWS");
        let aws = rt.block_on(client::connect(
            cfg.profile.as_deref(),
            cfg.region.as_deref(),
        ))?;
        let arn = rt.block_on(aws.caller_arn())?;
        log_msg!("AWS caller {arn}, region {}", aws.region);
        if cfg.cleanup_expired {
            status("Removing your expired awsvpc leftovers");
            let sel = Selection {
                expired_only: true,
                created_by: Some(arn.clone()),
                ..Default::default()
            };
            match rt.block_on(cleanup::find(&aws, &sel)) {
                Ok(found) if !found.is_empty() => {
                    log_msg!(
                        "removing {} expired leftovers of earlier captures",
                        found.len()
                    );
                    let mut l = cleanup::ledger_of(&found, &aws.region);
                    let r = rt.block_on(teardown::teardown(
                        &aws,
                        &mut l,
                        teardown::DEADLINE,
                        teardown::Groups::Defer,
                    ));
                    if let Some(s) = r.sentence("(expired)") {
                        log_msg!("{s}");
                    }
                }
                Ok(_) => {}
                // A sweep that cannot run must not stop the capture; say so in the log.
                Err(e) => log_msg!("could not look for expired leftovers: {e}"),
            }
        }
        // The target: an existing one (a host collector; never deleted), this machine's ENI,
        // or (below, once the ledger exists) a launched collector's. Either way the
        // collector's address keeps its own traffic out of the mirror.
        let (target, collector_ip, transport_ports) = match (&launch, cfg.collector.target_id()) {
            (Some(_), _) => (None, None, vec![]),
            (None, Some(id)) => {
                status("Checking the mirror target");
                let t = rt.block_on(discovery::target_interface(&aws, id))?;
                if let Some(t) = &t {
                    let check = crate::aws::path_facts::warn_before(&aws, cfg, id, &t.eni, status);
                    rt.block_on(check);
                }
                let ip = t.and_then(|t| t.private_ip);
                log_info!(
                    "existing mirror target {id} ({})",
                    ip.as_deref().unwrap_or("no IP")
                );
                // Over SSH the tunnel comes from the collector too; over SSM it goes to AWS.
                let transport = cfg
                    .collector
                    .ssh_port()
                    .map(|p| (6, p))
                    .into_iter()
                    .collect();
                (Some(Target::Existing(id.to_string())), ip, transport)
            }
            (None, None) => {
                status("Finding this machine's ENI");
                let (eni, ip) = rt.block_on(local_eni())?;
                log_info!("collector ENI {eni} ({})", ip.as_deref().unwrap_or("no IP"));
                (Some(Target::Eni(eni)), ip, vec![])
            }
        };
        let run_id = tags::new_run_id();
        let mut ledger = Ledger::create(
            &state_dir(),
            &run_id,
            cfg.profile.as_deref(),
            &aws.region,
            &arn,
        )
        .map_err(|e| {
            format!(
                "Cannot write the run ledger in {}: {e}.",
                state_dir().display()
            )
        })?;
        log_msg!("run {run_id}: ledger {}", ledger.path().display());
        // Before the first create call: from here a killed awsvpc leaves nothing.
        crate::aws::guardian::start(&ledger, cfg.log_file.as_deref());
        let mut req = Request {
            enis: cfg.enis.clone(),
            vpc: cfg.vpc.clone(),
            snaplen: cfg.snaplen,
            session_number: cfg.session_number,
            vni: cfg.vni,
            amazon_dns: cfg.amazon_dns,
            exclusions: exclusions(collector_ip.as_deref(), cfg.listen_port, transport_ports),
            filter: cfg.filter.clone(),
        };
        let public_ip = launch.as_ref().is_some_and(|l| l.public_ip);
        let mut collector = None;
        let result = rt.block_on(async {
            let target = match (target, &launch) {
                (Some(t), _) => t,
                (None, Some(l)) => {
                    // Check the ENIs before launching anything; the collector goes into the
                    // first one's subnet.
                    status("Checking the ENIs to mirror");
                    let checked = provision::preflight(&aws, &req, None).await?;
                    let first = &checked.0[0];
                    let c = launch::launch(
                        &aws,
                        l,
                        &first.vpc,
                        &first.subnet,
                        &first.availability_zone,
                        &mut ledger,
                        &stop,
                        status,
                    )
                    .await?;
                    if checked.0.iter().any(|e| e.availability_zone != first.availability_zone) {
                        log_msg!("the ENIs are in several Availability Zones; the collector is in {}, so mirrored traffic from the others is billed as cross-AZ transfer", first.availability_zone);
                    }
                    req.exclusions = exclusions(
                        c.private_ip.as_deref(),
                        cfg.listen_port,
                        l.ssh.as_ref().map(|(port, _)| (6, *port)).into_iter().collect(),
                    );
                    let target = Target::Eni(c.eni.clone());
                    collector = Some(c);
                    return provision::provision_checked(
                        &aws, &req, checked, &target, &mut ledger, &stop, status,
                    )
                    .await;
                }
                (None, None) => unreachable!("a target or a launch"),
            };
            provision::provision(&aws, &req, &target, &mut ledger, &stop, status).await
        });
        match result {
            Ok(p) => {
                let ids: Vec<String> = ledger
                    .entries
                    .iter()
                    .filter(|e| !matches!(e.kind, crate::aws::ledger::Kind::FilterRule))
                    .filter_map(|e| e.id.clone())
                    .collect();
                let every = std::env::var("AWSVPC_TEST_REFRESH_SECS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(REFRESH_EVERY);
                let flag = Arc::new(AtomicBool::new(false));
                let (r, ec2, f) = (rt.clone(), aws.ec2.clone(), flag.clone());
                let refresher = std::thread::Builder::new()
                    .name("expiry".into())
                    .spawn(move || refresh_expiry(r, ec2, ids, every, f))
                    .ok()
                    .map(|t| (flag, t));
                Ok(Mirror {
                    rt,
                    aws,
                    run_id: ledger.run_id.clone(),
                    ledger: Arc::new(Mutex::new(ledger)),
                    sources: p.sources,
                    sessions: p.sessions,
                    collector,
                    public_ip,
                    refresher,
                    torn_down: false,
                })
            }
            Err(e) => {
                status("Provisioning failed; removing what was created");
                let report = rt.block_on(teardown::teardown(
                    &aws,
                    &mut ledger,
                    teardown::DEADLINE,
                    teardown::Groups::Defer,
                ));
                finish_in_background(&ledger, &report.deferred);
                crate::sys::guardian::done();
                Err(match report.sentence(&run_id) {
                    Some(left) => format!("{e} {left}"),
                    None => e,
                })
            }
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run's ledger, for what the diagnosis creates during the capture.
    pub fn ledger(&self) -> Arc<Mutex<Ledger>> {
        self.ledger.clone()
    }

    /// The capture's runtime, for the other AWS work of the capture.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    pub fn region(&self) -> &str {
        &self.aws.region
    }

    pub fn profile(&self) -> Option<&str> {
        self.aws.profile.as_deref()
    }

    /// What the mirror costs while it runs, for the status bar: the sessions, and the
    /// collector instance and its public address when awsvpc launched one (an instance
    /// type without a known price counts as nothing).
    pub fn cost_per_hour(&self) -> f64 {
        let instance = self
            .collector
            .as_ref()
            .and_then(|c| launch::hourly_usd(&c.instance_type))
            .unwrap_or(0.0);
        let address = if self.public_ip {
            launch::PUBLIC_IPV4_HOUR_USD
        } else {
            0.0
        };
        self.sessions.len() as f64 * SESSION_HOUR_USD + instance + address
    }

    /// Waits (bounded) for the launched collector to run: its private and public IPv4.
    /// `Ok(None)`: `stop` was set meanwhile.
    pub fn wait_collector(
        &self,
        limit: Duration,
        stop: &AtomicBool,
        status: &dyn Fn(&str),
    ) -> Result<Option<launch::Addresses>, String> {
        let Some(c) = &self.collector else {
            return Err("No collector instance was launched.".into());
        };
        self.rt.block_on(launch::wait_running(
            &self.aws,
            &c.instance_id,
            limit,
            stop,
            status,
        ))
    }

    /// Removes everything; `Err` names what could not be removed and how to finish.
    pub fn teardown(mut self) -> Result<(), String> {
        self.remove()
    }

    fn remove(&mut self) -> Result<(), String> {
        self.torn_down = true;
        if let Some((stop, t)) = self.refresher.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = t.join();
        }
        let mut ledger = crate::aws::ledger::lock(&self.ledger);
        let report = self.rt.block_on(teardown::teardown(
            &self.aws,
            &mut ledger,
            teardown::DEADLINE,
            teardown::Groups::Defer,
        ));
        finish_in_background(&ledger, &report.deferred);
        // What this teardown could not remove its sentence names; the guardian stands down.
        crate::sys::guardian::done();
        log_msg!(
            "teardown of run {}: removed {}",
            self.run_id,
            report.removed.join(", ")
        );
        match report.sentence(&self.run_id) {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }
}

/// The safety net under every plan: a mirror dropped without [`Mirror::teardown`] (a panic
/// in the capture, or a way out a plan forgot) is torn down here, so that no path out of a
/// capture leaves it billing in AWS.
impl Drop for Mirror {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        // Blocking on the runtime from inside it would panic; the guardian and `awsvpc
        // cleanup` still find the run (it is tagged and in the ledger).
        if tokio::runtime::Handle::try_current().is_ok() {
            log_msg!(
                "run {}: the mirror was dropped inside the runtime without its teardown; the guardian or awsvpc cleanup --run-id {} removes it",
                self.run_id,
                self.run_id
            );
            return;
        }
        log_msg!(
            "run {}: the mirror was dropped without its teardown; removing it now",
            self.run_id
        );
        if let Err(left) = self.remove() {
            log_msg!("{left}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ledger::Kind;
    use aws_sdk_ec2::operation::delete_traffic_mirror_session::DeleteTrafficMirrorSessionOutput;
    use aws_sdk_ec2::operation::describe_traffic_mirror_sessions::DescribeTrafficMirrorSessionsOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    /// A mirror of one session whose EC2 answers with `rules`.
    fn mirror(ec2: aws_sdk_ec2::Client) -> Mirror {
        let empty = Vec::<aws_smithy_mocks::Rule>::new();
        let mut ledger = Ledger::detached("run-drop", "eu-west-1");
        ledger.adopt(Kind::Session, "tms-0drop").unwrap();
        Mirror {
            rt: client::capture_runtime().unwrap(),
            aws: Aws {
                ec2,
                sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &empty),
                ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &empty),
                cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &empty),
                region: "eu-west-1".into(),
                profile: None,
            },
            ledger: Arc::new(Mutex::new(ledger)),
            run_id: "run-drop".into(),
            sources: Vec::new(),
            sessions: vec!["tms-0drop".into()],
            collector: None,
            public_ip: false,
            refresher: None,
            torn_down: false,
        }
    }

    #[test]
    fn a_mirror_dropped_without_teardown_removes_its_session_and_once_only() {
        let delete = mock!(aws_sdk_ec2::Client::delete_traffic_mirror_session)
            .match_requests(|r| r.traffic_mirror_session_id() == Some("tms-0drop"))
            .then_output(|| DeleteTrafficMirrorSessionOutput::builder().build());
        let gone = mock!(aws_sdk_ec2::Client::describe_traffic_mirror_sessions)
            .then_output(|| DescribeTrafficMirrorSessionsOutput::builder().build());
        let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&delete, &gone]);
        // A plan that forgot its teardown (or panicked): the drop removes the session.
        let m = mirror(ec2.clone());
        let ledger = m.ledger();
        drop(m);
        assert_eq!(delete.num_calls(), 1);
        assert!(crate::aws::ledger::lock(&ledger).pending().is_empty());
        // After an explicit teardown, the drop does nothing more.
        let m = mirror(ec2);
        m.teardown().unwrap();
        assert_eq!(delete.num_calls(), 2);
    }
}
