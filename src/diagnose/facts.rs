//! What the diagnosis knows about the mirror path, in AWS's own terms but without the SDK:
//! the two ENIs, the target's security groups, the network ACLs and route tables. Filled by
//! `aws::path_facts`; written by hand in tests.

use crate::narrow::Cidr;
use std::net::IpAddr;

/// A network interface at one end of the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    pub id: String,
    pub vpc: String,
    pub subnet: String,
    /// The primary private IPv4 address first (AWS sends a session's VXLAN from it), then
    /// the others and the IPv6 addresses.
    pub ips: Vec<IpAddr>,
    pub groups: Vec<String>,
    /// The instance it is attached to, for the SkipMirror metrics.
    pub instance: Option<String>,
}

impl Eni {
    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }
}

/// An IP protocol as security groups and network ACLs name it: `-1` is every protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    All,
    Number(u8),
}

impl Protocol {
    /// `-1`, a number, or the names the EC2 API accepts for security group rules
    /// (`tcp`, `udp`, `icmp`, `icmpv6`). `None` for anything else.
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "-1" | "all" => Protocol::All,
            "tcp" => Protocol::Number(6),
            "udp" => Protocol::Number(17),
            "icmp" => Protocol::Number(1),
            "icmpv6" => Protocol::Number(58),
            n => Protocol::Number(n.parse().ok()?),
        })
    }

    pub fn matches(self, protocol: u8) -> bool {
        match self {
            Protocol::All => true,
            Protocol::Number(n) => n == protocol,
        }
    }

    /// Port ranges only mean something for TCP and UDP; any other rule covers every port.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Number(6) | Protocol::Number(17))
    }
}

/// Whom a security group rule admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Cidr(Cidr),
    /// Traffic from network interfaces that have this group.
    Group(String),
    /// A managed prefix list, with its entries when they could be read.
    PrefixList {
        id: String,
        cidrs: Option<Vec<Cidr>>,
    },
}

/// One inbound rule of a security group (an IpPermission may name several peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgRule {
    pub protocol: Protocol,
    /// Inclusive; `None` is every port.
    pub ports: Option<(u16, u16)>,
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub inbound: Vec<SgRule>,
}

/// One network ACL entry. `*` is rule number 32767 in the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    pub number: i32,
    pub egress: bool,
    pub allow: bool,
    pub protocol: Protocol,
    /// IPv4 (`CidrBlock`) or IPv6 (`Ipv6CidrBlock`).
    pub cidr: Cidr,
    pub ports: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAcl {
    pub id: String,
    pub vpc: String,
    pub default: bool,
    pub subnets: Vec<String>,
    pub entries: Vec<AclEntry>,
}

/// Where a route sends matching traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The VPC's own CIDRs.
    Local,
    Peering(String),
    TransitGateway(String),
    /// A route whose target was deleted.
    Blackhole,
    /// An internet, NAT or virtual private gateway, an ENI…: not a way into another VPC's
    /// private addresses.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Cidr,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub id: String,
    pub vpc: String,
    pub main: bool,
    pub subnets: Vec<String>,
    pub routes: Vec<Route>,
}

/// A check that could not be made, and why: "could not check X (permission Y missing)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchecked {
    /// What was not checked: "the network ACLs".
    pub what: String,
    /// Why, as a parenthesis: "permission ec2:DescribeNetworkAcls missing".
    pub why: String,
}

pub type Fetched<T> = Result<T, Unchecked>;

/// Everything the diagnosis of one source's path reads.
#[derive(Debug, Clone)]
pub struct PathFacts {
    pub source: Eni,
    pub target: Eni,
    /// The target ENI's security groups.
    pub groups: Fetched<Vec<SecurityGroup>>,
    /// The network ACLs of both VPCs.
    pub acls: Fetched<Vec<NetworkAcl>>,
    /// The route tables of the source's VPC.
    pub routes: Fetched<Vec<RouteTable>>,
    /// Mirrored packets AWS dropped at the source's instance in the last minutes
    /// (NetworkPacketsSkipMirrorIn + Out), when known.
    pub skipped: Option<SkipMirror>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkipMirror {
    pub packets: u64,
    pub minutes: u32,
}

/// `10.0.0.0/16`, `::/0`, or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let s = s.trim();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= width)?,
        None => width,
    };
    Some(Cidr::new(addr, prefix))
}
