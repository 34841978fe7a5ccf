//! UDP header view (RFC 768).

use super::{be16, Field, Result, WireError};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

pub const HEADER_LEN: usize = field::CHECKSUM.end;

#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated("UDP"));
        }
        Ok(Packet { buf })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf, field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf, field::DST_PORT)
    }

    /// The payload, bounded by the UDP length field when it is consistent (a capture may
    /// carry Ethernet padding after the datagram).
    pub fn payload(&self) -> &'a [u8] {
        let len = usize::from(be16(self.buf, field::LENGTH));
        let end = if (HEADER_LEN..=self.buf.len()).contains(&len) {
            len
        } else {
            self.buf.len()
        };
        &self.buf[HEADER_LEN..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_payload_bounded_by_length() {
        // 4789 -> 4789, length 10 (2 payload bytes), then Ethernet padding.
        let b = [0xc0, 0x01, 0x12, 0xb5, 0, 10, 0, 0, 0xaa, 0xbb, 0, 0, 0];
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (49153, 4789));
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn inconsistent_length_keeps_what_was_captured() {
        for len in [0u8, 7, 200] {
            let b = [0, 1, 0, 2, 0, len, 0, 0, 0xaa];
            assert_eq!(Packet::new_checked(&b).unwrap().payload(), &[0xaa]);
        }
    }

    #[test]
    fn short_is_truncated() {
        assert_eq!(
            Packet::new_checked(&[0; 7]).unwrap_err(),
            WireError::Truncated("UDP")
        );
    }
}
