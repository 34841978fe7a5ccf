//! The traffic-mirror filter rule model: actions, address blocks, rules and how they cover
//! and join one another.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{V4, V6};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Reject,
}

/// An address block with its host bits cleared, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub(super) addr: IpAddr,
    pub(super) prefix: u8,
}

impl Cidr {
    /// `prefix` is clamped to the family's width; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let prefix = prefix.min(width(addr));
        Cidr {
            addr: from_bits(addr.is_ipv6(), bits(addr) & mask(addr.is_ipv6(), prefix)),
            prefix,
        }
    }

    /// 0.0.0.0/0 or ::/0.
    pub fn any(v6: bool) -> Self {
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        Cidr { addr, prefix: 0 }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.addr.is_ipv6()
            && bits(ip) & mask(ip.is_ipv6(), self.prefix) == bits(self.addr)
    }

    pub(super) fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The smallest block holding both (same family).
    pub(super) fn join(&self, other: &Cidr) -> Cidr {
        let v6 = self.addr.is_ipv6();
        let diff = bits(self.addr) ^ bits(other.addr);
        let same = if v6 {
            diff.leading_zeros()
        } else {
            (diff as u32).leading_zeros()
        };
        let prefix = self.prefix.min(other.prefix).min(same as u8);
        Cidr::new(self.addr, prefix)
    }

    pub(super) fn intersect(a: Option<Cidr>, b: Option<Cidr>) -> Option<Option<Cidr>> {
        match (a, b) {
            (None, x) | (x, None) => Some(x),
            (Some(x), Some(y)) if x.is_ipv4() != y.is_ipv4() => None,
            (Some(x), Some(y)) if x.covers(&y) => Some(Some(y)),
            (Some(x), Some(y)) if y.covers(&x) => Some(Some(x)),
            _ => None,
        }
    }

    pub(super) fn fam(&self) -> u8 {
        if self.is_ipv4() {
            V4
        } else {
            V6
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub(super) fn width(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

pub(super) fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(super) fn from_bits(v6: bool, b: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(b as u32))
    }
}

pub(super) fn mask(v6: bool, prefix: u8) -> u128 {
    let all = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let host = all.checked_shr(u32::from(prefix)).unwrap_or(0);
    all & !host
}

/// One traffic-mirror filter rule. Ports only apply with protocol 6 or 17 (AWS's rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// IANA protocol number; `None` is every protocol.
    pub protocol: Option<u8>,
    pub source: Cidr,
    pub destination: Cidr,
    pub source_ports: Option<(u16, u16)>,
    pub destination_ports: Option<(u16, u16)>,
    pub description: String,
}

impl Rule {
    /// Accepts every packet of one address family.
    pub fn accept_all(v6: bool) -> Self {
        Rule {
            action: Action::Accept,
            protocol: None,
            source: Cidr::any(v6),
            destination: Cidr::any(v6),
            source_ports: None,
            destination_ports: None,
            description: format!("awsvpc: all {}", if v6 { "IPv6" } else { "IPv4" }),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        !self.source.is_ipv4()
    }

    pub(super) fn is_universal(&self) -> bool {
        self.protocol.is_none() && self.source.prefix == 0 && self.destination.prefix == 0
    }

    pub(super) fn has_ports(&self) -> bool {
        self.source_ports.is_some() || self.destination_ports.is_some()
    }

    /// Every packet `other` matches, `self` matches too.
    pub(super) fn covers(&self, other: &Rule) -> bool {
        self.is_ipv6() == other.is_ipv6()
            && (self.protocol.is_none() || self.protocol == other.protocol)
            && self.source.covers(&other.source)
            && self.destination.covers(&other.destination)
            && range_covers(self.source_ports, other.source_ports)
            && range_covers(self.destination_ports, other.destination_ports)
    }

    /// The narrowest rule matching everything either matches (same family).
    pub(super) fn join(&self, other: &Rule) -> Rule {
        let protocol = if self.protocol == other.protocol {
            self.protocol
        } else {
            None
        };
        let ports = |a: Option<(u16, u16)>, b: Option<(u16, u16)>| match (protocol, a, b) {
            (Some(_), Some(x), Some(y)) => Some((x.0.min(y.0), x.1.max(y.1))),
            _ => None,
        };
        Rule {
            action: Action::Accept,
            protocol,
            source: self.source.join(&other.source),
            destination: self.destination.join(&other.destination),
            source_ports: ports(self.source_ports, other.source_ports),
            destination_ports: ports(self.destination_ports, other.destination_ports),
            description: String::new(),
        }
    }

    pub(super) fn sort_key(&self) -> impl Ord {
        (
            self.is_ipv6(),
            self.protocol,
            self.source,
            self.destination,
            self.source_ports,
            self.destination_ports,
        )
    }
}

pub(super) fn range_covers(a: Option<(u16, u16)>, b: Option<(u16, u16)>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a.0 <= b.0 && b.1 <= a.1,
    }
}

pub(super) fn range_size(r: Option<(u16, u16)>) -> u64 {
    r.map_or(65536, |(a, b)| u64::from(b) - u64::from(a) + 1)
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Accept => "accept",
            Action::Reject => "reject",
        };
        let proto = match self.protocol {
            None => "all".to_string(),
            Some(6) => "tcp".to_string(),
            Some(17) => "udp".to_string(),
            Some(1) => "icmp".to_string(),
            Some(58) => "icmp6".to_string(),
            Some(p) => format!("proto {p}"),
        };
        let ports = |r: Option<(u16, u16)>| match r {
            None => String::new(),
            Some((a, b)) if a == b => format!(" port {a}"),
            Some((a, b)) => format!(" ports {a}-{b}"),
        };
        write!(
            f,
            "{action} {proto} from {}{} to {}{}",
            self.source,
            ports(self.source_ports),
            self.destination,
            ports(self.destination_ports)
        )
    }
}
