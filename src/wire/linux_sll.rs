//! Linux "cooked" capture headers (LINKTYPE_LINUX_SLL and SLL2), which `tcpdump -i any`
//! writes; `awsvpc decap` reads captures taken that way on a mirror target.

use super::{be16, Field, Result, WireError};

mod field {
    use super::Field;
    /// SLL v1: packet type, ARPHRD type, address length, 8 address bytes, then protocol.
    pub const SLL_PROTOCOL: Field = 14..16;
    pub const SLL_LEN: usize = 16;
    /// SLL v2: protocol first, then reserved, interface index, ARPHRD, type, address.
    pub const SLL2_PROTOCOL: Field = 0..2;
    pub const SLL2_LEN: usize = 20;
}

/// SLL v1: the protocol type and what follows the 16-byte header.
pub fn sll_payload(buf: &[u8]) -> Result<(u16, &[u8])> {
    if buf.len() < field::SLL_LEN {
        return Err(WireError::Truncated("Linux cooked (SLL)"));
    }
    Ok((be16(buf, field::SLL_PROTOCOL), &buf[field::SLL_LEN..]))
}

/// SLL v2: the protocol type and what follows the 20-byte header.
pub fn sll2_payload(buf: &[u8]) -> Result<(u16, &[u8])> {
    if buf.len() < field::SLL2_LEN {
        return Err(WireError::Truncated("Linux cooked (SLL2)"));
    }
    Ok((be16(buf, field::SLL2_PROTOCOL), &buf[field::SLL2_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_give_protocol_and_payload() {
        let mut v1 = vec![0u8; 14];
        v1.extend_from_slice(&[0x08, 0x00, 0x45]);
        assert_eq!(sll_payload(&v1).unwrap(), (0x0800, &[0x45][..]));
        let mut v2 = vec![0x86, 0xdd];
        v2.extend_from_slice(&[0; 18]);
        v2.push(0x60);
        assert_eq!(sll2_payload(&v2).unwrap(), (0x86dd, &[0x60][..]));
    }

    #[test]
    fn short_headers_are_truncated() {
        assert!(sll_payload(&[0; 15]).is_err());
        assert!(sll2_payload(&[0; 19]).is_err());
        assert_eq!(sll_payload(&[0; 16]).unwrap().1, &[] as &[u8]);
    }
}
