//! What the capture's receive thread reads: [`DatagramSource`], the one interface of every
//! collector (the local socket, `crate::collector`) and every transport from a remote one
//! (`crate::transport`). It sits below both so that neither imports the other.

use crate::batch::Batch;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A source of mirror datagrams for the capture's receive thread.
pub trait DatagramSource: Send {
    /// Fills `batch` (clearing it first); waits at most about `collector::local::POLL` for
    /// the first datagram. Returns how many arrived (0 on timeout). An error ends the
    /// capture: its text is the one sentence the user sees.
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
