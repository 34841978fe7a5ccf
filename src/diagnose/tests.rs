//! Each finding from facts written by hand, with its sentence.

use super::facts::*;
use super::*;

fn eni(id: &str, vpc: &str, subnet: &str, ip: &str, groups: &[&str]) -> Eni {
    Eni {
        id: id.into(),
        vpc: vpc.into(),
        subnet: subnet.into(),
        ips: vec![ip.parse().unwrap()],
        groups: groups.iter().map(|s| s.to_string()).collect(),
        instance: Some("i-0src".into()),
    }
}

fn default_acl(vpc: &str) -> NetworkAcl {
    let all = |egress| AclEntry {
        number: 100,
        egress,
        allow: true,
        protocol: Protocol::All,
        cidr: parse_cidr("0.0.0.0/0").unwrap(),
        ports: None,
    };
    NetworkAcl {
        id: format!("acl-{vpc}"),
        vpc: vpc.into(),
        default: true,
        subnets: vec![],
        entries: vec![all(false), all(true)],
    }
}

fn vxlan_group(id: &str, from: &str) -> SecurityGroup {
    SecurityGroup {
        id: id.into(),
        inbound: vec![SgRule {
            protocol: Protocol::Number(17),
            ports: Some((4789, 4789)),
            peers: vec![Peer::Cidr(parse_cidr(from).unwrap())],
        }],
    }
}

/// An open path: one VPC, two subnets, default ACLs, the collector admits the VPC.
fn open() -> PathFacts {
    PathFacts {
        source: eni("eni-0abc", "vpc-a", "subnet-1", "10.0.1.15", &["sg-src"]),
        target: eni("eni-0def", "vpc-a", "subnet-2", "10.0.2.9", &["sg-0123"]),
        groups: Ok(vec![vxlan_group("sg-0123", "10.0.0.0/16")]),
        acls: Ok(vec![default_acl("vpc-a")]),
        routes: Ok(vec![]),
        skipped: None,
    }
}

const ALL: MirrorFilter = MirrorFilter {
    capture_filter: None,
    rules: &[],
    accept_all: true,
};

fn narrowed(f: &str) -> crate::narrow::Narrowing {
    crate::narrow::narrow(Some(f), 8).unwrap()
}

fn filter<'a>(f: &'a str, n: &'a crate::narrow::Narrowing) -> MirrorFilter<'a> {
    MirrorFilter {
        capture_filter: Some(f),
        rules: &n.rules,
        accept_all: n.accept_all,
    }
}

#[test]
fn every_check_passes() {
    let d = diagnose(&open(), &ALL);
    assert_eq!(
        d.sentence("eni-0abc", 10),
        "Nothing from eni-0abc for 10 s: the path to the collector is open; eni-0abc sent nothing that matches."
    );
}

#[test]
fn security_group_without_the_vxlan_rule() {
    let mut f = open();
    f.groups = Ok(vec![vxlan_group("sg-0123", "10.9.0.0/16")]);
    assert_eq!(
        diagnose(&f, &ALL).sentence("eni-0abc", 10),
        "Nothing from eni-0abc for 10 s: security group sg-0123 of the collector eni-0def admits no UDP 4789 from 10.0.1.15; add that rule (awsvpc adds it to groups it created)."
    );
}

#[test]
fn network_acl_denies_inbound_with_its_rule_number() {
    let mut f = open();
    let mut acl = default_acl("vpc-a");
    acl.id = "acl-0456".into();
    acl.default = false;
    acl.subnets = vec!["subnet-2".into()];
    acl.entries.push(AclEntry {
        number: 90,
        egress: false,
        allow: false,
        protocol: Protocol::Number(17),
        cidr: parse_cidr("0.0.0.0/0").unwrap(),
        ports: Some((4789, 4789)),
    });
    f.acls = Ok(vec![default_acl("vpc-a"), acl]);
    assert_eq!(
        diagnose(&f, &ALL).body(),
        "network ACL acl-0456 of the collector's subnet subnet-2 denies inbound UDP 4789 from 10.0.1.15 (rule 90); allow it with a lower-numbered rule."
    );
    // In one subnet no ACL is crossed.
    f.target.subnet = "subnet-1".into();
    assert!(!diagnose(&f, &ALL).blocked());
}

#[test]
fn network_acl_denies_outbound_at_the_source_by_its_final_rule() {
    let mut f = open();
    let mut acl = default_acl("vpc-a");
    acl.entries.retain(|e| !e.egress);
    f.acls = Ok(vec![acl]);
    assert_eq!(
        diagnose(&f, &ALL).body(),
        "network ACL acl-vpc-a of the source's subnet subnet-1 denies outbound UDP 4789 to 10.0.2.9 (rule *); allow it with a lower-numbered rule."
    );
}

#[test]
fn different_vpcs_without_a_route() {
    let mut f = open();
    f.target.vpc = "vpc-b".into();
    f.target.ips = vec!["172.31.4.7".parse().unwrap()];
    f.acls = Ok(vec![default_acl("vpc-a"), default_acl("vpc-b")]);
    f.routes = Ok(vec![RouteTable {
        id: "rtb-1".into(),
        vpc: "vpc-a".into(),
        main: true,
        subnets: vec![],
        routes: vec![Route {
            destination: parse_cidr("10.0.0.0/16").unwrap(),
            via: Via::Local,
        }],
    }]);
    f.groups = Ok(vec![vxlan_group("sg-0123", "0.0.0.0/0")]);
    assert_eq!(
        diagnose(&f, &ALL).body(),
        "the source is in vpc-a and the target in vpc-b with no peering or transit gateway route; add a route to 172.31.4.7 in rtb-1, or use a collector in vpc-a."
    );
    if let Ok(t) = &mut f.routes {
        t[0].routes.push(Route {
            destination: parse_cidr("172.31.0.0/16").unwrap(),
            via: Via::Peering("pcx-1".into()),
        });
    }
    assert!(!diagnose(&f, &ALL).blocked());
}

#[test]
fn filter_rules_that_cannot_match_the_eni() {
    let n = narrowed("src host 10.9.9.9 and dst host 10.8.8.8");
    let d = diagnose(
        &open(),
        &filter("src host 10.9.9.9 and dst host 10.8.8.8", &n),
    );
    assert_eq!(
        d.body(),
        "the mirror filter's rules accept nothing of what eni-0abc sends (capture filter 'src host 10.9.9.9 and dst host 10.8.8.8' narrowed to all 10.9.9.9 10.8.8.8; eni-0abc is 10.0.1.15); change the capture filter."
    );
    // IPv6 only, for an ENI with only IPv4.
    let n = narrowed("ip6");
    assert!(diagnose(&open(), &filter("ip6", &n)).blocked());
}

#[test]
fn narrowed_filter_on_an_open_path() {
    let n = narrowed("port 8443 and tcp");
    assert_eq!(
        diagnose(&open(), &filter("port 8443 and tcp", &n)).body(),
        "the mirror filter's rules accept nothing of what eni-0abc sends (capture filter 'port 8443 and tcp' narrowed to TCP 8443); the ENI may be idle."
    );
}

#[test]
fn skip_mirror_drops() {
    let mut f = open();
    f.skipped = Some(SkipMirror {
        packets: 12_345,
        minutes: 5,
    });
    assert_eq!(
        diagnose(&f, &ALL).body(),
        "eni-0abc's instance i-0src dropped 12,345 mirrored packets in the last 5 minutes because its production traffic had priority (NetworkPacketsSkipMirrorIn/Out)."
    );
}

#[test]
fn a_missing_permission_is_said_not_fatal() {
    let mut f = open();
    f.acls = Err(Unchecked {
        what: "the network ACLs".into(),
        why: "permission ec2:DescribeNetworkAcls missing".into(),
    });
    assert_eq!(
        diagnose(&f, &ALL).body(),
        "the path to the collector is open; eni-0abc sent nothing that matches; but awsvpc could not check the network ACLs (permission ec2:DescribeNetworkAcls missing)."
    );
    // A closed security group is still found.
    f.groups = Ok(vec![]);
    assert!(diagnose(&f, &ALL).blocked());
}

#[test]
fn summaries_and_thousands() {
    assert_eq!(summarize(&narrowed("tcp port 443").rules), "TCP 443");
    assert_eq!(
        summarize(&narrowed("host 10.77.1.20 and (udp portrange 5000-5100 or icmp)").rules),
        "ICMP 10.77.1.20, UDP 5000-5100 10.77.1.20"
    );
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(1_234_567), "1,234,567");
}
