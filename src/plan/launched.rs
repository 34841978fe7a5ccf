//! The collector awsvpc launches for a capture (`--collector ephemeral`): what to launch
//! (its user data, its security group's SSH source, whether it needs a public address), and
//! how to reach its relay once it runs: SSH with the keys generated for this capture, or
//! Session Manager to the relay listener its user data started.

use crate::aws::launch::{LaunchRequest, SshSource};
use crate::config::{CaptureConfig, Connect, Ephemeral};
use crate::log_msg;
use crate::mirror::Mirror;
use crate::relay::user_data::{cloud_config, CollectorSetup, SshSetup, SsmSetup, Watchdog};
use crate::source::DatagramSource;
use crate::transport::pinned::{CollectorKeys, PinnedSettings};
use crate::transport::ssh::SshCollector;
use crate::transport::ssm::collector::{SsmCollector, SsmSettings};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How long a launched collector may take to reach `running`.
pub const RUNNING_WAIT: Duration = Duration::from_secs(180);
/// How long its SSH may take to answer once it runs (boot, cloud-init writing the keys).
pub const SSH_WAIT: Duration = Duration::from_secs(240);
/// The TCP port on the collector's loopback where its SSM relay listener waits.
pub const SSM_RELAY_PORT: u16 = 4790;

/// How the capture reaches the collector it launches.
pub enum Access {
    /// SSH with keys generated for this capture (the host key pinned).
    Ssh(Arc<CollectorKeys>),
    /// Session Manager to the relay listener.
    Ssm,
}

/// What to launch for `cfg`, and how it will be reached. Generates the SSH keys; makes no
/// network call (this machine's public address is asked for just before the launch).
pub fn prepare(cfg: &CaptureConfig, e: &Ephemeral) -> Result<(LaunchRequest, Access), String> {
    let over = &e.ssh;
    if over.key.is_some() || over.known_hosts.is_some() {
        log_msg!("--ssh-key and --ssh-known-hosts are for a host collector; the temporary collector uses keys generated for this capture");
    }
    let (access, setup_ssh, setup_ssm, ssh_rule) = match e.connect {
        Connect::Ssh => {
            let keys = Arc::new(CollectorKeys::generate()?);
            let from = match &e.launch.ssh_allow {
                Some(c) => SshSource::Cidr(c.clone()),
                None => SshSource::ThisMachine,
            };
            let ssh = SshSetup {
                host_private: keys.host_private_openssh().to_string(),
                host_public: keys.host_public_line(),
                client_public: keys.client_public_line("awsvpc"),
            };
            let rule = (over.port.unwrap_or(22), from);
            (Access::Ssh(keys), Some(ssh), None, Some(rule))
        }
        Connect::Ssm => {
            let ssm = SsmSetup {
                relay: cfg.relay(),
                tcp_port: SSM_RELAY_PORT,
            };
            (Access::Ssm, None, Some(ssm), None)
        }
    };
    let user_data = cloud_config(&CollectorSetup {
        listen_port: cfg.listen_port,
        ssh: setup_ssh,
        ssm: setup_ssm,
        watchdog: Watchdog::default(),
    })?;
    let request = LaunchRequest {
        launch_template: e.launch.launch_template.clone(),
        instance_type: e.launch.instance_type.clone(),
        instance_profile: e.launch.instance_profile.clone(),
        user_data,
        listen_port: cfg.listen_port,
        // From outside the VPC SSH needs a public address, unless --ssh-host names the way in.
        public_ip: matches!(access, Access::Ssh(_)) && over.host.is_empty(),
        ssh: ssh_rule,
        needs_instance_profile: matches!(access, Access::Ssm),
    };
    Ok((request, access))
}

/// Waits for the collector `mirror` launched and connects to its relay. `Ok(None)` when
/// `stop` was set meanwhile.
pub fn connect(
    cfg: &CaptureConfig,
    e: &Ephemeral,
    mirror: &Mirror,
    access: Access,
    status: &dyn Fn(&str),
    stop: &AtomicBool,
) -> Result<Option<Box<dyn DatagramSource>>, String> {
    let Some(instance) = mirror.collector.as_ref().map(|c| c.instance_id.clone()) else {
        return Err("No collector instance was launched.".into());
    };
    match access {
        Access::Ssh(keys) => {
            let Some((private, public)) = mirror.wait_collector(RUNNING_WAIT, stop, status)? else {
                return Ok(None);
            };
            let over = e.ssh.clone();
            let port = over.port.unwrap_or(22);
            let address = if !over.host.is_empty() {
                over.host.clone()
            } else {
                public
                    .clone()
                    .or(private.clone())
                    .ok_or_else(|| format!("The collector {instance} has no IP address."))?
            };
            log_msg!(
                "collector {instance}: private {}, public {}; connecting to {address} port {port}",
                private.as_deref().unwrap_or("none"),
                public.as_deref().unwrap_or("none")
            );
            let settings = PinnedSettings {
                address: address.clone(),
                port,
                user: over
                    .user
                    .unwrap_or_else(|| crate::relay::user_data::USER.to_string()),
                keys,
                boot_wait: SSH_WAIT,
                label: format!("the collector {instance} ({address})"),
            };
            let c = SshCollector::connect_pinned_on(
                mirror.runtime().clone(),
                settings,
                cfg.relay(),
                status,
                stop,
            )?;
            Ok(c.map(|c| Box::new(c) as Box<dyn DatagramSource>))
        }
        Access::Ssm => {
            let control = crate::aws::client::ssm_control(
                mirror.runtime(),
                mirror.profile(),
                Some(mirror.region()),
            )?;
            let mut settings = SsmSettings::new(&instance, SSM_RELAY_PORT);
            // Test hook (tests/bad_input.rs): a shorter wait for an agent that stays offline.
            if let Some(s) = std::env::var("AWSVPC_TEST_SSM_ONLINE_WAIT_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                settings.online_wait = Duration::from_secs(s);
                settings.online_poll = Duration::from_millis(200);
            }
            let c = SsmCollector::connect(control, settings, cfg.relay(), status, stop)?;
            Ok(c.map(|c| Box::new(c) as Box<dyn DatagramSource>))
        }
    }
}
