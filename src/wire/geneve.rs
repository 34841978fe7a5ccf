//! GENEVE (RFC 8926): what a Gateway Load Balancer target receives, with the mirror's VXLAN
//! inside it.

use super::{be16, Result, WireError};

pub const PORT: u16 = 6081;
const BASE_LEN: usize = 8;

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
        if buf[0] >> 6 != 0 {
            return Err(WireError::Malformed("GENEVE version is not 0"));
        }
        let header_len = BASE_LEN + usize::from(buf[0] & 0x3f) * 4;
        if buf.len() < header_len {
            return Err(WireError::Truncated("GENEVE options"));
        }
        Ok(Packet { buf, header_len })
    }

    /// EtherType of the payload (0x6558 = Ethernet, as GWLB sends).
    pub fn protocol(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.buf[4], self.buf[5], self.buf[6]])
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..]
    }
}
