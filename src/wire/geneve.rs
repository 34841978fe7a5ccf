//! GENEVE (RFC 8926): what a Gateway Load Balancer target receives, with the mirror's VXLAN
//! inside it.

use super::{array, be16, Field, Result, WireError};

pub const PORT: u16 = 6081;

mod field {
    use super::Field;
    /// Version (2 bits) and option length in 4-byte words (6 bits).
    pub const VER_OPT_LEN: usize = 0;
    pub const PROTOCOL: Field = 2..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED: usize = 7;
}

const BASE_LEN: usize = field::RESERVED + 1;

#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
    header_len: usize,
}

impl<'a> Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < BASE_LEN {
            return Err(WireError::Truncated("GENEVE"));
        }
        let first = buf[field::VER_OPT_LEN];
        if first >> 6 != 0 {
            return Err(WireError::Malformed("GENEVE version is not 0"));
        }
        let header_len = BASE_LEN + usize::from(first & 0x3f) * 4;
        if buf.len() < header_len {
            return Err(WireError::Truncated("GENEVE options"));
        }
        Ok(Packet { buf, header_len })
    }

    /// EtherType of the payload (0x6558 = Ethernet, as GWLB sends).
    pub fn protocol(&self) -> u16 {
        be16(self.buf, field::PROTOCOL)
    }

    pub fn vni(&self) -> u32 {
        let [a, b, c] = array::<3>(self.buf, field::VNI);
        u32::from_be_bytes([0, a, b, c])
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_skipped() {
        // Version 0, 1 word of options, protocol 0x6558, VNI 0x123456, option, payload.
        let b = [0x01, 0, 0x65, 0x58, 0x12, 0x34, 0x56, 0, 1, 2, 3, 4, 0xee];
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.protocol(), 0x6558);
        assert_eq!(p.vni(), 0x123456);
        assert_eq!(p.payload(), &[0xee]);
    }

    #[test]
    fn bad_version_and_short_options_are_refused() {
        assert_eq!(
            Packet::new_checked(&[0x40, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            WireError::Malformed("GENEVE version is not 0")
        );
        assert_eq!(
            Packet::new_checked(&[0x02, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]).unwrap_err(),
            WireError::Truncated("GENEVE options")
        );
        assert_eq!(
            Packet::new_checked(&[0; 7]).unwrap_err(),
            WireError::Truncated("GENEVE")
        );
    }
}
