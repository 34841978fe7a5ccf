//! When nothing arrives, say why: the mirror path from a source ENI to the collector
//! checked the way AWS evaluates it — the collector's security groups (`sg`), the network
//! ACLs of both subnets (`nacl`), the route between VPCs (`route`) — and the mirror
//! filter's narrowed rules against the source's addresses, each finding one sentence that
//! names the resource and the fix.
//!
//! Pure: the facts come from `aws::path_facts` (or a test), the answer is a `Diagnosis`.
//! `crate::path_watch` runs it for a live capture, off the packet path.

pub mod facts;
pub mod nacl;
pub mod route;
pub mod sg;

use crate::narrow::Rule;
use facts::{PathFacts, Unchecked};
use std::fmt::Write as _;
use std::net::IpAddr;

/// AWS sends mirrored packets as VXLAN to this UDP port of the target, whatever port the
/// collector itself listens on.
pub const VXLAN_PORT: u16 = 4789;

/// One direction of traffic, as rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: u8,
    pub destination_port: u16,
}

impl Flow {
    /// A mirror session's VXLAN: from the source ENI's primary address to the target's.
    pub fn vxlan(source: IpAddr, destination: IpAddr) -> Flow {
        Flow {
            source,
            destination,
            protocol: 17,
            destination_port: VXLAN_PORT,
        }
    }
}

/// What the capture asked AWS to mirror: the capture filter and the accept rules it was
/// narrowed into (`narrow::narrow`, as provisioning builds them).
#[derive(Debug, Clone, Copy)]
pub struct MirrorFilter<'a> {
    pub capture_filter: Option<&'a str>,
    pub rules: &'a [Rule],
    pub accept_all: bool,
}

/// Why a source's packets do not arrive, most decisive first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// No inbound rule of the collector's groups admits UDP 4789 from the source.
    SecurityGroup {
        groups: Vec<String>,
        collector: String,
        source_ip: IpAddr,
    },
    /// A network ACL denies the VXLAN: inbound at the target's subnet or outbound at the
    /// source's.
    NetworkAcl {
        acl: String,
        subnet: String,
        inbound: bool,
        rule: String,
        peer: IpAddr,
    },
    /// Different VPCs and no peering or transit gateway route to the target.
    NoRoute {
        source_vpc: String,
        target_vpc: String,
        table: Option<String>,
        target_ip: Option<IpAddr>,
    },
    /// No narrowed rule can match a packet to or from the source's addresses.
    FilterNeverMatches {
        eni: String,
        filter: String,
        narrowed: String,
        ips: Vec<IpAddr>,
    },
    /// The path is open; AWS dropped mirrored packets at the source's instance.
    SkipMirror {
        eni: String,
        instance: String,
        packets: u64,
        minutes: u32,
    },
    /// The path is open and the filter narrows what is mirrored: it, or an idle ENI.
    FilterNarrowed {
        eni: String,
        filter: String,
        narrowed: String,
    },
    /// Every check passed.
    Open { eni: String },
    /// The path itself could not be read (the ENIs, the session).
    NotChecked(Unchecked),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub finding: Finding,
    /// Checks that could not be made; said when nothing decisive was found.
    pub unchecked: Vec<Unchecked>,
}

impl Diagnosis {
    pub fn not_checked(why: Unchecked) -> Diagnosis {
        Diagnosis {
            finding: Finding::NotChecked(why),
            unchecked: Vec::new(),
        }
    }

    /// Whether the path itself is closed (security group, ACL, route or filter).
    pub fn blocked(&self) -> bool {
        matches!(
            self.finding,
            Finding::SecurityGroup { .. }
                | Finding::NetworkAcl { .. }
                | Finding::NoRoute { .. }
                | Finding::FilterNeverMatches { .. }
        )
    }

    /// The finding as the part of a sentence after "Nothing from eni-… for 10 s: ".
    pub fn body(&self) -> String {
        let mut s = match &self.finding {
            Finding::SecurityGroup {
                groups,
                collector,
                source_ip,
            } => match groups.as_slice() {
                [one] => format!(
                    "security group {one} of the collector {collector} admits no UDP {VXLAN_PORT} from {source_ip}; add that rule (awsvpc adds it to groups it created)."
                ),
                [] => format!(
                    "the collector {collector} has no security group that admits UDP {VXLAN_PORT} from {source_ip}; add a group with that rule."
                ),
                many => format!(
                    "no security group of the collector {collector} ({}) admits UDP {VXLAN_PORT} from {source_ip}; add that rule to one of them (awsvpc adds it to groups it created).",
                    many.join(", ")
                ),
            },
            Finding::NetworkAcl {
                acl,
                subnet,
                inbound,
                rule,
                peer,
            } => {
                let (dir, whose, prep) = if *inbound {
                    ("inbound", "the collector's subnet", "from")
                } else {
                    ("outbound", "the source's subnet", "to")
                };
                format!(
                    "network ACL {acl} of {whose} {subnet} denies {dir} UDP {VXLAN_PORT} {prep} {peer} (rule {rule}); allow it with a lower-numbered rule."
                )
            }
            Finding::NoRoute {
                source_vpc,
                target_vpc,
                table,
                target_ip,
            } => {
                let to = target_ip.map(|i| format!(" to {i}")).unwrap_or_default();
                let fix = match table {
                    Some(t) => format!("add a route{to} in {t}"),
                    None => format!("give the source's subnet a route table with a route{to}"),
                };
                format!(
                    "the source is in {source_vpc} and the target in {target_vpc} with no peering or transit gateway route; {fix}, or use a collector in {source_vpc}."
                )
            }
            Finding::FilterNeverMatches {
                eni,
                filter,
                narrowed,
                ips,
            } => {
                let ips: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
                format!(
                    "the mirror filter's rules accept nothing of what {eni} sends (capture filter '{filter}' narrowed to {narrowed}; {eni} is {}); change the capture filter.",
                    ips.join(", ")
                )
            }
            Finding::SkipMirror {
                eni,
                instance,
                packets,
                minutes,
            } => format!(
                "{eni}'s instance {instance} dropped {} mirrored packets in the last {minutes} minutes because its production traffic had priority (NetworkPacketsSkipMirrorIn/Out).",
                thousands(*packets)
            ),
            Finding::FilterNarrowed {
                eni,
                filter,
                narrowed,
            } => format!(
                "the mirror filter's rules accept nothing of what {eni} sends (capture filter '{filter}' narrowed to {narrowed}); the ENI may be idle."
            ),
            Finding::Open { eni } => {
                format!("the path to the collector is open; {eni} sent nothing that matches.")
            }
            Finding::NotChecked(u) => format!("could not check {} ({}).", u.what, u.why),
        };
        if !self.blocked()
            && !self.unchecked.is_empty()
            && !matches!(self.finding, Finding::NotChecked(_))
        {
            s.pop();
            let _ = write!(s, "; but awsvpc could not check");
            for (i, u) in self.unchecked.iter().enumerate() {
                let sep = if i == 0 { " " } else { ", nor " };
                let _ = write!(s, "{sep}{} ({})", u.what, u.why);
            }
            s.push('.');
        }
        s
    }

    /// The status-bar sentence for a source silent for `secs` seconds.
    pub fn sentence(&self, eni: &str, secs: u64) -> String {
        format!("Nothing from {eni} for {secs} s: {}", self.body())
    }
}

/// `12,345`.
fn thousands(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The narrowed rules in a few words: "TCP 8443", "UDP 5000-5100 10.77.1.20, ICMP".
pub fn summarize(rules: &[Rule]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for r in rules {
        let mut p = match r.protocol {
            None => "all".to_string(),
            Some(6) => "TCP".into(),
            Some(17) => "UDP".into(),
            Some(1) => "ICMP".into(),
            Some(58) => "ICMPv6".into(),
            Some(n) => format!("protocol {n}"),
        };
        if let Some((a, b)) = r.destination_ports.or(r.source_ports) {
            if a == b {
                let _ = write!(p, " {a}");
            } else {
                let _ = write!(p, " {a}-{b}");
            }
        }
        for c in [r.source, r.destination] {
            if c.prefix() > 0 {
                let full = if c.is_ipv4() { 32 } else { 128 };
                if c.prefix() == full {
                    let _ = write!(p, " {}", c.addr());
                } else {
                    let _ = write!(p, " {c}");
                }
            }
        }
        if !parts.contains(&p) {
            parts.push(p);
        }
    }
    if parts.is_empty() {
        "no rule".into()
    } else {
        parts.join(", ")
    }
}

/// Whether an accept rule can match some packet to or from one of `ips` (AWS matches a
/// rule's source and destination against the packet's own fields, both directions).
fn can_match(rule: &Rule, ips: &[IpAddr]) -> bool {
    ips.iter()
        .any(|ip| rule.source.contains(*ip) || rule.destination.contains(*ip))
}

/// Diagnoses one source's path from `facts`; `filter` is what the mirror was asked to
/// carry. The first check that closes the path is the finding.
pub fn diagnose(facts: &PathFacts, filter: &MirrorFilter) -> Diagnosis {
    let (s, t) = (&facts.source, &facts.target);
    let mut unchecked = Vec::new();
    let done = |finding, unchecked| Diagnosis { finding, unchecked };
    let (Some(src_ip), Some(dst_ip)) = (s.primary_ip(), t.primary_ip()) else {
        return Diagnosis::not_checked(Unchecked {
            what: "the path".into(),
            why: format!(
                "{} has no private address in EC2's answer",
                if s.primary_ip().is_none() {
                    &s.id
                } else {
                    &t.id
                }
            ),
        });
    };
    let flow = Flow::vxlan(src_ip, dst_ip);

    match &facts.routes {
        Ok(tables) => {
            if let route::Reach::NoRoute { table } = route::reach(tables, s, t) {
                return done(
                    Finding::NoRoute {
                        source_vpc: s.vpc.clone(),
                        target_vpc: t.vpc.clone(),
                        table,
                        target_ip: Some(dst_ip),
                    },
                    unchecked,
                );
            }
        }
        Err(u) if s.vpc != t.vpc => unchecked.push(u.clone()),
        Err(_) => {}
    }

    if s.subnet != t.subnet {
        match &facts.acls {
            Ok(acls) => {
                for (eni, egress) in [(s, true), (t, false)] {
                    match nacl::acl_of(acls, &eni.subnet, &eni.vpc) {
                        Some(acl) => {
                            let v = nacl::evaluate(acl, egress, &flow);
                            if !v.allow {
                                return done(
                                    Finding::NetworkAcl {
                                        acl: acl.id.clone(),
                                        subnet: eni.subnet.clone(),
                                        inbound: !egress,
                                        rule: v.rule_name(),
                                        peer: if egress { dst_ip } else { src_ip },
                                    },
                                    unchecked,
                                );
                            }
                        }
                        None => unchecked.push(Unchecked {
                            what: format!("the network ACL of {}", eni.subnet),
                            why: "EC2 listed none for it".into(),
                        }),
                    }
                }
            }
            Err(u) => unchecked.push(u.clone()),
        }
    }

    match &facts.groups {
        Ok(groups) => match sg::admits(groups, &flow, s) {
            sg::Admission::Allowed => {}
            sg::Admission::Denied => {
                return done(
                    Finding::SecurityGroup {
                        groups: t.groups.clone(),
                        collector: t.id.clone(),
                        source_ip: src_ip,
                    },
                    unchecked,
                )
            }
            sg::Admission::Unknown { prefix_list } => unchecked.push(Unchecked {
                what: format!("prefix list {prefix_list} of the collector's security group"),
                why: "its entries could not be read".into(),
            }),
        },
        Err(u) => unchecked.push(u.clone()),
    }

    let shown = filter.capture_filter.unwrap_or("");
    if !filter.accept_all && !s.ips.is_empty() && !filter.rules.iter().any(|r| can_match(r, &s.ips))
    {
        return done(
            Finding::FilterNeverMatches {
                eni: s.id.clone(),
                filter: shown.into(),
                narrowed: summarize(filter.rules),
                ips: s.ips.clone(),
            },
            unchecked,
        );
    }
    if let (Some(k), Some(instance)) = (facts.skipped, &s.instance) {
        if k.packets > 0 {
            return done(
                Finding::SkipMirror {
                    eni: s.id.clone(),
                    instance: instance.clone(),
                    packets: k.packets,
                    minutes: k.minutes,
                },
                unchecked,
            );
        }
    }
    if !filter.accept_all {
        return done(
            Finding::FilterNarrowed {
                eni: s.id.clone(),
                filter: shown.into(),
                narrowed: summarize(filter.rules),
            },
            unchecked,
        );
    }
    done(Finding::Open { eni: s.id.clone() }, unchecked)
}

#[cfg(test)]
mod tests;
