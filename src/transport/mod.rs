//! Transports from a remote collector to this machine. Each runs the relay
//! (`crate::relay`) on the collector and reads its stream; the capture sees a
//! [`crate::source::DatagramSource`] like the local socket. One relay client
//! ([`relay_client`]) serves them all; each transport is a [`relay_client::Link`]: the
//! system `ssh` ([`ssh`]), the pinned in-process SSH to a launched collector (`pinned`), a
//! Session Manager port session ([`ssm`]).

mod inflow;
#[cfg(feature = "aws")]
pub mod pinned;
pub mod relay_client;
pub mod ssh;
mod ssh_link;
pub mod ssm;

use std::time::Duration;

/// A tunnel that delivered nothing (not even the relay's 1 s heartbeat) for this long is
/// lost.
pub const SILENCE: Duration = Duration::from_secs(5);
/// A tunnel lost again this soon after a reconnect ends the capture instead of flapping.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(30);
