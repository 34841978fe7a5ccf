//! Creating the mirror for a capture: a target (an existing one, or this host's ENI), a
//! filter with its rules, and one session per source ENI with its own VNI, so every frame
//! maps back to its ENI. Everything is checked before anything is created, recorded in the
//! ledger before it is created, and tagged so `awsvpc cleanup` can always find it.

use super::client::Aws;
use super::discovery::{enis, Eni};
use super::errors::explain;
use super::ledger::{Kind, Ledger, Record};
use super::tags;
use crate::sources::KnownSource;
use crate::wire::ethernet::parse_mac;
use aws_sdk_ec2::error::SdkError;
use aws_sdk_ec2::types::{
    Filter, ResourceType, Tag, TagSpecification, TrafficDirection, TrafficMirrorNetworkService,
    TrafficMirrorPortRangeRequest, TrafficMirrorRuleAction,
};
use std::sync::atomic::{AtomicBool, Ordering};

/// Sessions allowed per source ENI (AWS quota, not adjustable).
pub const MAX_SESSIONS_PER_ENI: usize = 3;
/// Highest session number AWS accepts: the lowest priority.
pub const LOWEST_PRIORITY: i32 = 32_766;
/// Largest PacketLength AWS accepts.
pub const MAX_PACKET_LENGTH: u32 = 8_500;

/// Where the mirror goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A target that exists already (`--target-id`); awsvpc never deletes it.
    Existing(String),
    /// An ENI that becomes a target created for this run (this host's, for `--collector local`).
    Eni(String),
}

/// Traffic the filter must not mirror: the collector's own transport, when a mirrored ENI
/// carries it (a bastion or NAT in the path), or the capture would mirror itself.
#[derive(Debug, Clone)]
pub struct Exclusion {
    pub cidr: String,
    pub protocol: i32,
    pub port: i32,
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub enis: Vec<String>,
    pub vpc: Option<String>,
    pub snaplen: Option<u32>,
    pub session_number: Option<i32>,
    pub vni: Option<u32>,
    pub amazon_dns: bool,
    pub exclusions: Vec<Exclusion>,
    /// The capture filter, narrowed into the accept rules.
    pub filter: Option<String>,
}

/// Traffic-mirror filter rules per direction (AWS quota).
pub const RULES_PER_DIRECTION: usize = 10;

pub struct Provisioned {
    pub sources: Vec<KnownSource>,
    pub sessions: Vec<String>,
    pub target: String,
}

pub(super) fn tag_spec(kind: ResourceType, run_id: &str, created_by: &str) -> TagSpecification {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    TagSpecification::builder()
        .resource_type(kind)
        .tags(tag(tags::MANAGED, "true"))
        .tags(tag(tags::RUN_ID, run_id))
        .tags(tag(tags::CREATED_BY, created_by))
        .tags(tag(tags::EXPIRES, &tags::expires_after(tags::LIFETIME)))
        .tags(tag("Name", &format!("awsvpc {run_id}")))
        .build()
}

/// The session number to use on an ENI whose sessions use `used`: the lowest-priority free
/// number, so an existing session (an IDS) keeps the packets it matches.
pub fn free_session_number(used: &[i32], wanted: Option<i32>) -> Result<i32, String> {
    match wanted {
        Some(n) if used.contains(&n) => Err(format!(
            "session number {n} is already used on this ENI; choose another --session-number or leave it empty"
        )),
        Some(n) => Ok(n),
        None => (1..=LOWEST_PRIORITY)
            .rev()
            .find(|n| !used.contains(n))
            .ok_or_else(|| "no free session number".to_string()),
    }
}

/// VNIs for the sessions: `--vni` and the numbers after it, or a base derived from the run id.
pub fn vnis(run_id: &str, base: Option<u32>, count: usize) -> Vec<u32> {
    let base = base.unwrap_or_else(|| {
        let h = run_id.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        // Keep clear of 0 and of the top of the range so base + count stays in 24 bits.
        1 + h % ((1 << 24) - 1024)
    });
    (0..count as u32)
        .map(|i| (base + i) & 0x00ff_ffff)
        .collect()
}

/// One create call of the run, with the ledger discipline that keeps it from leaking: the
/// intent is on disk before the request is sent; when AWS answers with an error nothing was
/// created and the intent is void; when the answer is lost (timeout, broken connection) the
/// intent stays and teardown looks for the resource by the run's tag; the id is recorded as
/// soon as AWS answers. `request` is the unsent request: it does nothing until polled here.
pub(super) async fn create<O, E, R>(
    ledger: &mut impl Record,
    kind: Kind,
    token: &str,
    parent: Option<&str>,
    request: impl std::future::Future<Output = Result<O, SdkError<E, R>>>,
    id_of: fn(&O) -> Option<&str>,
    explain_error: impl FnOnce(&SdkError<E, R>) -> String,
) -> Result<String, String> {
    let io = |e: std::io::Error| format!("Cannot write the run ledger: {e}.");
    let index = ledger.intend(kind, token, parent).map_err(io)?;
    let output = match request.await {
        Ok(o) => o,
        Err(e) => {
            if matches!(e, SdkError::ServiceError(_)) {
                let _ = ledger.void(index);
            }
            return Err(explain_error(&e));
        }
    };
    let id = id_of(&output)
        .ok_or_else(|| format!("AWS created a {kind:?} but returned no id for it."))?
        .to_string();
    ledger.created(index, &id).map_err(io)?;
    Ok(id)
}

/// Test hook for the leak matrix (tests/leak_matrix.rs): with
/// `AWSVPC_TEST_HOLD_AFTER=security-group|instance|target|filter|rule|session`, provisioning
/// waits after creating
/// that resource until the capture is stopped, so a signal lands at a known step.
pub(super) async fn hold_point(step: &str, stop: &AtomicBool) {
    if std::env::var("AWSVPC_TEST_HOLD_AFTER").ok().as_deref() != Some(step) {
        return;
    }
    crate::log_msg!("test hook: holding after creating the {step}");
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub(super) fn check_stop(stop: &AtomicBool) -> Result<(), String> {
    if stop.load(Ordering::Relaxed) {
        Err(
            "The capture was stopped during provisioning; everything created so far was removed."
                .into(),
        )
    } else {
        Ok(())
    }
}

/// Everything that can be checked before creating anything: each ENI exists, is in one VPC
/// (the chosen one), can be a mirror source, and has room for one more session.
pub async fn preflight(
    aws: &Aws,
    req: &Request,
    target_eni: Option<&str>,
) -> Result<(Vec<Eni>, Vec<i32>), String> {
    if req.enis.is_empty() {
        return Err("No ENI to mirror: choose one or more with --eni.".into());
    }
    let found = enis(aws, None, &req.enis).await?;
    let mut ordered = Vec::new();
    for id in &req.enis {
        let e = found.iter().find(|e| &e.id == id).ok_or_else(|| {
            format!(
                "{id} not found in region {}; check --eni and --region.",
                aws.region
            )
        })?;
        if let Some(v) = &req.vpc {
            if &e.vpc != v {
                return Err(format!(
                    "{id} is in {}, not in the chosen VPC {v}; choose ENIs of {v} or change --vpc.",
                    e.vpc
                ));
            }
        }
        if let Some(why) = e.unsupported() {
            return Err(format!(
                "{id} cannot be mirrored: {why}; choose another ENI, or capture it on its own instance with --capture-mode auto."
            ));
        }
        if Some(id.as_str()) == target_eni {
            return Err(format!("{id} is the collector's own ENI, which cannot mirror to itself; choose another ENI."));
        }
        ordered.push(e.clone());
    }
    if let Some(first) = ordered.first() {
        if let Some(other) = ordered.iter().find(|e| e.vpc != first.vpc) {
            return Err(format!(
                "{} is in {} but {} is in {}; mirror ENIs of one VPC per capture.",
                first.id, first.vpc, other.id, other.vpc
            ));
        }
    }
    let mut numbers = Vec::new();
    for e in &ordered {
        let r = aws
            .ec2
            .describe_traffic_mirror_sessions()
            .filters(
                Filter::builder()
                    .name("network-interface-id")
                    .values(&e.id)
                    .build(),
            )
            .send()
            .await
            .map_err(|err| {
                explain(
                    "ec2:DescribeTrafficMirrorSessions",
                    &err,
                    aws.profile.as_deref(),
                )
            })?;
        // Filters are matched again here: some emulators ignore them.
        let existing: Vec<_> = r
            .traffic_mirror_sessions()
            .iter()
            .filter(|s| s.network_interface_id() == Some(e.id.as_str()))
            .collect();
        if existing.len() >= MAX_SESSIONS_PER_ENI {
            let ids: Vec<&str> = existing
                .iter()
                .filter_map(|s| s.traffic_mirror_session_id())
                .collect();
            return Err(format!(
                "{} already has {} mirror sessions ({}), AWS's limit per ENI; remove one or choose another ENI.",
                e.id,
                existing.len(),
                ids.join(", ")
            ));
        }
        let used: Vec<i32> = existing.iter().filter_map(|s| s.session_number()).collect();
        numbers.push(
            free_session_number(&used, req.session_number)
                .map_err(|m| format!("{}: {m}.", e.id))?,
        );
    }
    Ok((ordered, numbers))
}

/// Checks the ENIs ([`preflight`]), then creates target, filter and sessions, recording
/// each in `ledger` first. On error the caller tears down what the ledger holds.
pub async fn provision(
    aws: &Aws,
    req: &Request,
    target: &Target,
    ledger: &mut Ledger,
    stop: &AtomicBool,
    status: &dyn Fn(&str),
) -> Result<Provisioned, String> {
    let target_eni = match target {
        Target::Eni(e) => Some(e.as_str()),
        Target::Existing(_) => None,
    };
    status("Checking the ENIs to mirror");
    let checked = preflight(aws, req, target_eni).await?;
    provision_checked(aws, req, checked, target, ledger, stop, status).await
}

/// [`provision`] for ENIs [`preflight`] already checked: `(sources, session numbers)`.
pub async fn provision_checked(
    aws: &Aws,
    req: &Request,
    (sources, numbers): (Vec<Eni>, Vec<i32>),
    target: &Target,
    ledger: &mut Ledger,
    stop: &AtomicBool,
    status: &dyn Fn(&str),
) -> Result<Provisioned, String> {
    let rules = filter_rules(&req.exclusions, req.filter.as_deref())?;
    check_stop(stop)?;
    let run_id = ledger.run_id.clone();
    let created_by = ledger.created_by.clone();
    let p = aws.profile.as_deref();

    let target_id = match target {
        Target::Existing(id) => {
            super::discovery::traffic_mirror_target(aws, id).await?;
            id.clone()
        }
        Target::Eni(eni) => {
            status("Creating the mirror target");
            let token = tags::client_token(&run_id, "target");
            let request = aws
                .ec2
                .create_traffic_mirror_target()
                .network_interface_id(eni)
                .description(format!("awsvpc capture {run_id}"))
                .tag_specifications(tag_spec(
                    ResourceType::TrafficMirrorTarget,
                    &run_id,
                    &created_by,
                ))
                .client_token(&token)
                .send();
            create(
                ledger,
                Kind::Target,
                &token,
                None,
                request,
                |r| {
                    r.traffic_mirror_target()
                        .and_then(|t| t.traffic_mirror_target_id())
                },
                |e| explain("ec2:CreateTrafficMirrorTarget", e, p),
            )
            .await?
        }
    };
    hold_point("target", stop).await;
    check_stop(stop)?;

    status("Creating the mirror filter");
    let token = tags::client_token(&run_id, "filter");
    let request = aws
        .ec2
        .create_traffic_mirror_filter()
        .description(format!("awsvpc capture {run_id}"))
        .tag_specifications(tag_spec(
            ResourceType::TrafficMirrorFilter,
            &run_id,
            &created_by,
        ))
        .client_token(&token)
        .send();
    let filter_id = create(
        ledger,
        Kind::Filter,
        &token,
        None,
        request,
        |r| {
            r.traffic_mirror_filter()
                .and_then(|f| f.traffic_mirror_filter_id())
        },
        |e| explain("ec2:CreateTrafficMirrorFilter", e, p),
    )
    .await?;
    hold_point("filter", stop).await;

    for (n, rule) in rules.into_iter().enumerate() {
        check_stop(stop)?;
        let token = tags::client_token(&run_id, &format!("rule-{n}"));
        let mut b = aws
            .ec2
            .create_traffic_mirror_filter_rule()
            .traffic_mirror_filter_id(&filter_id)
            .traffic_direction(rule.direction.clone())
            .rule_number(rule.number)
            .rule_action(rule.action.clone())
            .source_cidr_block(&rule.source)
            .destination_cidr_block(&rule.destination)
            .description(rule.description.clone())
            .client_token(&token);
        if let Some(proto) = rule.protocol {
            b = b.protocol(proto);
        }
        if let Some((from, to)) = rule.destination_port {
            b = b.destination_port_range(
                TrafficMirrorPortRangeRequest::builder()
                    .from_port(from)
                    .to_port(to)
                    .build(),
            );
        }
        if let Some((from, to)) = rule.source_port {
            b = b.source_port_range(
                TrafficMirrorPortRangeRequest::builder()
                    .from_port(from)
                    .to_port(to)
                    .build(),
            );
        }
        let rule_id = create(
            ledger,
            Kind::FilterRule,
            &token,
            Some(&filter_id),
            b.send(),
            |r| {
                r.traffic_mirror_filter_rule()
                    .and_then(|x| x.traffic_mirror_filter_rule_id())
            },
            |e| explain("ec2:CreateTrafficMirrorFilterRule", e, p),
        )
        .await?;
        if n == 0 {
            hold_point("rule", stop).await;
        }
        crate::log_msg!(
            "filter rule {rule_id}: {} #{} {}",
            rule.direction.as_str(),
            rule.number,
            rule.description
        );
    }
    if req.amazon_dns {
        aws.ec2
            .modify_traffic_mirror_filter_network_services()
            .traffic_mirror_filter_id(&filter_id)
            .add_network_services(TrafficMirrorNetworkService::AmazonDns)
            .send()
            .await
            .map_err(|e| explain("ec2:ModifyTrafficMirrorFilterNetworkServices", &e, p))?;
    }
    check_stop(stop)?;

    let vnis = vnis(&run_id, req.vni, sources.len());
    let packet_length = req.snaplen.filter(|s| (1..=MAX_PACKET_LENGTH).contains(s));
    let mut known = Vec::new();
    let mut sessions = Vec::new();
    for ((eni, number), vni) in sources.iter().zip(&numbers).zip(&vnis) {
        check_stop(stop)?;
        status(&format!("Creating the mirror session for {}", eni.id));
        let token = tags::client_token(&run_id, &format!("session-{}", eni.id));
        let mut b = aws
            .ec2
            .create_traffic_mirror_session()
            .network_interface_id(&eni.id)
            .traffic_mirror_target_id(&target_id)
            .traffic_mirror_filter_id(&filter_id)
            .session_number(*number)
            .virtual_network_id(*vni as i32)
            .description(format!("awsvpc capture {run_id}"))
            .tag_specifications(tag_spec(
                ResourceType::TrafficMirrorSession,
                &run_id,
                &created_by,
            ))
            .client_token(&token);
        if let Some(len) = packet_length {
            b = b.packet_length(len as i32);
        }
        let id = create(
            ledger,
            Kind::Session,
            &token,
            None,
            b.send(),
            |r| r.traffic_mirror_session().and_then(|s| s.traffic_mirror_session_id()),
            |e| match super::errors::code(e) {
                Some("NetworkInterfaceNotSupported") => format!(
                    "{} cannot be mirrored: AWS does not support traffic mirroring from its instance type; choose another ENI, or capture it on its own instance with --capture-mode auto.",
                    eni.id
                ),
                _ => explain("ec2:CreateTrafficMirrorSession", e, p),
            },
        )
        .await?;
        crate::log_msg!(
            "mirror session {id}: {} → {target_id}, VNI {vni}, session number {number}",
            eni.id
        );
        known.push(KnownSource {
            vni: *vni,
            eni: eni.id.clone(),
            mac: eni.mac.as_deref().and_then(parse_mac),
            on_host: None,
        });
        sessions.push(id);
        hold_point("session", stop).await;
    }
    Ok(Provisioned {
        sources: known,
        sessions,
        target: target_id,
    })
}

/// One filter rule to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub direction: TrafficDirection,
    pub number: i32,
    pub action: TrafficMirrorRuleAction,
    pub protocol: Option<i32>,
    pub source: String,
    pub destination: String,
    /// Inclusive port ranges (TCP and UDP rules only).
    pub source_port: Option<(i32, i32)>,
    pub destination_port: Option<(i32, i32)>,
    pub description: String,
}

/// Reject rules for the exclusions (lowest numbers: evaluated first), then the capture
/// filter narrowed into accept rules (accept-all for IPv4 and IPv6 without a filter; AWS
/// mirrors nothing without rules), the same in both directions. What could not be narrowed
/// is said in the log.
pub fn filter_rules(exclusions: &[Exclusion], filter: Option<&str>) -> Result<Vec<Rule>, String> {
    let budget = RULES_PER_DIRECTION.saturating_sub(2 * exclusions.len());
    let narrowing = crate::narrow::narrow(filter, budget).map_err(|e| {
        format!("The capture filter cannot be turned into traffic-mirror rules: {e}; choose fewer ENIs or a simpler filter.")
    })?;
    if let Some(f) = filter {
        if narrowing.accept_all {
            crate::log_msg!("capture filter \"{f}\" does not narrow what AWS mirrors: everything is mirrored and the filter applies here");
        } else {
            crate::log_msg!(
                "capture filter \"{f}\" narrows the mirror to {} rule(s) per direction",
                narrowing.rules.len()
            );
        }
        for n in &narrowing.notes {
            crate::log_msg!("capture filter: {n}");
        }
    }
    let mut rules = Vec::new();
    let mut n = 10;
    for x in exclusions {
        let any = if x.cidr.contains(':') {
            "::/0"
        } else {
            "0.0.0.0/0"
        };
        for direction in [TrafficDirection::Ingress, TrafficDirection::Egress] {
            // Traffic to the collector, and its replies.
            rules.push(Rule {
                direction: direction.clone(),
                number: n,
                action: TrafficMirrorRuleAction::Reject,
                protocol: Some(x.protocol),
                source: any.to_string(),
                destination: x.cidr.clone(),
                source_port: None,
                destination_port: Some((x.port, x.port)),
                description: format!(
                    "awsvpc: not the collector's own traffic to {} port {}",
                    x.cidr, x.port
                ),
            });
            rules.push(Rule {
                direction,
                number: n + 1,
                action: TrafficMirrorRuleAction::Reject,
                protocol: Some(x.protocol),
                source: x.cidr.clone(),
                destination: any.to_string(),
                source_port: Some((x.port, x.port)),
                destination_port: None,
                description: format!(
                    "awsvpc: not the collector's own traffic from {} port {}",
                    x.cidr, x.port
                ),
            });
        }
        n += 10;
    }
    for (k, r) in narrowing.rules.iter().enumerate() {
        for direction in [TrafficDirection::Ingress, TrafficDirection::Egress] {
            let ports = |p: Option<(u16, u16)>| p.map(|(a, b)| (i32::from(a), i32::from(b)));
            rules.push(Rule {
                direction,
                number: 100 + 10 * k as i32,
                action: TrafficMirrorRuleAction::Accept,
                protocol: r.protocol.map(i32::from),
                source: r.source.to_string(),
                destination: r.destination.to_string(),
                source_port: ports(r.source_ports),
                destination_port: ports(r.destination_ports),
                description: format!("awsvpc: {r}"),
            });
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_numbers_take_the_lowest_priority() {
        assert_eq!(free_session_number(&[], None), Ok(32_766));
        assert_eq!(free_session_number(&[1, 32_766], None), Ok(32_765));
        assert_eq!(free_session_number(&[5], Some(7)), Ok(7));
        assert!(free_session_number(&[7], Some(7))
            .unwrap_err()
            .contains("already used"));
    }

    #[test]
    fn vnis_are_distinct_and_in_range() {
        let v = vnis("20261122120000-abcd", None, 3);
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|x| *x > 0 && *x < 1 << 24));
        assert_eq!(v[1], v[0] + 1);
        assert_eq!(vnis("x", Some(4242), 2), vec![4242, 4243]);
    }

    #[test]
    fn rules_fit_the_quota_and_reject_first() {
        let r = filter_rules(
            &[Exclusion {
                cidr: "10.0.0.5/32".into(),
                protocol: 17,
                port: 4789,
            }],
            None,
        )
        .unwrap();
        assert_eq!(r.len(), 8, "10 rules per filter at most");
        let first_accept = r
            .iter()
            .position(|x| x.action == TrafficMirrorRuleAction::Accept)
            .unwrap();
        assert!(r[..first_accept]
            .iter()
            .all(|x| x.action == TrafficMirrorRuleAction::Reject));
        assert!(r
            .iter()
            .filter(|x| x.action == TrafficMirrorRuleAction::Reject)
            .all(|x| x.number < 100));
        for d in [TrafficDirection::Ingress, TrafficDirection::Egress] {
            let mut nums: Vec<i32> = r
                .iter()
                .filter(|x| x.direction == d)
                .map(|x| x.number)
                .collect();
            let n = nums.len();
            nums.sort();
            nums.dedup();
            assert_eq!(nums.len(), n, "rule numbers unique per direction");
        }
    }
}
