//! Fault injection with the SDK's own aws-smithy-mocks: a small stateful fake of the EC2
//! traffic-mirror API (in the mock interceptor, no HTTP), failing at every provisioning step
//! in turn. After each failure the rollback must leave nothing behind; throttling and in-use
//! errors during teardown are waited out; bad requests are refused before anything exists.
#![cfg(feature = "aws")]

use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::{
    authorize_security_group_ingress::*, create_security_group::*, create_traffic_mirror_filter::*,
    create_traffic_mirror_filter_rule::*, create_traffic_mirror_session::*,
    create_traffic_mirror_target::*, delete_security_group::*, delete_traffic_mirror_filter::*,
    delete_traffic_mirror_filter_rule::*, delete_traffic_mirror_session::*,
    delete_traffic_mirror_target::*, describe_instances::*, describe_network_interfaces::*,
    describe_traffic_mirror_sessions::*, describe_vpcs::*, run_instances::*,
    terminate_instances::*,
};
use aws_sdk_ec2::types::*;
use aws_smithy_mocks::{mock, mock_client, MockResponse, Rule, RuleMode};
use awsvpc::aws::client::Aws;
use awsvpc::aws::launch::{launch, LaunchRequest};
use awsvpc::aws::ledger::Ledger;
use awsvpc::aws::provision::{preflight, provision, provision_checked, Request, Target};
use awsvpc::aws::teardown::{teardown, Groups, Report};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    next: u32,
    targets: Vec<String>,
    filters: Vec<String>,
    rules: Vec<String>,
    /// id → (eni, session number)
    sessions: HashMap<String, (String, i32)>,
    /// Calls per operation, to inject faults by position.
    calls: HashMap<&'static str, usize>,
    /// Fail the nth call (1-based) of an operation with this code.
    fail: Option<(&'static str, usize, &'static str)>,
    /// Answer this many calls of an operation with a throttling error first.
    throttle: HashMap<&'static str, usize>,
    /// Sessions stay listed this many describes after deletion (AWS is eventually consistent).
    linger: usize,
    deleted_sessions: Vec<(String, usize)>,
    creates: usize,
    groups: Vec<String>,
    /// Launched instances: id → security group, while not terminated.
    instances: HashMap<String, String>,
    /// Terminated instances keep their group for this many DeleteSecurityGroup calls
    /// (EC2 frees it 30–90 s after TerminateInstances).
    terminating: HashMap<String, (String, usize)>,
    /// How many calls a terminated instance holds its group.
    hold_group: usize,
    /// What RunInstances was asked for: image, type, launch template, instance profile.
    launched: Vec<(String, String, Option<String>, Option<String>)>,
}

type Shared = Arc<Mutex<State>>;

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{:08x}", self.next)
    }

    /// Counts the call and returns the error code to answer with, if any.
    fn fault(&mut self, op: &'static str) -> Option<&'static str> {
        let n = {
            let c = self.calls.entry(op).or_insert(0);
            *c += 1;
            *c
        };
        if let Some(left) = self.throttle.get_mut(op) {
            if *left > 0 {
                *left -= 1;
                return Some("RequestLimitExceeded");
            }
        }
        match self.fail {
            Some((o, k, code)) if o == op && k == n => Some(code),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        self.targets.is_empty()
            && self.filters.is_empty()
            && self.rules.is_empty()
            && self.sessions.is_empty()
            && self.groups.is_empty()
            && self.instances.is_empty()
    }
}

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(format!("injected {code}"))
        .build()
}

const SOURCES: [(&str, &str, InstanceType); 3] = [
    ("eni-0000000000000a001", "i-a001", InstanceType::M5Large),
    ("eni-0000000000000a002", "i-a002", InstanceType::T3Micro),
    ("eni-0000000000000c6c6", "i-c6c6", InstanceType::C6iLarge),
];

fn fake_ec2(state: Shared) -> aws_sdk_ec2::Client {
    let s = state.clone();
    let enis =
        mock!(aws_sdk_ec2::Client::describe_network_interfaces).then_compute_response(move |req| {
            let _ = &s;
            let wanted = req.network_interface_ids();
            let mut out = DescribeNetworkInterfacesOutput::builder();
            for (eni, inst, _) in SOURCES {
                if wanted.is_empty() || wanted.iter().any(|w| w == eni) {
                    let vpc = if eni.ends_with("a002") {
                        "vpc-other"
                    } else {
                        "vpc-1"
                    };
                    out = out.network_interfaces(
                        NetworkInterface::builder()
                            .network_interface_id(eni)
                            .vpc_id(vpc)
                            .mac_address(format!("02:00:00:00:{}:{}", &eni[17..19], &eni[19..21]))
                            .interface_type(NetworkInterfaceType::Interface)
                            .attachment(
                                NetworkInterfaceAttachment::builder()
                                    .instance_id(inst)
                                    .build(),
                            )
                            .build(),
                    );
                }
            }
            MockResponse::Output(out.build())
        });
    let s = state.clone();
    let instances =
        mock!(aws_sdk_ec2::Client::describe_instances).then_compute_response(move |req| {
            let st = s.lock().unwrap();
            let mut r = Reservation::builder();
            for (_, inst, ty) in SOURCES {
                if req.instance_ids().iter().any(|i| i == inst) {
                    r = r.instances(
                        Instance::builder()
                            .instance_id(inst)
                            .instance_type(ty)
                            .build(),
                    );
                }
            }
            // Launched collectors: running, with their primary ENI.
            for id in st.instances.keys() {
                if req.instance_ids().iter().any(|i| i == id) {
                    r = r.instances(
                        Instance::builder()
                            .instance_id(id)
                            .state(
                                InstanceState::builder()
                                    .name(InstanceStateName::Running)
                                    .build(),
                            )
                            .private_ip_address("10.0.1.5")
                            .network_interfaces(
                                InstanceNetworkInterface::builder()
                                    .network_interface_id(format!("eni-{}", &id[2..]))
                                    .attachment(
                                        InstanceNetworkInterfaceAttachment::builder()
                                            .device_index(0)
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    );
                }
            }
            MockResponse::Output(
                DescribeInstancesOutput::builder()
                    .reservations(r.build())
                    .build(),
            )
        });
    let s = state.clone();
    let describe_sessions = mock!(aws_sdk_ec2::Client::describe_traffic_mirror_sessions)
        .then_compute_response(move |req| {
            let mut st = s.lock().unwrap();
            let mut out = DescribeTrafficMirrorSessionsOutput::builder();
            let eni_filter: Vec<String> = req
                .filters()
                .iter()
                .filter(|f| f.name() == Some("network-interface-id"))
                .flat_map(|f| f.values().to_vec())
                .collect();
            let ids = req.traffic_mirror_session_ids().to_vec();
            let mut listed: Vec<(String, String, i32)> = st
                .sessions
                .iter()
                .map(|(id, (eni, n))| (id.clone(), eni.clone(), *n))
                .collect();
            // Recently deleted sessions linger for a few describes.
            for (id, left) in st.deleted_sessions.iter_mut() {
                if *left > 0 {
                    *left -= 1;
                    listed.push((id.clone(), "eni-gone".into(), 0));
                }
            }
            for (id, eni, n) in listed {
                if (eni_filter.is_empty() || eni_filter.contains(&eni))
                    && (ids.is_empty() || ids.contains(&id))
                {
                    out = out.traffic_mirror_sessions(
                        TrafficMirrorSession::builder()
                            .traffic_mirror_session_id(id)
                            .network_interface_id(eni)
                            .session_number(n)
                            .build(),
                    );
                }
            }
            MockResponse::Output(out.build())
        });

    macro_rules! create {
        ($op:ident, $name:literal, $err:ident, $body:expr) => {{
            let s = state.clone();
            mock!(aws_sdk_ec2::Client::$op).then_compute_response(move |req| {
                let mut st = s.lock().unwrap();
                if let Some(code) = st.fault($name) {
                    return MockResponse::Error($err::generic(meta(code)));
                }
                st.creates += 1;
                #[allow(clippy::redundant_closure_call)]
                MockResponse::Output(($body)(&mut *st, req))
            })
        }};
    }
    let create_target = create!(
        create_traffic_mirror_target,
        "CreateTrafficMirrorTarget",
        CreateTrafficMirrorTargetError,
        |st: &mut State, _req: &CreateTrafficMirrorTargetInput| {
            let id = st.id("tmt");
            st.targets.push(id.clone());
            CreateTrafficMirrorTargetOutput::builder()
                .traffic_mirror_target(
                    TrafficMirrorTarget::builder()
                        .traffic_mirror_target_id(id)
                        .build(),
                )
                .build()
        }
    );
    let create_filter = create!(
        create_traffic_mirror_filter,
        "CreateTrafficMirrorFilter",
        CreateTrafficMirrorFilterError,
        |st: &mut State, _req: &CreateTrafficMirrorFilterInput| {
            let id = st.id("tmf");
            st.filters.push(id.clone());
            CreateTrafficMirrorFilterOutput::builder()
                .traffic_mirror_filter(
                    TrafficMirrorFilter::builder()
                        .traffic_mirror_filter_id(id)
                        .build(),
                )
                .build()
        }
    );
    let create_rule = create!(
        create_traffic_mirror_filter_rule,
        "CreateTrafficMirrorFilterRule",
        CreateTrafficMirrorFilterRuleError,
        |st: &mut State, _req: &CreateTrafficMirrorFilterRuleInput| {
            let id = st.id("tmfr");
            st.rules.push(id.clone());
            CreateTrafficMirrorFilterRuleOutput::builder()
                .traffic_mirror_filter_rule(
                    TrafficMirrorFilterRule::builder()
                        .traffic_mirror_filter_rule_id(id)
                        .build(),
                )
                .build()
        }
    );
    let create_session = create!(
        create_traffic_mirror_session,
        "CreateTrafficMirrorSession",
        CreateTrafficMirrorSessionError,
        |st: &mut State, req: &CreateTrafficMirrorSessionInput| {
            let id = st.id("tms");
            st.sessions.insert(
                id.clone(),
                (
                    req.network_interface_id().unwrap_or("").to_string(),
                    req.session_number().unwrap_or(0),
                ),
            );
            CreateTrafficMirrorSessionOutput::builder()
                .traffic_mirror_session(
                    TrafficMirrorSession::builder()
                        .traffic_mirror_session_id(id)
                        .build(),
                )
                .build()
        }
    );

    let create_group = create!(
        create_security_group,
        "CreateSecurityGroup",
        CreateSecurityGroupError,
        |st: &mut State, _req: &CreateSecurityGroupInput| {
            let id = st.id("sg");
            st.groups.push(id.clone());
            CreateSecurityGroupOutput::builder().group_id(id).build()
        }
    );
    let s = state.clone();
    let authorize = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .then_compute_response(move |_req| {
            match s.lock().unwrap().fault("AuthorizeSecurityGroupIngress") {
                Some(code) => {
                    MockResponse::Error(AuthorizeSecurityGroupIngressError::generic(meta(code)))
                }
                None => MockResponse::Output(
                    AuthorizeSecurityGroupIngressOutput::builder()
                        .r#return(true)
                        .build(),
                ),
            }
        });
    let run_instance = create!(
        run_instances,
        "RunInstances",
        RunInstancesError,
        |st: &mut State, req: &RunInstancesInput| {
            let id = st.id("i");
            let group = req
                .network_interfaces()
                .first()
                .and_then(|n| n.groups().first().cloned())
                .unwrap_or_default();
            st.instances.insert(id.clone(), group);
            st.launched.push((
                req.image_id().unwrap_or("").to_string(),
                req.instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                req.launch_template()
                    .and_then(|t| t.launch_template_id())
                    .map(str::to_string),
                req.iam_instance_profile()
                    .and_then(|p| p.name())
                    .map(str::to_string),
            ));
            RunInstancesOutput::builder()
                .instances(Instance::builder().instance_id(id).build())
                .build()
        }
    );
    // One launch template, by id or name: an AMI, a type and an instance profile.
    let templates = mock!(aws_sdk_ec2::Client::describe_launch_template_versions)
        .then_compute_response(|req| {
            use aws_sdk_ec2::operation::describe_launch_template_versions::*;
            let ours = req.launch_template_id() == Some("lt-0c011ec70b")
                || req.launch_template_name() == Some("awsvpc-collector");
            if !ours {
                return MockResponse::Error(DescribeLaunchTemplateVersionsError::generic(meta(
                    "InvalidLaunchTemplateName.NotFoundException",
                )));
            }
            MockResponse::Output(
                DescribeLaunchTemplateVersionsOutput::builder()
                    .launch_template_versions(
                        LaunchTemplateVersion::builder()
                            .launch_template_id("lt-0c011ec70b")
                            .default_version(true)
                            .launch_template_data(
                                ResponseLaunchTemplateData::builder()
                                    .image_id("ami-0template")
                                    .instance_type(InstanceType::T3Small)
                                    .iam_instance_profile(
                                        LaunchTemplateIamInstanceProfileSpecification::builder()
                                            .name("awsvpc-collector-ssm")
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
        });
    let vpcs = mock!(aws_sdk_ec2::Client::describe_vpcs).then_output(|| {
        DescribeVpcsOutput::builder()
            .vpcs(
                Vpc::builder()
                    .vpc_id("vpc-1")
                    .cidr_block("10.0.0.0/16")
                    .build(),
            )
            .build()
    });

    macro_rules! delete {
        ($op:ident, $name:literal, $err:ident, $out:ident, $body:expr) => {{
            let s = state.clone();
            mock!(aws_sdk_ec2::Client::$op).then_compute_response(move |req| {
                let mut st = s.lock().unwrap();
                if let Some(code) = st.fault($name) {
                    return MockResponse::Error($err::generic(meta(code)));
                }
                #[allow(clippy::redundant_closure_call)]
                match ($body)(&mut *st, req) {
                    Ok(()) => MockResponse::Output($out::builder().build()),
                    Err(code) => MockResponse::Error($err::generic(meta(code))),
                }
            })
        }};
    }
    let delete_session = delete!(
        delete_traffic_mirror_session,
        "DeleteTrafficMirrorSession",
        DeleteTrafficMirrorSessionError,
        DeleteTrafficMirrorSessionOutput,
        |st: &mut State, req: &DeleteTrafficMirrorSessionInput| {
            let id = req.traffic_mirror_session_id().unwrap_or("").to_string();
            match st.sessions.remove(&id) {
                Some(_) => {
                    let linger = st.linger;
                    st.deleted_sessions.push((id, linger));
                    Ok(())
                }
                None => Err("InvalidTrafficMirrorSessionId.NotFound"),
            }
        }
    );
    let delete_rule = delete!(
        delete_traffic_mirror_filter_rule,
        "DeleteTrafficMirrorFilterRule",
        DeleteTrafficMirrorFilterRuleError,
        DeleteTrafficMirrorFilterRuleOutput,
        |st: &mut State, req: &DeleteTrafficMirrorFilterRuleInput| {
            let id = req.traffic_mirror_filter_rule_id().unwrap_or("");
            let before = st.rules.len();
            st.rules.retain(|r| r != id);
            if st.rules.len() < before {
                Ok(())
            } else {
                Err("InvalidTrafficMirrorFilterRuleId.NotFound")
            }
        }
    );
    let delete_filter = delete!(
        delete_traffic_mirror_filter,
        "DeleteTrafficMirrorFilter",
        DeleteTrafficMirrorFilterError,
        DeleteTrafficMirrorFilterOutput,
        |st: &mut State, req: &DeleteTrafficMirrorFilterInput| {
            if !st.sessions.is_empty() || st.deleted_sessions.iter().any(|(_, l)| *l > 0) {
                return Err("TrafficMirrorFilterInUse");
            }
            let id = req.traffic_mirror_filter_id().unwrap_or("");
            let before = st.filters.len();
            st.filters.retain(|f| f != id);
            if st.filters.len() < before {
                Ok(())
            } else {
                Err("InvalidTrafficMirrorFilterId.NotFound")
            }
        }
    );
    let delete_target = delete!(
        delete_traffic_mirror_target,
        "DeleteTrafficMirrorTarget",
        DeleteTrafficMirrorTargetError,
        DeleteTrafficMirrorTargetOutput,
        |st: &mut State, req: &DeleteTrafficMirrorTargetInput| {
            if !st.sessions.is_empty() {
                return Err("TrafficMirrorTargetInUseException");
            }
            let id = req.traffic_mirror_target_id().unwrap_or("");
            let before = st.targets.len();
            st.targets.retain(|t| t != id);
            if st.targets.len() < before {
                Ok(())
            } else {
                Err("InvalidTrafficMirrorTargetId.NotFound")
            }
        }
    );
    let terminate = delete!(
        terminate_instances,
        "TerminateInstances",
        TerminateInstancesError,
        TerminateInstancesOutput,
        |st: &mut State, req: &TerminateInstancesInput| {
            // Idempotent, as in EC2.
            for id in req.instance_ids() {
                if let Some(group) = st.instances.remove(id) {
                    let hold = st.hold_group;
                    st.terminating.insert(id.clone(), (group, hold));
                }
            }
            Ok(())
        }
    );
    let delete_group = delete!(
        delete_security_group,
        "DeleteSecurityGroup",
        DeleteSecurityGroupError,
        DeleteSecurityGroupOutput,
        |st: &mut State, req: &DeleteSecurityGroupInput| {
            let id = req.group_id().unwrap_or("").to_string();
            let held = st.instances.values().any(|g| *g == id)
                || st
                    .terminating
                    .values()
                    .any(|(g, left)| *g == id && *left > 0);
            for (_, left) in st.terminating.values_mut() {
                *left = left.saturating_sub(1);
            }
            if held {
                return Err("DependencyViolation");
            }
            let before = st.groups.len();
            st.groups.retain(|g| *g != id);
            if st.groups.len() < before {
                Ok(())
            } else {
                Err("InvalidGroup.NotFound")
            }
        }
    );
    let rules: Vec<Rule> = vec![
        templates,
        create_group,
        authorize,
        run_instance,
        vpcs,
        terminate,
        delete_group,
        enis,
        instances,
        describe_sessions,
        create_target,
        create_filter,
        create_rule,
        create_session,
        delete_session,
        delete_rule,
        delete_filter,
        delete_target,
    ];
    // Retries are ours to test (teardown's own loop), not the SDK's.
    mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &rules, |c| c
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled()))
}

/// The public parameter of the latest Amazon Linux 2023 AMI.
fn fake_ssm() -> aws_sdk_ssm::Client {
    use aws_sdk_ssm::operation::get_parameter::GetParameterOutput;
    let ami = mock!(aws_sdk_ssm::Client::get_parameter)
        .match_requests(|r| {
            r.name() == Some("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
        })
        .then_output(|| {
            GetParameterOutput::builder()
                .parameter(
                    aws_sdk_ssm::types::Parameter::builder()
                        .value("ami-0a2023")
                        .build(),
                )
                .build()
        });
    mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &[&ami])
}

fn aws_with(state: Shared) -> Aws {
    Aws {
        ec2: fake_ec2(state),
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &Vec::<Rule>::new()),
        ssm: fake_ssm(),
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &Vec::<Rule>::new()),
        region: "eu-west-1".into(),
        profile: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The run's ledger, in `dir`.
fn test_ledger(dir: &std::path::Path) -> Ledger {
    Ledger::create(
        dir,
        "20261122120000-test",
        None,
        "eu-west-1",
        "arn:aws:iam::1:user/t",
    )
    .unwrap()
}

fn request(enis: &[&str]) -> Request {
    Request {
        enis: enis.iter().map(|s| s.to_string()).collect(),
        vpc: Some("vpc-1".into()),
        ..Default::default()
    }
}

fn run(state: &Shared, req: &Request) -> (Result<Vec<String>, String>, bool) {
    let aws = aws_with(state.clone());
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut ledger = test_ledger(dir.path());
        let stop = AtomicBool::new(false);
        let r = provision(
            &aws,
            req,
            &Target::Eni("eni-0000000000000c011".into()),
            &mut ledger,
            &stop,
            &|_| {},
        )
        .await;
        let report = teardown(&aws, &mut ledger, Duration::from_secs(20), Groups::Wait).await;
        let ledger_gone = Ledger::all_in(dir.path()).is_empty();
        (
            r.map(|p| p.sessions)
                .inspect_err(|_| assert!(report.left.is_empty(), "{:?}", report.left)),
            ledger_gone,
        )
    })
}

#[test]
fn happy_path_creates_then_removes_everything() {
    let state = Shared::default();
    let (r, ledger_gone) = run(&state, &request(&["eni-0000000000000a001"]));
    assert_eq!(r.unwrap().len(), 1);
    let st = state.lock().unwrap();
    assert_eq!(
        st.creates,
        1 + 1 + 4 + 1,
        "target, filter, 4 rules, 1 session"
    );
    assert!(st.is_empty(), "teardown removed everything");
    assert!(ledger_gone);
}

/// A failure at every provisioning step leaves nothing behind.
#[test]
fn failure_at_every_step_rolls_back() {
    let steps: Vec<(&'static str, usize)> = vec![
        ("CreateTrafficMirrorTarget", 1),
        ("CreateTrafficMirrorFilter", 1),
        ("CreateTrafficMirrorFilterRule", 1),
        ("CreateTrafficMirrorFilterRule", 3),
        ("CreateTrafficMirrorFilterRule", 4),
        ("CreateTrafficMirrorSession", 1),
    ];
    for (op, nth) in steps {
        for code in ["UnauthorizedOperation", "InternalError"] {
            let state = Shared::default();
            state.lock().unwrap().fail = Some((op, nth, code));
            let (r, ledger_gone) = run(&state, &request(&["eni-0000000000000a001"]));
            let err = r.expect_err("the injected failure must surface");
            assert!(err.contains(op), "{op}#{nth}: {err}");
            if code == "UnauthorizedOperation" {
                assert!(
                    err.starts_with("Permission missing: AWS denied ec2:"),
                    "{err}"
                );
            }
            let st = state.lock().unwrap();
            assert!(
                st.is_empty(),
                "{op}#{nth} {code}: left {:?} {:?} {:?} {:?}",
                st.targets,
                st.filters,
                st.rules,
                st.sessions
            );
            assert!(ledger_gone, "{op}#{nth}: ledger finished");
        }
    }
}

#[test]
fn throttling_and_in_use_are_waited_out_during_teardown() {
    let state = Shared::default();
    {
        let mut st = state.lock().unwrap();
        st.throttle.insert("DeleteTrafficMirrorSession", 2);
        st.throttle.insert("DeleteTrafficMirrorFilter", 1);
        st.linger = 3;
    }
    let (r, ledger_gone) = run(&state, &request(&["eni-0000000000000a001"]));
    assert!(r.is_ok());
    let st = state.lock().unwrap();
    assert!(st.is_empty());
    assert!(ledger_gone);
    assert!(
        st.calls["DeleteTrafficMirrorSession"] >= 3,
        "throttled calls retried"
    );
}

#[test]
fn bad_requests_are_refused_before_anything_is_created() {
    for (enis, needle) in [
        (
            &["eni-0000000000000c6c6"][..],
            "cannot be mirrored: AWS does not support traffic mirroring from c6i",
        ),
        (
            &["eni-0000000000000a002"][..],
            "is in vpc-other, not in the chosen VPC vpc-1",
        ),
        (
            &["eni-00000000000000bad"][..],
            "not found in region eu-west-1",
        ),
        (&["eni-0000000000000c011"][..], "not found in region"),
    ] {
        let state = Shared::default();
        let (r, _) = run(&state, &request(enis));
        let err = r.unwrap_err();
        assert!(err.contains(needle), "{enis:?}: {err}");
        assert_eq!(
            state.lock().unwrap().creates,
            0,
            "{enis:?}: nothing created"
        );
    }
}

#[test]
fn an_eni_with_three_sessions_is_refused_and_a_free_number_is_chosen() {
    let state = Shared::default();
    {
        let mut st = state.lock().unwrap();
        for (i, n) in [1, 2, 32_766].iter().enumerate() {
            st.sessions
                .insert(format!("tms-ids{i}"), ("eni-0000000000000a001".into(), *n));
        }
    }
    let (r, _) = run(&state, &request(&["eni-0000000000000a001"]));
    let err = r.unwrap_err();
    assert!(err.contains("already has 3 mirror sessions"), "{err}");
    assert_eq!(state.lock().unwrap().creates, 0);
    // With two production sessions, ours takes the lowest priority that is free.
    let state = Shared::default();
    {
        let mut st = state.lock().unwrap();
        st.sessions
            .insert("tms-ids0".into(), ("eni-0000000000000a001".into(), 1));
        st.sessions
            .insert("tms-ids1".into(), ("eni-0000000000000a001".into(), 32_766));
    }
    let aws = aws_with(state.clone());
    let rt = runtime();
    let (_, numbers) = rt
        .block_on(awsvpc::aws::provision::preflight(
            &aws,
            &request(&["eni-0000000000000a001"]),
            None,
        ))
        .unwrap();
    assert_eq!(numbers, vec![32_765]);
}

/// An ephemeral collector's whole provisioning, as `Mirror::start` runs it, then teardown.
fn run_launch(state: &Shared, groups: Groups) -> (Result<(), String>, Report, bool) {
    run_launch_with(state, groups, default_launch())
}

fn default_launch() -> LaunchRequest {
    LaunchRequest {
        launch_template: None,
        instance_type: None,
        instance_profile: None,
        user_data: "#cloud-config\n".into(),
        listen_port: 4789,
        ssh: Some((22, "198.51.100.7/32".into())),
        public_ip: true,
        needs_instance_profile: false,
    }
}

fn run_launch_with(
    state: &Shared,
    groups: Groups,
    launch_req: LaunchRequest,
) -> (Result<(), String>, Report, bool) {
    let aws = aws_with(state.clone());
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut ledger = test_ledger(dir.path());
        let stop = AtomicBool::new(false);
        let req = request(&["eni-0000000000000a001"]);
        let r = async {
            let checked = preflight(&aws, &req, None).await?;
            let c = launch(
                &aws,
                &launch_req,
                "vpc-1",
                "subnet-1",
                "eu-west-1a",
                &mut ledger,
                &stop,
                &|_| {},
            )
            .await?;
            provision_checked(
                &aws,
                &req,
                checked,
                &Target::Eni(c.eni),
                &mut ledger,
                &stop,
                &|_| {},
            )
            .await
            .map(|_| ())
        }
        .await;
        let report = teardown(&aws, &mut ledger, Duration::from_secs(20), groups).await;
        let ledger_gone = Ledger::all_in(dir.path()).is_empty();
        (r, report, ledger_gone)
    })
}

#[test]
fn a_launched_collector_is_removed_after_the_mirror() {
    let state = Shared::default();
    state.lock().unwrap().hold_group = 2;
    let (r, report, ledger_gone) = run_launch(&state, Groups::Wait);
    r.unwrap();
    let st = state.lock().unwrap();
    assert!(st.is_empty(), "left {:?} {:?}", st.groups, st.instances);
    assert!(report.deferred.is_empty() && report.left.is_empty());
    assert!(ledger_gone);
    assert!(
        st.calls["DeleteSecurityGroup"] >= 3,
        "the group was retried while the terminating instance held it"
    );
    let order: Vec<&str> = report
        .removed
        .iter()
        .map(|id| &id[..id.find('-').unwrap()])
        .collect();
    assert_eq!(
        order,
        ["tms", "tmfr", "tmfr", "tmfr", "tmfr", "tmf", "tmt", "i", "sg"],
        "dependency order: {:?}",
        report.removed
    );
}

/// A failure at every step of an ephemeral collector's provisioning leaves nothing.
#[test]
fn launch_failure_at_every_step_rolls_back() {
    for (op, code, needle) in [
        (
            "CreateSecurityGroup",
            "UnauthorizedOperation",
            "Permission missing: AWS denied ec2:CreateSecurityGroup",
        ),
        (
            "AuthorizeSecurityGroupIngress",
            "UnauthorizedOperation",
            "ec2:AuthorizeSecurityGroupIngress",
        ),
        (
            "RunInstances",
            "InsufficientInstanceCapacity",
            "AWS has no t4g.nano capacity in eu-west-1a",
        ),
        (
            "RunInstances",
            "VcpuLimitExceeded",
            "instance quota in this region is reached",
        ),
        (
            "CreateTrafficMirrorTarget",
            "InternalError",
            "ec2:CreateTrafficMirrorTarget",
        ),
        (
            "CreateTrafficMirrorSession",
            "InternalError",
            "ec2:CreateTrafficMirrorSession",
        ),
    ] {
        let state = Shared::default();
        state.lock().unwrap().fail = Some((op, 1, code));
        let (r, report, ledger_gone) = run_launch(&state, Groups::Wait);
        let err = r.expect_err("the injected failure must surface");
        assert!(err.contains(needle), "{op} {code}: {err}");
        let st = state.lock().unwrap();
        assert!(
            st.is_empty(),
            "{op}: left {:?} {:?} {:?} {:?} {:?}",
            st.groups,
            st.instances,
            st.targets,
            st.filters,
            st.sessions
        );
        assert!(report.left.is_empty(), "{op}: {:?}", report.left);
        assert!(ledger_gone, "{op}: ledger finished");
    }
}

/// A stopping capture cannot wait the 30–90 s EC2 takes to free a terminated instance's
/// security group: it is reported as deferred (the capture hands it to a background
/// `awsvpc cleanup`), not as a failure, and a later teardown removes it.
#[test]
fn a_group_held_by_the_terminating_collector_is_deferred_not_failed() {
    let state = Shared::default();
    state.lock().unwrap().hold_group = usize::MAX;
    let (r, report, ledger_gone) = run_launch(&state, Groups::Defer);
    r.unwrap();
    assert_eq!(report.deferred, vec!["sg-00000001".to_string()]);
    assert!(report.left.is_empty(), "{:?}", report.left);
    assert!(
        report.sentence("x").is_none(),
        "no error sentence for a deferral"
    );
    assert!(
        !ledger_gone,
        "the ledger keeps the group for awsvpc cleanup"
    );
    let st = state.lock().unwrap();
    assert!(st.instances.is_empty(), "the instance was terminated");
    assert_eq!(st.groups, vec!["sg-00000001".to_string()]);
}

/// A launch template gives the AMI, the type and the instance profile (no AMI lookup);
/// --instance-type and --instance-profile still win; an unknown template is one sentence
/// before anything exists; SSM without any instance profile is refused before anything too.
#[test]
fn launch_templates_and_instance_profiles() {
    let state = Shared::default();
    let (r, _, _) = run_launch_with(
        &state,
        Groups::Wait,
        LaunchRequest {
            launch_template: Some("awsvpc-collector".into()),
            needs_instance_profile: true,
            ..default_launch()
        },
    );
    r.unwrap();
    assert_eq!(
        state.lock().unwrap().launched,
        vec![(
            "ami-0template".to_string(),
            "t3.small".to_string(),
            Some("lt-0c011ec70b".to_string()),
            None
        )],
        "the template's AMI and type; its instance profile comes with the template"
    );
    let state = Shared::default();
    let (r, _, _) = run_launch_with(
        &state,
        Groups::Wait,
        LaunchRequest {
            launch_template: Some("lt-0c011ec70b".into()),
            instance_type: Some("t4g.small".into()),
            instance_profile: Some("other-profile".into()),
            ..default_launch()
        },
    );
    r.unwrap();
    let launched = state.lock().unwrap().launched.clone();
    assert_eq!(launched[0].1, "t4g.small");
    assert_eq!(launched[0].3.as_deref(), Some("other-profile"));
    for (template, profile, needle) in [
        (
            Some("nosuch"),
            None,
            "Launch template nosuch not found in region eu-west-1",
        ),
        (None, None, "needs an instance profile for its SSM agent"),
    ] {
        let state = Shared::default();
        let (r, _, _) = run_launch_with(
            &state,
            Groups::Wait,
            LaunchRequest {
                launch_template: template.map(str::to_string),
                instance_profile: profile,
                needs_instance_profile: true,
                ..default_launch()
            },
        );
        let e = r.unwrap_err();
        assert!(e.contains(needle), "{e}");
        assert_eq!(
            state.lock().unwrap().creates,
            0,
            "{needle}: nothing created"
        );
    }
}
