//! Typed, zero-copy views over packet bytes, in the style of smoltcp's `wire` module.
//!
//! Each view wraps a byte slice that `new_checked` has proven long enough for the fixed
//! header, so accessors index without further checks and never panic. Nothing here copies
//! or allocates: the hot path hands out sub-slices of the datagram it was given.

pub mod ethernet;
pub mod geneve;
pub mod ip;
pub mod linux_sll;
pub mod udp;
pub mod vxlan;

/// Why bytes could not be read as the header they were supposed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0} header truncated")]
    Truncated(&'static str),
    #[error("{0}")]
    Malformed(&'static str),
}

pub type Result<T> = core::result::Result<T, WireError>;

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
