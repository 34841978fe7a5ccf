//! Whether the mirror's VXLAN can reach the target: "Packets reach the target through the
//! source VPC's route table" (Traffic Mirroring, traffic-mirroring-targets.html). Within
//! one VPC the local route, which every route table has and which cannot be removed,
//! carries it. Between VPCs the source subnet's route table (its explicit association, or
//! else the VPC's main table: Amazon VPC User Guide, VPC_Route_Tables.html) needs a route
//! to the target's address through a peering connection or a transit gateway; the most
//! specific matching route decides (longest prefix match, RouteTables_Route_Priority).

use super::facts::{Eni, RouteTable, Via};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The same VPC: the local route.
    Local,
    /// Through this peering connection or transit gateway.
    Through(String),
    /// No route to the target through a peering connection or transit gateway; `table` is
    /// the source subnet's route table, when it has one.
    NoRoute { table: Option<String> },
}

pub fn reach(tables: &[RouteTable], source: &Eni, target: &Eni) -> Reach {
    if source.vpc == target.vpc {
        return Reach::Local;
    }
    let table = tables
        .iter()
        .find(|t| t.subnets.iter().any(|s| s == &source.subnet))
        .or_else(|| tables.iter().find(|t| t.main && t.vpc == source.vpc));
    let Some(table) = table else {
        return Reach::NoRoute { table: None };
    };
    let no_route = || Reach::NoRoute {
        table: Some(table.id.clone()),
    };
    let Some(ip) = target.primary_ip() else {
        return no_route();
    };
    let best = table
        .routes
        .iter()
        .filter(|r| r.destination.contains(ip))
        .max_by_key(|r| r.destination.prefix());
    match best.map(|r| &r.via) {
        Some(Via::Peering(id)) | Some(Via::TransitGateway(id)) => Reach::Through(id.clone()),
        _ => no_route(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::facts::{parse_cidr, Route};

    fn eni(vpc: &str, subnet: &str, ip: &str) -> Eni {
        Eni {
            id: format!("eni-{subnet}"),
            vpc: vpc.into(),
            subnet: subnet.into(),
            ips: vec![ip.parse().unwrap()],
            groups: vec![],
            instance: None,
        }
    }

    fn table(id: &str, main: bool, subnets: &[&str], routes: &[(&str, Via)]) -> RouteTable {
        RouteTable {
            id: id.into(),
            vpc: "vpc-a".into(),
            main,
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
            routes: routes
                .iter()
                .map(|(d, v)| Route {
                    destination: parse_cidr(d).unwrap(),
                    via: v.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn one_vpc_needs_only_the_local_route() {
        let s = eni("vpc-a", "subnet-1", "10.0.1.15");
        let t = eni("vpc-a", "subnet-2", "10.0.2.9");
        assert_eq!(reach(&[], &s, &t), Reach::Local);
    }

    /// The peering example of the VPC Peering Guide (peering-configurations-full-access):
    /// VPC A 10.0.0.0/16 routes VPC B's 172.31.0.0/16 to pcx-11112222.
    #[test]
    fn another_vpc_needs_a_peering_or_transit_gateway_route() {
        let s = eni("vpc-a", "subnet-1", "10.0.1.15");
        let t = eni("vpc-b", "subnet-9", "172.31.4.7");
        let local = ("10.0.0.0/16", Via::Local);
        let main = table(
            "rtb-main",
            true,
            &[],
            &[
                local.clone(),
                ("172.31.0.0/16", Via::Peering("pcx-11112222".into())),
            ],
        );
        assert_eq!(
            reach(std::slice::from_ref(&main), &s, &t),
            Reach::Through("pcx-11112222".into())
        );
        // An explicit association replaces the main table.
        let own = table(
            "rtb-own",
            false,
            &["subnet-1"],
            &[local.clone(), ("0.0.0.0/0", Via::Other("igw-1".into()))],
        );
        assert_eq!(
            reach(&[main.clone(), own], &s, &t),
            Reach::NoRoute {
                table: Some("rtb-own".into())
            }
        );
        // The most specific route decides: a blackhole /24 inside the peered /16.
        let hole = table(
            "rtb-main",
            true,
            &[],
            &[
                ("172.31.0.0/16", Via::TransitGateway("tgw-1".into())),
                ("172.31.4.0/24", Via::Blackhole),
            ],
        );
        assert_eq!(
            reach(&[hole], &s, &t),
            Reach::NoRoute {
                table: Some("rtb-main".into())
            }
        );
        let tgw = table(
            "rtb-main",
            true,
            &[],
            &[("172.16.0.0/12", Via::TransitGateway("tgw-1".into()))],
        );
        assert_eq!(reach(&[tgw], &s, &t), Reach::Through("tgw-1".into()));
        assert_eq!(reach(&[], &s, &t), Reach::NoRoute { table: None });
    }
}
