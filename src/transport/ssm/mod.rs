//! AWS Systems Manager Session Manager as a transport, without AWS's
//! session-manager-plugin: the data channel protocol implemented here (reference:
//! `shared/reference/transports.md` §1).
//!
//! Why not the `aws-ssm-bridge` crate (the only Rust implementation found): it dials with
//! tokio-tungstenite over native-tls (OpenSSL on Linux, a second TLS stack beside the
//! rustls/aws-lc-rs one the AWS SDK already builds) and pulls crossterm by default; it
//! implements smux port forwarding, shells and KMS, none of which a relay stream needs; and
//! it is async-only while the capture's receive thread is synchronous. What is needed — the
//! codec, acknowledgement/reordering/retransmission, the handshake and a basic-mode port
//! session — is about 1 000 lines here, on two small new crates (tungstenite, sha1 under it).
//!
//! - [`message`]: the binary message codec and the JSON payloads (no AWS dependency).
//! - [`channel`]: the data channel client over WebSocket (rustls), a port session's byte
//!   stream with acknowledgement, reordering and retransmission.
//! - [`session`]: the control plane (`DescribeInstanceInformation`, `StartSession`,
//!   `TerminateSession`) and its one-sentence errors.
//! - [`collector`]: [`collector::SsmCollector`], a [`crate::source::DatagramSource`] reading
//!   the relay stream through a port-forwarding session.

pub mod message;

/// The snaplen to default to over SSM: the inner frame's Ethernet, IP and TCP headers with
/// options fit, so a 1 MB/s session carries about 5 000 packets/s instead of ~650 full
/// 1500-byte frames.
pub const DEFAULT_SNAPLEN: u32 = 128;

#[cfg(feature = "aws")]
pub mod channel;
#[cfg(feature = "aws")]
pub mod collector;
#[cfg(feature = "aws")]
pub mod session;
