//! Where mirrored datagrams are received. `local`: a UDP socket on this machine (a mirror
//! target, or a lab box receiving VXLAN). A remote collector's relay streams the same
//! datagrams through a transport (`crate::transport`); both fill the same batches. The
//! collectors reached through AWS (launched for a capture, or an existing one through
//! Session Manager) are in the capture plan (`crate::plan`), above the control plane.
//! `merged`: several sources as one (mirrored ENIs and ENIs captured on their own
//! instances).

pub mod local;
pub mod merged;

/// The trait lives below the collectors and the transports; named here too, where the
/// capture's callers look for it.
pub use crate::source::DatagramSource;
pub use local::Batch;
