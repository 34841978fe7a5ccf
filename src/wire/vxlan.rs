//! VXLAN (RFC 7348): the encapsulation AWS Traffic Mirroring uses on UDP 4789.

use super::{be32, Field, Result, WireError};

pub const PORT: u16 = 4789;
const FLAG_I: u8 = 0x08;

mod field {
    use super::Field;
    pub const FLAGS: usize = 0;
    /// The VNI (24 bits) and a reserved byte.
    pub const VNI_RESERVED: Field = 4..8;
}

pub const HEADER_LEN: usize = field::VNI_RESERVED.end;

/// A VXLAN header followed by an inner Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Validates the 8-byte header: the I flag must be set (RFC 7348 §5); the reserved
    /// bits are ignored on receipt, as the RFC asks.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated("VXLAN"));
        }
        if buf[field::FLAGS] & FLAG_I == 0 {
            return Err(WireError::Malformed("VXLAN I flag not set"));
        }
        Ok(Packet { buf })
    }

    pub fn flags(&self) -> u8 {
        self.buf[field::FLAGS]
    }

    /// The 24-bit VXLAN network identifier: the mirror session's VNI.
    #[inline]
    pub fn vni(&self) -> u32 {
        be32(self.buf, field::VNI_RESERVED) >> 8
    }

    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_aws_header() {
        let b = [0x08, 0, 0, 0, 0x54, 0xfa, 0x11, 0, 0xaa];
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.vni(), 5_569_041);
        assert_eq!(p.payload(), &[0xaa]);
    }

    #[test]
    fn refuses_short_and_unflagged() {
        assert_eq!(
            Packet::new_checked(&[8, 0, 0]).unwrap_err(),
            WireError::Truncated("VXLAN")
        );
        assert!(Packet::new_checked(&[0; 8]).is_err());
    }
}
