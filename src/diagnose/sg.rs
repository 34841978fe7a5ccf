//! Security group semantics, as the Amazon VPC User Guide documents them
//! (https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html):
//! - rules only allow; there are no deny rules, and traffic no rule allows is dropped;
//! - the rules of every group on an interface are aggregated into one set;
//! - groups are stateful: a response to allowed traffic is allowed whatever the rules of
//!   the other direction, so only the inbound rules of the receiver decide a one-way flow
//!   such as the mirror's VXLAN (Traffic Mirroring: "Mirrored outbound traffic is not
//!   subject to security group evaluation", traffic-mirroring-targets.html);
//! - a rule's source is a CIDR block, a managed prefix list (its entries' CIDRs), or a
//!   referenced security group, which admits the private addresses of the network
//!   interfaces that have that group ("Security group referencing");
//! - protocol `-1` is every protocol and every port; port ranges apply to TCP and UDP.

use super::facts::{Eni, Peer, SecurityGroup};
use super::Flow;

/// Whether a flow is admitted inbound by a set of groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    Denied,
    /// Only a rule whose prefix list could not be read might allow it.
    Unknown {
        prefix_list: String,
    },
}

/// Inbound evaluation of `flow` against `groups`, with `sender` the interface the flow
/// comes from (for referenced groups).
pub fn admits(groups: &[SecurityGroup], flow: &Flow, sender: &Eni) -> Admission {
    let mut unknown = None;
    for rule in groups.iter().flat_map(|g| &g.inbound) {
        if !rule.protocol.matches(flow.protocol) {
            continue;
        }
        if rule.protocol.has_ports() {
            if let Some((from, to)) = rule.ports {
                if !(from..=to).contains(&flow.destination_port) {
                    continue;
                }
            }
        }
        for peer in &rule.peers {
            match peer {
                Peer::Cidr(c) if c.contains(flow.source) => return Admission::Allowed,
                Peer::Group(g) if sender.groups.iter().any(|s| s == g) => {
                    return Admission::Allowed
                }
                Peer::PrefixList {
                    cidrs: Some(cidrs), ..
                } if cidrs.iter().any(|c| c.contains(flow.source)) => return Admission::Allowed,
                Peer::PrefixList { id, cidrs: None } => unknown = Some(id.clone()),
                _ => {}
            }
        }
    }
    match unknown {
        Some(prefix_list) => Admission::Unknown { prefix_list },
        None => Admission::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::facts::{parse_cidr, Protocol, SgRule};

    fn eni(groups: &[&str]) -> Eni {
        Eni {
            id: "eni-src".into(),
            vpc: "vpc-1".into(),
            subnet: "subnet-1".into(),
            ips: vec!["10.0.1.15".parse().unwrap()],
            groups: groups.iter().map(|s| s.to_string()).collect(),
            instance: None,
        }
    }

    fn rule(protocol: &str, ports: Option<(u16, u16)>, peers: Vec<Peer>) -> SgRule {
        SgRule {
            protocol: Protocol::parse(protocol).unwrap(),
            ports,
            peers,
        }
    }

    fn cidr(s: &str) -> Peer {
        Peer::Cidr(parse_cidr(s).unwrap())
    }

    fn group(id: &str, inbound: Vec<SgRule>) -> SecurityGroup {
        SecurityGroup {
            id: id.into(),
            inbound,
        }
    }

    fn vxlan_from(ip: &str) -> Flow {
        Flow::vxlan(ip.parse().unwrap(), "10.0.2.9".parse().unwrap())
    }

    /// A web server's group as the user guides' examples write it (HTTP from anywhere, SSH
    /// from one address, everything from members of the same group: "Security group
    /// referencing", security-group-rules.html), against flows it must and must not admit.
    #[test]
    fn documented_examples() {
        let web = group(
            "sg-web",
            vec![
                // HTTP, TCP 80 from 0.0.0.0/0.
                rule("tcp", Some((80, 80)), vec![cidr("0.0.0.0/0")]),
                // SSH, TCP 22 from one computer's public address.
                rule("tcp", Some((22, 22)), vec![cidr("203.0.113.1/32")]),
                // Everything from network interfaces with this same group.
                rule("-1", None, vec![Peer::Group("sg-web".into())]),
            ],
        );
        let sender = eni(&[]);
        let t = |src: &str, proto: u8, port: u16| Flow {
            source: src.parse().unwrap(),
            destination: "10.0.2.9".parse().unwrap(),
            protocol: proto,
            destination_port: port,
        };
        let groups = [web];
        assert_eq!(
            admits(&groups, &t("198.51.100.7", 6, 80), &sender),
            Admission::Allowed
        );
        assert_eq!(
            admits(&groups, &t("198.51.100.7", 6, 22), &sender),
            Admission::Denied
        );
        assert_eq!(
            admits(&groups, &t("203.0.113.1", 6, 22), &sender),
            Admission::Allowed
        );
        assert_eq!(
            admits(&groups, &t("203.0.113.1", 17, 22), &sender),
            Admission::Denied
        );
        // The self-reference admits everything from a member, any protocol, any port.
        assert_eq!(
            admits(&groups, &t("10.0.1.15", 17, 4789), &eni(&["sg-web"])),
            Admission::Allowed
        );
        assert_eq!(
            admits(&groups, &t("10.0.1.15", 17, 4789), &eni(&["sg-other"])),
            Admission::Denied
        );
    }

    /// "When you first create a security group, it has no inbound rules": nothing in.
    #[test]
    fn a_new_group_admits_nothing() {
        assert_eq!(
            admits(
                &[group("sg-new", vec![])],
                &vxlan_from("10.0.1.15"),
                &eni(&[])
            ),
            Admission::Denied
        );
        assert_eq!(
            admits(&[], &vxlan_from("10.0.1.15"), &eni(&[])),
            Admission::Denied
        );
    }

    /// "If you associate multiple security groups with a resource, the rules from each
    /// security group are effectively aggregated to create one set of rules."
    #[test]
    fn groups_are_aggregated() {
        let a = group(
            "sg-a",
            vec![rule("tcp", Some((22, 22)), vec![cidr("0.0.0.0/0")])],
        );
        let b = group(
            "sg-b",
            vec![rule("udp", Some((4789, 4789)), vec![cidr("10.0.0.0/16")])],
        );
        let f = vxlan_from("10.0.1.15");
        assert_eq!(
            admits(std::slice::from_ref(&a), &f, &eni(&[])),
            Admission::Denied
        );
        assert_eq!(admits(&[a, b], &f, &eni(&[])), Admission::Allowed);
    }

    #[test]
    fn protocols_ports_and_families() {
        let f = vxlan_from("10.0.1.15");
        let one = |r: SgRule| admits(&[group("sg", vec![r])], &f, &eni(&[]));
        assert_eq!(
            one(rule("-1", None, vec![cidr("10.0.1.15/32")])),
            Admission::Allowed
        );
        assert_eq!(
            one(rule("17", Some((4000, 5000)), vec![cidr("10.0.0.0/8")])),
            Admission::Allowed
        );
        assert_eq!(
            one(rule("udp", Some((4790, 4790)), vec![cidr("10.0.0.0/8")])),
            Admission::Denied
        );
        assert_eq!(
            one(rule("tcp", Some((4789, 4789)), vec![cidr("10.0.0.0/8")])),
            Admission::Denied
        );
        assert_eq!(
            one(rule("udp", Some((4789, 4789)), vec![cidr("10.0.2.0/24")])),
            Admission::Denied
        );
        assert_eq!(
            one(rule("udp", Some((4789, 4789)), vec![cidr("::/0")])),
            Admission::Denied,
            "IPv6 rule, IPv4 flow"
        );
        // Ports on a protocol without ports mean nothing (AWS stores -1/-1 there).
        assert_eq!(
            one(rule("-1", Some((22, 22)), vec![cidr("0.0.0.0/0")])),
            Admission::Allowed
        );
    }

    #[test]
    fn prefix_lists() {
        let f = vxlan_from("10.0.1.15");
        let pl = |cidrs: Option<Vec<&str>>| {
            let r = rule(
                "udp",
                Some((4789, 4789)),
                vec![Peer::PrefixList {
                    id: "pl-1".into(),
                    cidrs: cidrs.map(|v| v.iter().map(|c| parse_cidr(c).unwrap()).collect()),
                }],
            );
            admits(&[group("sg", vec![r])], &f, &eni(&[]))
        };
        assert_eq!(
            pl(Some(vec!["192.168.0.0/16", "10.0.1.0/24"])),
            Admission::Allowed
        );
        assert_eq!(pl(Some(vec!["192.168.0.0/16"])), Admission::Denied);
        assert_eq!(
            pl(None),
            Admission::Unknown {
                prefix_list: "pl-1".into()
            }
        );
    }
}
