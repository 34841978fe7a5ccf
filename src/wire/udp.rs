//! UDP header view.

use super::{be16, Result, WireError};

pub const HEADER_LEN: usize = 8;

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
        be16(self.buf, 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }

    /// The payload, bounded by the UDP length field when it is consistent (a capture may
    /// carry Ethernet padding after the datagram).
    pub fn payload(&self) -> &'a [u8] {
        let len = usize::from(be16(self.buf, 4));
        let end = if (HEADER_LEN..=self.buf.len()).contains(&len) {
            len
        } else {
            self.buf.len()
        };
        &self.buf[HEADER_LEN..end]
    }
}
