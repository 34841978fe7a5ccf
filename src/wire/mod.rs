//! Typed, zero-copy views over packet bytes, in the style of smoltcp's `wire` module.
//!
//! Each view wraps a byte slice that `new_checked` has proven long enough for the fixed
//! header, so accessors index without further checks and never panic. Header layouts are
//! named byte ranges in a `field` module per view, not offsets in code. Nothing here copies
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

/// A header field: its byte range.
pub(crate) type Field = core::ops::Range<usize>;

/// A big-endian u16 at `field` (two bytes; the caller's view has checked the length).
#[inline]
pub(crate) fn be16(b: &[u8], field: Field) -> u16 {
    u16::from_be_bytes([b[field.start], b[field.start + 1]])
}

/// A big-endian u32 at `field` (four bytes; the caller's view has checked the length).
#[inline]
pub(crate) fn be32(b: &[u8], field: Field) -> u32 {
    let s = field.start;
    u32::from_be_bytes([b[s], b[s + 1], b[s + 2], b[s + 3]])
}

/// `N` bytes at `field` as an array.
#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], field: Field) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[field.start..field.start + N]);
    a
}
