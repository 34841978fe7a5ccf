//! Linux "cooked" capture headers (LINKTYPE_LINUX_SLL and SLL2), which `tcpdump -i any`
//! writes; `awsvpc decap` reads captures taken that way on a mirror target.

use super::{be16, Result, WireError};

/// SLL v1: 16 bytes, protocol type at offset 14.
pub fn sll_payload(buf: &[u8]) -> Result<(u16, &[u8])> {
    if buf.len() < 16 {
        return Err(WireError::Truncated("Linux cooked (SLL)"));
    }
    Ok((be16(buf, 14), &buf[16..]))
}

/// SLL v2: 20 bytes, protocol type at offset 0.
pub fn sll2_payload(buf: &[u8]) -> Result<(u16, &[u8])> {
    if buf.len() < 20 {
        return Err(WireError::Truncated("Linux cooked (SLL2)"));
    }
    Ok((be16(buf, 0), &buf[20..]))
}
