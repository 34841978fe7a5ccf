//! Where mirrored datagrams are received. `local`: a UDP socket on this machine (a mirror
//! target, or a lab box receiving VXLAN). A remote collector's relay streams the same
//! datagrams through a transport (`crate::transport`); both fill the same batches.
//! `launched`: the collector awsvpc launches for a capture, and how its stream is reached;
//! `ssm_host`: an existing collector reached through Session Manager. `merged`: several
//! sources as one (mirrored ENIs and ENIs captured on their own instances).

#[cfg(feature = "aws")]
pub mod launched;
pub mod local;
pub mod merged;
#[cfg(feature = "aws")]
pub mod ssm_host;

pub use local::Batch;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A source of mirror datagrams for the capture's receive thread.
pub trait DatagramSource: Send {
    /// Fills `batch` (clearing it first); waits at most about [`local::POLL`] for the first
    /// datagram. Returns how many arrived (0 on timeout). An error ends the capture: its
    /// text is the one sentence the user sees.
    fn recv_batch(&mut self, batch: &mut Batch, status: &dyn Fn(&str)) -> io::Result<usize>;
    /// Datagrams dropped before awsvpc saw them (kernel receive buffer, on whichever host
    /// receives the mirror), since the capture started.
    fn drops(&self) -> u64;
    /// What the status bar says while waiting for the first packet.
    fn describe(&self) -> String;
    /// The capture's stop flag, given before the first batch, so that a long wait of the
    /// source's own (a reconnect) gives way to a stop.
    fn watch_stop(&mut self, _stop: Arc<AtomicBool>) {}
}

/// A source chosen at run time (e.g. a launched collector's SSH or SSM stream).
impl<S: DatagramSource + ?Sized> DatagramSource for Box<S> {
    fn recv_batch(&mut self, batch: &mut Batch, status: &dyn Fn(&str)) -> io::Result<usize> {
        (**self).recv_batch(batch, status)
    }

    fn drops(&self) -> u64 {
        (**self).drops()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn watch_stop(&mut self, stop: Arc<AtomicBool>) {
        (**self).watch_stop(stop)
    }
}
