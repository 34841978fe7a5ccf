//! Where decapsulated frames are written.

pub mod pcapng;
