//! Network ACL semantics, as AWS documents them (Amazon VPC User Guide,
//! https://docs.aws.amazon.com/vpc/latest/userguide/vpc-network-acls.html and
//! default-network-acl.html; the NetworkAclEntry API reference):
//! - a subnet is associated with exactly one network ACL (the VPC's default one unless
//!   another was associated);
//! - inbound and outbound rules are separate lists, evaluated in ascending rule number;
//!   the first rule that matches decides, allow or deny, whatever higher rules say;
//! - the last rule, `*` (32767 in the API), denies what no numbered rule matched, and
//!   cannot be removed;
//! - ACLs are stateless: a response is evaluated again in the other direction. The mirror's
//!   VXLAN is one-way UDP, so only the outbound rules of the source's subnet and the
//!   inbound rules of the target's subnet apply, and only when the two subnets differ
//!   (traffic inside one subnet does not cross its ACL);
//! - a rule's port range is the traffic's destination port, for TCP and UDP only.

use super::facts::{AclEntry, NetworkAcl};
use super::Flow;

/// What `*` is in the API.
pub const ASTERISK: i32 = 32_767;

/// The verdict of one ACL direction, with the rule that gave it (`None`: no rule matched,
/// which is the same as `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allow: bool,
    pub rule: Option<i32>,
}

impl Verdict {
    /// `90`, or `*` for the final rule.
    pub fn rule_name(&self) -> String {
        match self.rule {
            Some(n) if n < ASTERISK => n.to_string(),
            _ => "*".into(),
        }
    }
}

/// The ACL `subnet` is associated with: its explicit association, or else the VPC's
/// default ACL.
pub fn acl_of<'a>(acls: &'a [NetworkAcl], subnet: &str, vpc: &str) -> Option<&'a NetworkAcl> {
    acls.iter()
        .find(|a| a.subnets.iter().any(|s| s == subnet))
        .or_else(|| acls.iter().find(|a| a.default && a.vpc == vpc))
}

/// Evaluates `flow` against the `egress` (outbound) or inbound rules of `acl`. For
/// inbound the rule's CIDR is the traffic's source; for outbound its destination.
pub fn evaluate(acl: &NetworkAcl, egress: bool, flow: &Flow) -> Verdict {
    let mut entries: Vec<&AclEntry> = acl.entries.iter().filter(|e| e.egress == egress).collect();
    entries.sort_by_key(|e| e.number);
    let peer = if egress {
        flow.destination
    } else {
        flow.source
    };
    for e in entries {
        if !e.protocol.matches(flow.protocol) || !e.cidr.contains(peer) {
            continue;
        }
        if e.protocol.has_ports() {
            if let Some((from, to)) = e.ports {
                if !(from..=to).contains(&flow.destination_port) {
                    continue;
                }
            }
        }
        return Verdict {
            allow: e.allow,
            rule: Some(e.number),
        };
    }
    Verdict {
        allow: false,
        rule: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::facts::{parse_cidr, Protocol};

    fn entry(
        number: i32,
        egress: bool,
        allow: bool,
        proto: &str,
        cidr: &str,
        ports: Option<(u16, u16)>,
    ) -> AclEntry {
        AclEntry {
            number,
            egress,
            allow,
            protocol: Protocol::parse(proto).unwrap(),
            cidr: parse_cidr(cidr).unwrap(),
            ports,
        }
    }

    fn acl(entries: Vec<AclEntry>) -> NetworkAcl {
        NetworkAcl {
            id: "acl-1".into(),
            vpc: "vpc-1".into(),
            default: false,
            subnets: vec!["subnet-1".into()],
            entries,
        }
    }

    fn flow(src: &str, dst: &str, proto: u8, port: u16) -> Flow {
        Flow {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
            protocol: proto,
            destination_port: port,
        }
    }

    /// The default network ACL (default-network-acl.html): rule 100 allows all IPv4, 101
    /// all IPv6, `*` denies; the same outbound.
    #[test]
    fn the_default_acl_allows_everything() {
        let mut e = Vec::new();
        for egress in [false, true] {
            e.push(entry(100, egress, true, "-1", "0.0.0.0/0", None));
            e.push(entry(101, egress, true, "-1", "::/0", None));
            e.push(entry(ASTERISK, egress, false, "-1", "0.0.0.0/0", None));
            e.push(entry(ASTERISK, egress, false, "-1", "::/0", None));
        }
        let a = acl(e);
        for egress in [false, true] {
            let v = evaluate(
                &a,
                egress,
                &Flow::vxlan("10.0.1.15".parse().unwrap(), "10.0.2.9".parse().unwrap()),
            );
            assert_eq!(
                v,
                Verdict {
                    allow: true,
                    rule: Some(100)
                }
            );
            let v6 = evaluate(&a, egress, &flow("2001:db8::1", "2001:db8::2", 17, 4789));
            assert_eq!(v6.rule, Some(101));
        }
    }

    /// The custom ACL example of vpc-network-acls.html (a public web subnet): inbound 100
    /// HTTP, 110 HTTPS, 120 SSH from one range, 130 ephemeral TCP 32768-65535, `*` deny;
    /// outbound 100 HTTP, 110 HTTPS, 120 ephemeral TCP, `*` deny.
    #[test]
    fn the_documented_custom_acl() {
        let a = acl(vec![
            entry(100, false, true, "6", "0.0.0.0/0", Some((80, 80))),
            entry(110, false, true, "6", "0.0.0.0/0", Some((443, 443))),
            entry(120, false, true, "6", "192.0.2.0/24", Some((22, 22))),
            entry(130, false, true, "6", "0.0.0.0/0", Some((32768, 65535))),
            entry(ASTERISK, false, false, "-1", "0.0.0.0/0", None),
            entry(100, true, true, "6", "0.0.0.0/0", Some((80, 80))),
            entry(110, true, true, "6", "0.0.0.0/0", Some((443, 443))),
            entry(120, true, true, "6", "0.0.0.0/0", Some((32768, 65535))),
            entry(ASTERISK, true, false, "-1", "0.0.0.0/0", None),
        ]);
        let inbound = |src: &str, proto: u8, port: u16| {
            evaluate(&a, false, &flow(src, "10.0.1.5", proto, port))
        };
        assert_eq!(inbound("198.51.100.1", 6, 80).rule, Some(100));
        assert_eq!(inbound("198.51.100.1", 6, 443).rule, Some(110));
        assert_eq!(
            inbound("192.0.2.7", 6, 22),
            Verdict {
                allow: true,
                rule: Some(120)
            }
        );
        assert_eq!(
            inbound("198.51.100.1", 6, 22),
            Verdict {
                allow: false,
                rule: Some(ASTERISK)
            }
        );
        assert_eq!(inbound("198.51.100.1", 6, 40000).rule, Some(130));
        // The mirror's VXLAN is UDP: only `*` matches it, in either direction.
        let v = inbound("10.0.1.15", 17, 4789);
        assert_eq!((v.allow, v.rule_name()), (false, "*".to_string()));
        let out = evaluate(
            &a,
            true,
            &Flow::vxlan("10.0.1.5".parse().unwrap(), "10.0.2.9".parse().unwrap()),
        );
        assert!(!out.allow);
    }

    /// "AWS processes the entries in the network ACL according to the rule numbers, in
    /// ascending order" (NetworkAclEntry, Firewall Manager API reference, which describes
    /// EC2's entries), and the first match decides, whatever order the API lists them in.
    #[test]
    fn the_lowest_number_wins() {
        let deny_first = acl(vec![
            entry(200, false, true, "-1", "0.0.0.0/0", None),
            entry(90, false, false, "17", "10.0.0.0/16", Some((4789, 4789))),
        ]);
        let f = Flow::vxlan("10.0.1.15".parse().unwrap(), "10.0.2.9".parse().unwrap());
        assert_eq!(
            evaluate(&deny_first, false, &f),
            Verdict {
                allow: false,
                rule: Some(90)
            }
        );
        let allow_first = acl(vec![
            entry(90, false, false, "17", "10.0.0.0/16", Some((4789, 4789))),
            entry(80, false, true, "udp", "10.0.1.0/24", None),
        ]);
        assert_eq!(
            evaluate(&allow_first, false, &f),
            Verdict {
                allow: true,
                rule: Some(80)
            }
        );
        // Outbound rules do not decide inbound traffic, and a flow no rule matches is denied.
        let outbound_only = acl(vec![entry(100, true, true, "-1", "0.0.0.0/0", None)]);
        assert_eq!(
            evaluate(&outbound_only, false, &f),
            Verdict {
                allow: false,
                rule: None
            }
        );
        assert_eq!(evaluate(&outbound_only, false, &f).rule_name(), "*");
        // Inbound matches the source address, outbound the destination.
        let by_peer = acl(vec![
            entry(10, false, true, "-1", "10.0.1.15/32", None),
            entry(10, true, true, "-1", "10.0.2.9/32", None),
        ]);
        assert!(evaluate(&by_peer, false, &f).allow && evaluate(&by_peer, true, &f).allow);
        let back = Flow::vxlan("10.0.2.9".parse().unwrap(), "10.0.1.15".parse().unwrap());
        assert!(!evaluate(&by_peer, false, &back).allow && !evaluate(&by_peer, true, &back).allow);
    }

    #[test]
    fn a_subnet_without_association_has_the_default_acl() {
        let mut custom = acl(vec![]);
        custom.subnets = vec!["subnet-custom".into()];
        let mut default = acl(vec![]);
        default.id = "acl-default".into();
        default.default = true;
        default.subnets.clear();
        let acls = [custom, default];
        assert_eq!(acl_of(&acls, "subnet-custom", "vpc-1").unwrap().id, "acl-1");
        assert_eq!(
            acl_of(&acls, "subnet-other", "vpc-1").unwrap().id,
            "acl-default"
        );
        assert!(acl_of(&acls, "subnet-other", "vpc-2").is_none());
    }
}
