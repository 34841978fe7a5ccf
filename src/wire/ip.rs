//! IPv4 (RFC 791) and IPv6 (RFC 8200) views, enough to reach the outer UDP header of a
//! mirror datagram.

use super::{array, be16, Field, Result, WireError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PROTO_UDP: u8 = 17;

mod v4 {
    use super::Field;
    /// Version (4 bits) and header length in 4-byte words (4 bits).
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Field = 2..4;
    /// Flags (3 bits) and fragment offset (13 bits).
    pub const FLAGS_FRAG: Field = 6..8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
    pub const MIN_LEN: usize = DST.end;
    pub const MORE_FRAGMENTS: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;
}

mod v6 {
    use super::Field;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: Field = 8..24;
    pub const DST: Field = 24..40;
    pub const LEN: usize = DST.end;
}

/// An IP packet of either version: the outer header of a mirrored datagram.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
    v6: bool,
    header_len: usize,
    /// End of the packet: its stated length when consistent, else what was captured.
    end: usize,
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
        if buf.len() < v4::MIN_LEN {
            return Err(WireError::Truncated("IPv4"));
        }
        let ihl = usize::from(buf[v4::VER_IHL] & 0x0f) * 4;
        if ihl < v4::MIN_LEN || buf.len() < ihl {
            return Err(WireError::Malformed("IPv4 header length invalid"));
        }
        // Fragments other than the first carry no UDP header; the mirror never fragments
        // its VXLAN (AWS drops rather than fragments), so refuse them.
        let frag = be16(buf, v4::FLAGS_FRAG);
        if frag & v4::OFFSET_MASK != 0 || frag & v4::MORE_FRAGMENTS != 0 {
            return Err(WireError::Malformed("outer IPv4 packet is a fragment"));
        }
        let total = usize::from(be16(buf, v4::TOTAL_LEN));
        let end = if (ihl..=buf.len()).contains(&total) {
            total
        } else {
            buf.len()
        };
        Ok(Packet {
            buf,
            v6: false,
            header_len: ihl,
            end,
        })
    }

    fn v6(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < v6::LEN {
            return Err(WireError::Truncated("IPv6"));
        }
        let plen = usize::from(be16(buf, v6::PAYLOAD_LEN));
        // A zero payload length is a jumbogram's (or a broken one): keep what was captured.
        let end = if v6::LEN + plen <= buf.len() && plen != 0 {
            v6::LEN + plen
        } else {
            buf.len()
        };
        // Extension headers are not followed: a mirror datagram has none.
        Ok(Packet {
            buf,
            v6: true,
            header_len: v6::LEN,
            end,
        })
    }

    pub fn src(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(array::<16>(self.buf, v6::SRC)))
        } else {
            IpAddr::V4(Ipv4Addr::from(array::<4>(self.buf, v4::SRC)))
        }
    }

    pub fn dst(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(array::<16>(self.buf, v6::DST)))
        } else {
            IpAddr::V4(Ipv4Addr::from(array::<4>(self.buf, v4::DST)))
        }
    }

    pub fn protocol(&self) -> u8 {
        if self.v6 {
            self.buf[v6::NEXT_HEADER]
        } else {
            self.buf[v4::PROTOCOL]
        }
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_header(total: u16, frag: u16) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, PROTO_UDP, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[198, 51, 100, 1, 198, 51, 100, 2]);
        h
    }

    #[test]
    fn ipv4_addresses_protocol_and_payload_without_padding() {
        let mut b = v4_header(22, 0x4000); // DF set, not a fragment
        b.extend_from_slice(&[0xaa, 0xbb, 0, 0]); // 2 bytes of payload, 2 of padding
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.src(), IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(p.dst(), IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn ipv4_options_and_bad_lengths() {
        let mut b = v4_header(0, 0);
        b[0] = 0x46; // one word of options
        b.extend_from_slice(&[1, 1, 1, 1, 0xcc]);
        // Total length 0 is inconsistent: the captured bytes decide.
        assert_eq!(Packet::new_checked(&b).unwrap().payload(), &[0xcc]);
        b[0] = 0x44; // IHL below 5
        assert!(Packet::new_checked(&b).is_err());
        b[0] = 0x4f; // IHL past the buffer
        assert!(Packet::new_checked(&b).is_err());
    }

    #[test]
    fn ipv4_fragments_are_refused() {
        for frag in [0x2000, 0x0001, 0x3fff] {
            assert_eq!(
                Packet::new_checked(&v4_header(20, frag)).unwrap_err(),
                WireError::Malformed("outer IPv4 packet is a fragment")
            );
        }
    }

    #[test]
    fn ipv6_addresses_and_payload_length() {
        let mut b = vec![0x60, 0, 0, 0, 0, 1, PROTO_UDP, 64];
        b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        b.extend_from_slice(&[0; 11]);
        b.push(1);
        b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        b.extend_from_slice(&[0; 11]);
        b.push(2);
        b.extend_from_slice(&[0xdd, 0xee]);
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.src(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst(), "2001:db8::2".parse::<IpAddr>().unwrap());
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.payload(), &[0xdd]);
        b[5] = 0; // payload length 0: keep what was captured
        assert_eq!(Packet::new_checked(&b).unwrap().payload(), &[0xdd, 0xee]);
    }

    #[test]
    fn short_and_foreign_are_refused() {
        assert_eq!(
            Packet::new_checked(&[]).unwrap_err(),
            WireError::Truncated("IP")
        );
        assert_eq!(
            Packet::new_checked(&[0x45; 19]).unwrap_err(),
            WireError::Truncated("IPv4")
        );
        assert_eq!(
            Packet::new_checked(&[0x60; 39]).unwrap_err(),
            WireError::Truncated("IPv6")
        );
        assert!(Packet::new_checked(&[0x50; 40]).is_err());
    }
}
