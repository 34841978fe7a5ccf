//! The read-only facts of a mirror path, for `diagnose`: the session's target ENI, both
//! ENIs (DescribeNetworkInterfaces), the target's security groups (DescribeSecurityGroups,
//! GetManagedPrefixListEntries), the network ACLs of both VPCs (DescribeNetworkAcls) and the
//! source VPC's route tables (DescribeRouteTables). A call that is denied or fails makes
//! its part "could not check X (permission Y missing)"; it never fails the capture.
//! Describe filters are re-applied to what EC2 returns (emulators ignore some).

use super::client::Aws;
use super::errors::{code, explain};
use crate::config::{CaptureConfig, Connect};
use crate::diagnose::facts::{
    parse_cidr, AclEntry, Eni, Fetched, NetworkAcl, PathFacts, Peer, Protocol, Route, RouteTable,
    SecurityGroup, SgRule, SkipMirror, Unchecked, Via,
};
use crate::diagnose::{self, Diagnosis, MirrorFilter};
use crate::narrow::Narrowing;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, RouteState, RuleAction};
use std::net::IpAddr;
use std::time::Duration;

/// A whole diagnosis takes at most this long (each call is bounded by the client too).
pub const BOUND: Duration = Duration::from_secs(30);

/// What a failed read makes of its check.
pub(super) fn unchecked<E, R>(what: &str, op: &str, e: &SdkError<E, R>) -> Unchecked
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let why = match code(e) {
        Some("UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException") => {
            format!("permission {op} missing")
        }
        _ => explain(op, e, None).trim_end_matches('.').to_string(),
    };
    Unchecked {
        what: what.into(),
        why,
    }
}

fn vpc_filter(vpcs: &[&str]) -> Filter {
    Filter::builder()
        .name("vpc-id")
        .set_values(Some(vpcs.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// The ENI behind each of `sessions`: (source ENI, target ENI), or why it is unknown.
pub async fn session_targets(
    aws: &Aws,
    sessions: &[String],
) -> Result<Vec<(String, String)>, Unchecked> {
    let what = "the mirror sessions";
    let out = aws
        .ec2
        .describe_traffic_mirror_sessions()
        .set_traffic_mirror_session_ids(Some(sessions.to_vec()))
        .send()
        .await
        .map_err(|e| unchecked(what, "ec2:DescribeTrafficMirrorSessions", &e))?;
    let mut pairs = Vec::new();
    for s in out.traffic_mirror_sessions() {
        if !sessions
            .iter()
            .any(|x| Some(x.as_str()) == s.traffic_mirror_session_id())
        {
            continue;
        }
        let (Some(src), Some(target)) = (s.network_interface_id(), s.traffic_mirror_target_id())
        else {
            continue;
        };
        if let Some(eni) = target_eni(aws, target).await? {
            pairs.push((src.to_string(), eni));
        }
    }
    Ok(pairs)
}

/// The ENI of mirror target `id`; `None` for a load balancer target.
pub async fn target_eni(aws: &Aws, id: &str) -> Result<Option<String>, Unchecked> {
    let out = aws
        .ec2
        .describe_traffic_mirror_targets()
        .traffic_mirror_target_ids(id)
        .send()
        .await
        .map_err(|e| unchecked("the mirror target", "ec2:DescribeTrafficMirrorTargets", &e))?;
    Ok(out
        .traffic_mirror_targets()
        .iter()
        .find(|t| t.traffic_mirror_target_id() == Some(id))
        .and_then(|t| t.network_interface_id())
        .map(str::to_string))
}

pub async fn enis(aws: &Aws, ids: &[&str]) -> Result<Vec<Eni>, Unchecked> {
    let out = aws
        .ec2
        .describe_network_interfaces()
        .set_network_interface_ids(Some(ids.iter().map(|s| s.to_string()).collect()))
        .send()
        .await
        .map_err(|e| unchecked("the path", "ec2:DescribeNetworkInterfaces", &e))?;
    let mut found = Vec::new();
    for id in ids {
        let Some(n) = out
            .network_interfaces()
            .iter()
            .find(|n| n.network_interface_id() == Some(id))
        else {
            return Err(Unchecked {
                what: "the path".into(),
                why: format!("EC2 does not list {id}"),
            });
        };
        let mut ips: Vec<IpAddr> = Vec::new();
        let mut push = |s: Option<&str>| {
            if let Some(ip) = s.and_then(|s| s.parse().ok()) {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        };
        push(n.private_ip_address());
        for p in n.private_ip_addresses() {
            push(p.private_ip_address());
        }
        for p in n.ipv6_addresses() {
            push(p.ipv6_address());
        }
        found.push(Eni {
            id: id.to_string(),
            vpc: n.vpc_id().unwrap_or_default().to_string(),
            subnet: n.subnet_id().unwrap_or_default().to_string(),
            ips,
            groups: n
                .groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_string))
                .collect(),
            instance: n
                .attachment()
                .and_then(|a| a.instance_id())
                .map(str::to_string),
        });
    }
    Ok(found)
}

fn ports(from: Option<i32>, to: Option<i32>) -> Option<(u16, u16)> {
    match (from, to) {
        (Some(a), Some(b)) if a >= 0 && b >= a => Some((
            u16::try_from(a).unwrap_or(u16::MAX),
            u16::try_from(b).unwrap_or(u16::MAX),
        )),
        _ => None,
    }
}

async fn groups(aws: &Aws, ids: &[String]) -> Fetched<Vec<SecurityGroup>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let op = "ec2:DescribeSecurityGroups";
    let out = aws
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| unchecked("the collector's security groups", op, &e))?;
    let mut groups = Vec::new();
    for g in out.security_groups() {
        let Some(id) = g.group_id().filter(|id| ids.iter().any(|x| x == id)) else {
            continue;
        };
        let mut inbound = Vec::new();
        for p in g.ip_permissions() {
            // An unknown protocol name is no rule we can match: leave it out.
            let Some(protocol) = p.ip_protocol().and_then(Protocol::parse) else {
                continue;
            };
            let mut peers: Vec<Peer> = Vec::new();
            peers.extend(
                p.ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip().and_then(parse_cidr))
                    .map(Peer::Cidr),
            );
            peers.extend(
                p.ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6().and_then(parse_cidr))
                    .map(Peer::Cidr),
            );
            peers.extend(
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|r| r.group_id().map(|g| Peer::Group(g.to_string()))),
            );
            for pl in p
                .prefix_list_ids()
                .iter()
                .filter_map(|r| r.prefix_list_id())
            {
                peers.push(Peer::PrefixList {
                    id: pl.to_string(),
                    cidrs: prefix_list(aws, pl).await,
                });
            }
            inbound.push(SgRule {
                protocol,
                ports: ports(p.from_port(), p.to_port()),
                peers,
            });
        }
        groups.push(SecurityGroup {
            id: id.to_string(),
            inbound,
        });
    }
    Ok(groups)
}

/// A prefix list's CIDRs, or `None` when they cannot be read.
async fn prefix_list(aws: &Aws, id: &str) -> Option<Vec<crate::narrow::Cidr>> {
    let out = aws
        .ec2
        .get_managed_prefix_list_entries()
        .prefix_list_id(id)
        .send()
        .await
        .ok()?;
    Some(
        out.entries()
            .iter()
            .filter_map(|e| e.cidr().and_then(parse_cidr))
            .collect(),
    )
}

async fn acls(aws: &Aws, vpcs: &[&str]) -> Fetched<Vec<NetworkAcl>> {
    let out = aws
        .ec2
        .describe_network_acls()
        .filters(vpc_filter(vpcs))
        .send()
        .await
        .map_err(|e| unchecked("the network ACLs", "ec2:DescribeNetworkAcls", &e))?;
    let mut acls = Vec::new();
    for a in out.network_acls() {
        let vpc = a.vpc_id().unwrap_or_default();
        if !vpcs.contains(&vpc) {
            continue;
        }
        let entries = a
            .entries()
            .iter()
            .filter_map(|e| {
                let cidr = e
                    .cidr_block()
                    .or(e.ipv6_cidr_block())
                    .and_then(parse_cidr)?;
                Some(AclEntry {
                    number: e.rule_number()?,
                    egress: e.egress().unwrap_or(false),
                    allow: e.rule_action() == Some(&RuleAction::Allow),
                    protocol: e.protocol().and_then(Protocol::parse)?,
                    cidr,
                    ports: e.port_range().and_then(|p| ports(p.from(), p.to())),
                })
            })
            .collect();
        acls.push(NetworkAcl {
            id: a.network_acl_id().unwrap_or_default().to_string(),
            vpc: vpc.to_string(),
            default: a.is_default().unwrap_or(false),
            subnets: a
                .associations()
                .iter()
                .filter_map(|s| s.subnet_id().map(str::to_string))
                .collect(),
            entries,
        });
    }
    Ok(acls)
}

async fn route_tables(aws: &Aws, vpc: &str) -> Fetched<Vec<RouteTable>> {
    let out = aws
        .ec2
        .describe_route_tables()
        .filters(vpc_filter(&[vpc]))
        .send()
        .await
        .map_err(|e| unchecked("the route tables", "ec2:DescribeRouteTables", &e))?;
    let mut tables = Vec::new();
    for t in out.route_tables() {
        if t.vpc_id() != Some(vpc) {
            continue;
        }
        let routes = t
            .routes()
            .iter()
            .filter_map(|r| {
                let destination = r
                    .destination_cidr_block()
                    .or(r.destination_ipv6_cidr_block())
                    .and_then(parse_cidr)?;
                let via = if r.state() == Some(&RouteState::Blackhole) {
                    Via::Blackhole
                } else if let Some(p) = r.vpc_peering_connection_id() {
                    Via::Peering(p.to_string())
                } else if let Some(g) = r.transit_gateway_id() {
                    Via::TransitGateway(g.to_string())
                } else if r.gateway_id() == Some("local") {
                    Via::Local
                } else {
                    Via::Other(
                        r.gateway_id()
                            .or(r.nat_gateway_id())
                            .or(r.network_interface_id())
                            .unwrap_or("another target")
                            .to_string(),
                    )
                };
                Some(Route { destination, via })
            })
            .collect();
        tables.push(RouteTable {
            id: t.route_table_id().unwrap_or_default().to_string(),
            vpc: vpc.to_string(),
            main: t.associations().iter().any(|a| a.main() == Some(true)),
            subnets: t
                .associations()
                .iter()
                .filter_map(|a| a.subnet_id().map(str::to_string))
                .collect(),
            routes,
        });
    }
    Ok(tables)
}

/// Everything about the path from `source` to `target` (both ENI ids).
pub async fn fetch(aws: &Aws, source: &str, target: &str) -> Result<PathFacts, Unchecked> {
    // `enis` answers one per id or fails, so this is two; said, not assumed.
    let [source, target]: [Eni; 2] =
        enis(aws, &[source, target])
            .await?
            .try_into()
            .map_err(|_| Unchecked {
                what: "the path".into(),
                why: format!("EC2 did not list both {source} and {target}"),
            })?;
    let vpcs: Vec<&str> = if source.vpc == target.vpc {
        vec![source.vpc.as_str()]
    } else {
        vec![source.vpc.as_str(), target.vpc.as_str()]
    };
    let groups = groups(aws, &target.groups).await;
    let acls = acls(aws, &vpcs).await;
    let routes = route_tables(aws, &source.vpc).await;
    Ok(PathFacts {
        source,
        target,
        groups,
        acls,
        routes,
        skipped: None,
    })
}

/// Fetches and diagnoses the path from `source` to `target`, within `BOUND`; `skipped` is
/// what the SkipMirror metrics said of the source, when they were read.
pub async fn diagnose(
    aws: &Aws,
    source: &str,
    target: &str,
    filter: &MirrorFilter<'_>,
    skipped: Option<SkipMirror>,
) -> Diagnosis {
    match tokio::time::timeout(BOUND, fetch(aws, source, target)).await {
        Ok(Ok(mut facts)) => {
            facts.skipped = skipped;
            diagnose::diagnose(&facts, filter)
        }
        Ok(Err(u)) => Diagnosis::not_checked(u),
        Err(_) => Diagnosis::not_checked(Unchecked {
            what: "the path".into(),
            why: format!("EC2 did not answer within {} s", BOUND.as_secs()),
        }),
    }
}

/// Before mirroring to an existing target (`--target-id`, ENI `target`): a path that
/// cannot deliver is said in the status bar and the log, as a warning — the capture goes
/// on, since the user may know better. Bounded by `BOUND` for all ENIs together.
pub async fn warn_before(
    aws: &Aws,
    cfg: &crate::config::CaptureConfig,
    target_id: &str,
    target: &str,
    status: &dyn Fn(&str),
) {
    let n = narrowing(cfg);
    let filter = MirrorFilter {
        capture_filter: cfg.filter.as_deref(),
        rules: &n.rules,
        accept_all: n.accept_all,
    };
    let all = async {
        for eni in &cfg.enis {
            let d = diagnose(aws, eni, target, &filter, None).await;
            if d.blocked() {
                let s = format!(
                    "Warning: {eni} can deliver nothing to {target_id}: {}",
                    d.body()
                );
                crate::log_msg!("{s}");
                status(&s);
            } else {
                crate::log_info!("checked the path from {eni} to {target_id}: {}", d.body());
            }
        }
    };
    if tokio::time::timeout(BOUND, all).await.is_err() {
        crate::log_msg!(
            "the path check before mirroring took over {} s; skipped",
            BOUND.as_secs()
        );
    }
}

/// The accept rules provisioning narrowed the capture filter into, with the same budget
/// (the quota minus the reject rules for the collector's own VXLAN and SSH).
pub fn narrowing(cfg: &CaptureConfig) -> Narrowing {
    let reject = 1 + usize::from(cfg.collector.connect() == Some(Connect::Ssh));
    let budget = crate::aws::provision::RULES_PER_DIRECTION.saturating_sub(2 * reject);
    crate::narrow::narrow(cfg.filter.as_deref(), budget).unwrap_or_else(|_| Narrowing {
        rules: Vec::new(),
        notes: Vec::new(),
        accept_all: true,
    })
}
