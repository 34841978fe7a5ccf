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
/// The on-host part (`onhost.py`), sent before [`SOURCE`] for an on-host capture only:
/// a launched collector's user data holds `relay.py` alone, under EC2's 16 KB.
pub const ON_HOST_SOURCE: &str = include_str!("onhost.py");

/// The source the relay of `relay` runs: [`SOURCE`], with the on-host part first when it
/// captures on the ENI's own instance.
pub fn source_for(relay: &RelayOptions) -> std::borrow::Cow<'static, str> {
    match relay.on_host {
        None => SOURCE.into(),
        Some(_) => format!("{ON_HOST_SOURCE}\n{SOURCE}").into(),
    }
}

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
    /// On-host capture (the relay on the ENI's own instance) instead of the UDP socket.
    pub on_host: Option<OnHost>,
}

/// What the relay needs to capture an ENI on its own instance (`relay.py --on-host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnHost {
    /// The ENI's MAC: the relay captures the device that has it.
    pub mac: String,
    /// The VNI its frames are wrapped in, and the address they are said to come from: the
    /// capture's key for this ENI's interface.
    pub vni: u32,
    pub src_ip: std::net::Ipv4Addr,
    /// The capture filter compiled to classic BPF, as `tcpdump -ddd` prints it (commas for
    /// line breaks): digits, spaces and commas only.
    pub bpf: Option<String>,
    /// The transport is Session Manager: leave out the SSM agent's own connections.
    pub over_ssm: bool,
}

impl RelayOptions {
    /// The relay's command-line arguments: numbers, IP and MAC literals, and a BPF program
    /// (digits, spaces, commas), so single quotes make each safe for the remote shell.
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
        if let Some(h) = &self.on_host {
            v.extend([
                "--on-host".to_string(),
                h.mac.clone(),
                "--vni".to_string(),
                h.vni.to_string(),
                "--src-ip".to_string(),
                h.src_ip.to_string(),
                // Root only to open the packet socket (relay.py), then nobody.
                "--drop-to".to_string(),
                "nobody".to_string(),
            ]);
            if let Some(b) = &h.bpf {
                v.extend(["--bpf".to_string(), b.clone()]);
            }
            if h.over_ssm {
                v.push("--exclude-agent".to_string());
            }
        }
        v
    }
}
