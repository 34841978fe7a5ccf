//! Ethernet II frames, with 802.1Q / 802.1ad tags skipped to reach the L3 header.

use super::{array, be16, Field, Result, WireError};

mod field {
    use super::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    /// A VLAN tag: its TPID sits where the EtherType would, then 2 bytes of TCI.
    pub const TAG_LEN: usize = 4;
}

/// Of the IPv4 header, as far as the original length needs it.
mod ipv4 {
    use super::Field;
    pub const TOTAL_LEN: Field = 2..4;
}

/// Of the IPv6 header, likewise.
mod ipv6 {
    use super::Field;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const HEADER_LEN: usize = 40;
}

pub const HEADER_LEN: usize = field::ETHERTYPE.end;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// More tags than this is not a real frame; stop rather than walk attacker-chosen input.
const MAX_TAGS: usize = 4;

pub type MacAddr = [u8; 6];

#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    buf: &'a [u8],
}

impl<'a> Frame<'a> {
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated("Ethernet"));
        }
        Ok(Frame { buf })
    }

    #[inline]
    pub fn dst(&self) -> MacAddr {
        array(self.buf, field::DST)
    }

    #[inline]
    pub fn src(&self) -> MacAddr {
        array(self.buf, field::SRC)
    }

    /// The EtherType after any VLAN tags, and the offset of the L3 header.
    /// `None` when the tags run past the captured bytes.
    #[inline]
    pub fn l3(&self) -> Option<(u16, usize)> {
        let mut off = field::ETHERTYPE.start;
        for _ in 0..=MAX_TAGS {
            let ty = be16(self.buf.get(off..off + 2)?, 0..2);
            match ty {
                ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => off += field::TAG_LEN,
                _ => return Some((ty, off + 2)),
            }
        }
        None
    }

    /// The frame's length on the wire as its IP header states it, when that header survived
    /// truncation. Used to rebuild pcapng's original length for truncated mirror packets.
    #[inline]
    pub fn wire_len_from_ip(&self) -> Option<usize> {
        let (ty, off) = self.l3()?;
        let l3 = self.buf.get(off..)?;
        match ty {
            ETHERTYPE_IPV4 if l3.len() >= ipv4::TOTAL_LEN.end && l3[0] >> 4 == 4 => {
                Some(off + usize::from(be16(l3, ipv4::TOTAL_LEN)))
            }
            ETHERTYPE_IPV6 if l3.len() >= ipv6::PAYLOAD_LEN.end && l3[0] >> 4 == 6 => {
                Some(off + ipv6::HEADER_LEN + usize::from(be16(l3, ipv6::PAYLOAD_LEN)))
            }
            _ => None,
        }
    }

    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

pub fn format_mac(m: &MacAddr) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub fn parse_mac(s: &str) -> Option<MacAddr> {
    let mut m = [0u8; 6];
    let mut parts = s.trim().split([':', '-']);
    for byte in &mut m {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_len_through_vlan_tags() {
        // dst, src, 802.1Q tag, IPv4 with total length 100, truncated after 4 bytes of IP.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0x00, 0x00, 100]);
        assert_eq!(
            Frame::new_checked(&f).unwrap().wire_len_from_ip(),
            Some(118)
        );
    }

    #[test]
    fn endless_tags_stop() {
        let mut f = vec![0u8; 12];
        for _ in 0..10 {
            f.extend_from_slice(&[0x81, 0x00, 0, 0]);
        }
        assert_eq!(Frame::new_checked(&f).unwrap().l3(), None);
    }

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("02:85:69:C2:ab:02").unwrap();
        assert_eq!(format_mac(&m), "02:85:69:c2:ab:02");
        assert!(parse_mac("02:85:69:c2:ab").is_none());
        assert!(parse_mac("02:85:69:c2:ab:02:03").is_none());
        assert!(parse_mac("0x:85:69:c2:ab:02").is_none());
    }
}
