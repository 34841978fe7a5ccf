//! One batch of received mirror datagrams: preallocated slots that a collector fills and
//! the pipeline reads, so that the per-datagram path allocates nothing.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Largest datagram kept whole. AWS targets have a 9001-byte MTU; longer datagrams are
/// kept truncated (their inner IP header still gives the original length).
pub const SLOT: usize = 9216;
/// Datagrams per receive call (`recvmmsg` on Linux).
pub const BATCH: usize = 64;

/// Preallocated storage for one batch of datagrams.
pub struct Batch {
    data: Vec<u8>,
    lens: [usize; BATCH],
    truncated: [bool; BATCH],
    srcs: [IpAddr; BATCH],
    stamps: [Duration; BATCH],
    count: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            data: vec![0u8; SLOT * BATCH],
            lens: [0; BATCH],
            truncated: [false; BATCH],
            srcs: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); BATCH],
            stamps: [Duration::ZERO; BATCH],
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i`: payload, sender address, kernel receive time since the Unix epoch, and
    /// whether it was longer than a slot.
    #[inline]
    pub fn get(&self, i: usize) -> (&[u8], IpAddr, Duration, bool) {
        let off = i * SLOT;
        (
            &self.data[off..off + self.lens[i]],
            self.srcs[i],
            self.stamps[i],
            self.truncated[i],
        )
    }

    /// The batch's storage for a receiver that fills it in place (Linux's `recvmmsg`):
    /// slot `i` is `data[i * SLOT..][..SLOT]`. [`Batch::set_filled`] then says how many.
    pub(crate) fn slots_mut(&mut self) -> Slots<'_> {
        self.count = 0;
        Slots {
            data: &mut self.data,
            lens: &mut self.lens,
            truncated: &mut self.truncated,
            srcs: &mut self.srcs,
            stamps: &mut self.stamps,
        }
    }

    pub(crate) fn set_filled(&mut self, n: usize) {
        self.count = n.min(BATCH);
    }

    pub fn clear(&mut self) {
        self.count = 0;
    }

    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Appends one datagram (kept truncated to a slot); false when the batch is full.
    pub fn push(&mut self, d: &[u8], src: IpAddr, ts: Duration) -> bool {
        if self.count == BATCH {
            return false;
        }
        let n = d.len().min(SLOT);
        let off = self.count * SLOT;
        self.data[off..off + n].copy_from_slice(&d[..n]);
        self.lens[self.count] = n;
        self.truncated[self.count] = d.len() > SLOT;
        self.srcs[self.count] = src;
        self.stamps[self.count] = ts;
        self.count += 1;
        true
    }

    /// Appends datagram `i` of `other` as it is (its truncation included); false when full.
    pub fn push_from(&mut self, other: &Batch, i: usize) -> bool {
        let (d, src, ts, truncated) = other.get(i);
        let pushed = self.push(d, src, ts);
        if pushed {
            self.truncated[self.count - 1] = truncated;
        }
        pushed
    }

    /// Fills the batch from byte slices (benchmarks and tests, without a socket).
    pub fn fill_from<'a>(&mut self, items: impl IntoIterator<Item = (&'a [u8], IpAddr, Duration)>) {
        self.count = 0;
        for (d, src, ts) in items.into_iter().take(BATCH) {
            self.push(d, src, ts);
        }
    }
}

/// A batch's storage, lent to a receiver that fills it in place.
pub(crate) struct Slots<'a> {
    pub data: &'a mut [u8],
    pub lens: &'a mut [usize; BATCH],
    pub truncated: &'a mut [bool; BATCH],
    pub srcs: &'a mut [IpAddr; BATCH],
    pub stamps: &'a mut [Duration; BATCH],
}
