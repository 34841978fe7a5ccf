//! The relay: a small Python program that runs on a remote collector, receives the mirror
//! on UDP 4789 with kernel timestamps and drop counts, and writes the framed stream of
//! [`stream`] on stdout. It is embedded here at build time so that what runs on a user's
//! instance is exactly what `awsvpc relay-source` prints. [`remote`]: how it is started
//! there (the command over SSH, the listener over Session Manager).

pub mod remote;
pub mod stream;
#[cfg(feature = "aws")]
pub mod user_data;

/// The relay's source, as shipped.
pub const SOURCE: &str = include_str!("relay.py");

/// Relay options for a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    pub listen_addr: std::net::IpAddr,
    pub listen_port: u16,
    /// Bytes of each UDP payload to keep (VXLAN header + inner frame); `None`: all.
    pub snaplen: Option<u32>,
    /// Seconds the relay waits for its port to be free: after a lost tunnel the previous
    /// relay holds it until its write watchdog fires.
    pub bind_wait_s: u32,
}

impl RelayOptions {
    /// The relay's command-line arguments. Only numbers and IP literals: safe for the remote
    /// shell without quoting.
    pub fn args(&self) -> Vec<String> {
        let mut v = vec![
            "--port".to_string(),
            self.listen_port.to_string(),
            "--addr".to_string(),
            self.listen_addr.to_string(),
        ];
        if let Some(s) = self.snaplen {
            // The inner snaplen plus the 8-byte VXLAN header the relay keeps.
            v.extend(["--snaplen".to_string(), (s + 8).to_string()]);
        }
        if self.bind_wait_s > 0 {
            v.extend(["--bind-wait".to_string(), self.bind_wait_s.to_string()]);
        }
        v
    }
}
