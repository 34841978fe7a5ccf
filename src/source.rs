//! What the capture's receive thread reads: [`DatagramSource`], the one interface of every
//! collector (the local socket, `crate::collector`) and every transport from a remote one
//! (`crate::transport`). It sits below both so that neither imports the other.

use crate::batch::Batch;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Why a source delivers no more.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A wait of the source's own (a reconnect) gave way to the capture's stop: not a
    /// failure. What was under way, for the log.
    #[error("stopped while {0}")]
    Stopped(String),
    /// The one sentence the user sees; the capture ends.
    #[error("{0}")]
    Failed(String),
    /// Receiving failed (the socket).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// For callers that only report (tests, benchmarks): the sentence as an I/O error.
impl From<SourceError> for io::Error {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Io(e) => e,
            e => io::Error::other(e.to_string()),
        }
    }
}

/// A source of mirror datagrams for the capture's receive thread.
pub trait DatagramSource: Send {
    /// Fills `batch` (clearing it first); waits at most about `collector::local::POLL` for
    /// the first datagram. Returns how many arrived (0 on timeout). An error ends the
    /// capture: a [`SourceError::Stopped`] quietly, any other with its sentence.
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        status: &dyn Fn(&str),
    ) -> Result<usize, SourceError>;
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
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        status: &dyn Fn(&str),
    ) -> Result<usize, SourceError> {
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
