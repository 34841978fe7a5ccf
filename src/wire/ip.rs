//! IPv4 and IPv6 views, enough to reach the outer UDP header of a mirror datagram.

use super::{be16, Result, WireError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PROTO_UDP: u8 = 17;

/// An IP packet of either version: the outer header of a mirrored datagram.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    payload: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        match buf.first().map(|b| b >> 4) {
            Some(4) => Self::v4(buf),
            Some(6) => Self::v6(buf),
            Some(_) => Err(WireError::Malformed("not an IPv4 or IPv6 packet")),
            None => Err(WireError::Truncated("IP")),
        }
    }

    fn v4(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < 20 {
            return Err(WireError::Truncated("IPv4"));
        }
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if ihl < 20 || buf.len() < ihl {
            return Err(WireError::Malformed("IPv4 header length invalid"));
        }
        // Fragments other than the first carry no UDP header; the mirror never fragments
        // its VXLAN (AWS drops rather than fragments), so refuse them.
        let frag = be16(buf, 6);
        if frag & 0x1fff != 0 || frag & 0x2000 != 0 {
            return Err(WireError::Malformed("outer IPv4 packet is a fragment"));
        }
        let total = usize::from(be16(buf, 2));
        let end = if (ihl..=buf.len()).contains(&total) {
            total
        } else {
            buf.len()
        };
        let mut s = [0u8; 4];
        s.copy_from_slice(&buf[12..16]);
        let mut d = [0u8; 4];
        d.copy_from_slice(&buf[16..20]);
        Ok(Packet {
            src: IpAddr::V4(Ipv4Addr::from(s)),
            dst: IpAddr::V4(Ipv4Addr::from(d)),
            protocol: buf[9],
            payload: &buf[ihl..end],
        })
    }

    fn v6(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < 40 {
            return Err(WireError::Truncated("IPv6"));
        }
        let plen = usize::from(be16(buf, 4));
        let end = if 40 + plen <= buf.len() && plen != 0 {
            40 + plen
        } else {
            buf.len()
        };
        let mut s = [0u8; 16];
        s.copy_from_slice(&buf[8..24]);
        let mut d = [0u8; 16];
        d.copy_from_slice(&buf[24..40]);
        // Extension headers are not followed: a mirror datagram has none.
        Ok(Packet {
            src: IpAddr::V6(Ipv6Addr::from(s)),
            dst: IpAddr::V6(Ipv6Addr::from(d)),
            protocol: buf[6],
            payload: &buf[40..end],
        })
    }

    pub fn src(&self) -> IpAddr {
        self.src
    }

    pub fn dst(&self) -> IpAddr {
        self.dst
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}
