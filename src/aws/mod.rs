//! The AWS control plane: discovery for the options dialog, provisioning of mirror
//! resources, and teardown that never leaks.

pub mod checkip;
pub mod cleanup;
pub mod client;
pub mod discovery;
/// The SDK's errors as sentences live below the transports, which need them too.
pub use crate::aws_errors as errors;
pub mod guardian;
pub mod launch;
pub mod ledger;
pub mod path_facts;
pub mod provision;
pub mod reachability;
pub mod skip_mirror;
pub mod support;
pub mod tags;
pub mod teardown;
