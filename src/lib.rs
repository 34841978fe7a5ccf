//! awsvpc: a Wireshark extcap that delivers live packets from AWS VPC Traffic Mirroring.
//!
//! The modules follow the data path: the manifest and the extcap protocol, the collector
//! that receives mirror datagrams, decapsulation over typed `wire` views, routing to one
//! pcapng interface per mirror source, the capture filter, and the pcapng sink.

pub mod argv;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod aws_errors;
pub mod aws_profiles;
pub mod batch;
pub mod capture;
pub mod civil;
pub mod collector;
pub mod config;
pub mod decap;
pub mod diagnose;
pub mod extcap;
pub mod files;
pub mod filter;
pub mod help;
pub mod install;
pub mod log;
pub mod manifest;
#[cfg(feature = "aws")]
pub mod mirror;
pub mod narrow;
pub mod offline;
#[cfg(feature = "aws")]
pub mod path_watch;
pub mod pcap_reader;
pub mod pipeline;
pub mod plan;
pub mod relay;
pub mod sink;
pub mod source;
pub mod sources;
pub mod sys;
pub mod transport;
pub mod wire;
