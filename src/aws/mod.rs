//! The AWS control plane: discovery for the options dialog, provisioning of mirror
//! resources, and teardown that never leaks.

pub mod ledger;
pub mod support;
pub mod tags;
