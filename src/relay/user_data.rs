//! The cloud-init user data of a collector instance awsvpc launches for one capture: the
//! whole remote side of an ephemeral collector, and all of it readable (`awsvpc relay-source
//! --user-data` prints an example; EC2's console shows the real one).
//!
//! - SSH: the capture's own ed25519 **host key** (so awsvpc can pin it: no trust on first
//!   use) and its client key for a user `awsvpc` with no password and no sudo, and sshd
//!   client-alive checks. The relay itself is sent over the SSH session at connect time, as
//!   for a host collector.
//! - SSM: the relay (gzip + base64) and a listener on the instance's loopback that runs it
//!   for each port-forwarding session, as user `awsvpc`.
//! - Both: the watchdog (`watchdog.sh`) that powers the instance off, and so terminates it,
//!   once no relay has run for a while.
//!
//! User data is visible to anyone who may call `ec2:DescribeInstanceAttribute` and to
//! processes on the instance; the host key's secrecy only matters while this one instance
//! lives, and the client key in it is public.

use super::RelayOptions;
use std::fmt::Write as _;
use std::io::Write as _;

/// The watchdog, as installed on the collector.
pub const WATCHDOG: &str = include_str!("watchdog.sh");
/// The user the relay runs as.
pub const USER: &str = "awsvpc";
/// EC2's limit for user data, before base64.
pub const LIMIT: usize = 16 * 1024;
/// Where the SSM listener finds the relay.
pub const RELAY_PATH: &str = "/usr/local/lib/awsvpc/relay.py";
const WATCHDOG_PATH: &str = "/usr/local/lib/awsvpc/watchdog.sh";
const LISTENER_PATH: &str = "/usr/local/lib/awsvpc/listener.py";
/// sshd notices a client that vanished (a laptop that lost power) within 30 s and closes
/// the channel, so the relay exits and the watchdog can count: otherwise an idle mirror's
/// heartbeats would take hours to fill the dead connection and stall the relay.
const SSHD_DROP_IN: (&str, &str) = (
    "/etc/ssh/sshd_config.d/50-awsvpc.conf",
    "ClientAliveInterval 10\nClientAliveCountMax 3\n",
);

/// What the collector's SSH server is given.
#[derive(Debug, Clone)]
pub struct SshSetup {
    /// OpenSSH private key (PEM) of the host key awsvpc pins.
    pub host_private: String,
    /// `ssh-ed25519 AAAA…` of the same key.
    pub host_public: String,
    /// `ssh-ed25519 AAAA… comment`: the capture's client key, for [`USER`].
    pub client_public: String,
}

/// The relay listener for Session Manager port forwarding.
#[derive(Debug, Clone)]
pub struct SsmSetup {
    pub relay: RelayOptions,
    /// TCP port on the instance's 127.0.0.1.
    pub tcp_port: u16,
}

/// When the watchdog powers the instance off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// Seconds after boot without a relay (the first connection).
    pub grace_s: u32,
    /// Seconds without a relay once one has run.
    pub idle_s: u32,
}

impl Default for Watchdog {
    fn default() -> Self {
        // Boot, SSH or SSM registration and the first relay take one to three minutes;
        // a reconnect after a lost tunnel starts a new relay within seconds.
        Watchdog {
            grace_s: 900,
            idle_s: 300,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CollectorSetup {
    pub listen_port: u16,
    pub ssh: Option<SshSetup>,
    pub ssm: Option<SsmSetup>,
    pub watchdog: Watchdog,
}

/// A YAML literal block (`|`) of `text`, indented by `indent` spaces.
fn block(out: &mut String, indent: usize, text: &str) {
    out.push_str("|\n");
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{:indent$}{line}", "");
        }
    }
}

/// A YAML single-quoted scalar.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn gzip_base64(data: &[u8]) -> String {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(data);
    super::remote::base64(&z.finish().unwrap_or_default())
}

/// The `#cloud-config` document, or why it cannot be one (too large for EC2).
pub fn cloud_config(s: &CollectorSetup) -> Result<String, String> {
    let mut y = String::from("#cloud-config\n");
    let _ = writeln!(
        y,
        "# awsvpc collector: receives the traffic mirror on UDP {} for one capture and powers\n\
         # off (terminating the instance) once no relay has run for {} s ({} s after boot).",
        s.listen_port, s.watchdog.idle_s, s.watchdog.grace_s
    );
    if let Some(ssh) = &s.ssh {
        // The host key awsvpc generated and pins; no other host key is made.
        y.push_str(
            "ssh_deletekeys: true\nssh_genkeytypes: [ed25519]\nssh_keys:\n  ed25519_private: ",
        );
        block(&mut y, 4, &ssh.host_private);
        let _ = writeln!(y, "  ed25519_public: {}", quoted(ssh.host_public.trim()));
    }
    let _ = writeln!(
        y,
        "users:\n  - default\n  - name: {USER}\n    gecos: awsvpc relay\n    lock_passwd: true\n    shell: /bin/bash"
    );
    if let Some(ssh) = &s.ssh {
        let _ = writeln!(
            y,
            "    ssh_authorized_keys:\n      - {}",
            quoted(ssh.client_public.trim())
        );
    }
    let _ = write!(
        y,
        "write_files:\n  - path: {WATCHDOG_PATH}\n    permissions: '0755'\n    content: "
    );
    block(&mut y, 6, WATCHDOG);
    if s.ssh.is_some() {
        let _ = write!(
            y,
            "  - path: {}\n    permissions: '0644'\n    content: ",
            SSHD_DROP_IN.0
        );
        block(&mut y, 6, SSHD_DROP_IN.1);
    }
    if let Some(ssm) = &s.ssm {
        let _ = writeln!(
            y,
            "  - path: {RELAY_PATH}\n    permissions: '0644'\n    encoding: gz+b64\n    content: {}",
            gzip_base64(super::SOURCE.as_bytes())
        );
        let _ = write!(
            y,
            "  - path: {LISTENER_PATH}\n    permissions: '0644'\n    content: "
        );
        let script = super::remote::relay_listener_script(
            &ssm.relay,
            ssm.tcp_port,
            0,
            super::remote::RelayAt::File(RELAY_PATH),
        );
        block(&mut y, 6, &script);
    }
    let _ = writeln!(
        y,
        "runcmd:\n  - [systemd-run, --unit=awsvpc-watchdog, --setenv=AWSVPC_PORT={}, --setenv=AWSVPC_GRACE={}, --setenv=AWSVPC_IDLE={}, /bin/sh, {WATCHDOG_PATH}]",
        s.listen_port, s.watchdog.grace_s, s.watchdog.idle_s
    );
    if s.ssm.is_some() {
        let _ = writeln!(
            y,
            "  - [systemd-run, --unit=awsvpc-relay-listener, --uid={USER}, /usr/bin/python3, {LISTENER_PATH}]"
        );
    }
    if y.len() > LIMIT {
        return Err(format!(
            "The collector's user data is {} bytes, over EC2's limit of {LIMIT}; this is a bug in awsvpc, please report it.",
            y.len()
        ));
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(ssh: bool, ssm: bool) -> CollectorSetup {
        CollectorSetup {
            listen_port: 4789,
            ssh: ssh.then(|| SshSetup {
                host_private: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY-----\n".into(),
                host_public: "ssh-ed25519 AAAAhost".into(),
                client_public: "ssh-ed25519 AAAAclient awsvpc".into(),
            }),
            ssm: ssm.then(|| SsmSetup {
                relay: RelayOptions {
                    listen_addr: [0, 0, 0, 0].into(),
                    listen_port: 4789,
                    snaplen: Some(128),
                    bind_wait_s: 0,
                    on_host: None,
                },
                tcp_port: 4790,
            }),
            watchdog: Watchdog::default(),
        }
    }

    #[test]
    fn both_transports_fit_ec2s_limit() {
        for (ssh, ssm) in [(true, false), (false, true), (true, true)] {
            let y = cloud_config(&setup(ssh, ssm)).unwrap();
            assert!(y.starts_with("#cloud-config\n"));
            assert!(y.len() <= LIMIT, "{} bytes", y.len());
            assert_eq!(y.contains("ssh_keys:"), ssh);
            assert_eq!(y.contains("awsvpc-relay-listener"), ssm);
            assert!(y.contains("awsvpc-watchdog"));
            assert!(!y.contains('\t'), "YAML has no tabs");
        }
    }

    #[test]
    fn keys_are_indented_blocks() {
        let y = cloud_config(&setup(true, false)).unwrap();
        assert!(
            y.contains("  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    AAAA\n")
        );
        assert!(y.contains("  ed25519_public: 'ssh-ed25519 AAAAhost'\n"));
        assert!(y.contains("      - 'ssh-ed25519 AAAAclient awsvpc'\n"));
    }
}
