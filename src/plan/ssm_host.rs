//! A host collector reached through Session Manager (`--collector host --connect ssm`): the
//! instance behind `--target-id`. Its SSM agent starts the relay listener (Run Command runs
//! it as root; the listener becomes `nobody` first) on a loopback port of this capture's
//! own, so a listener left from an earlier capture (it exits after a minute without a relay)
//! never serves this one; then a port session reads the relay's stream.

use crate::aws::client;
use crate::aws::discovery::target_interface;
use crate::config::CaptureConfig;
use crate::relay::RelayOptions;
use crate::transport::ssm::collector::{relay_listener_command, SsmCollector, SsmSettings};
use crate::transport::ssm::session::Control;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How long Run Command may take to start the listener.
const START_WAIT: Duration = Duration::from_secs(60);
/// How long the agent may take to be online before Run Command is tried.
const ONLINE_WAIT: Duration = Duration::from_secs(30);
/// The listener exits after this long without a relay.
const LISTENER_IDLE_S: u32 = 60;

/// A loopback port for this capture's listener, from 40000–59999.
fn listener_port() -> u16 {
    40_000 + (uuid::Uuid::new_v4().as_u128() % 20_000) as u16
}

/// Connects to the relay of the instance behind the mirror target `target`, its AWS calls
/// on the capture's runtime `rt`. `Ok(None)`: stopped.
pub fn connect(
    cfg: &CaptureConfig,
    target: &str,
    rt: &Arc<tokio::runtime::Runtime>,
    status: &dyn Fn(&str),
    stop: &AtomicBool,
) -> Result<Option<SsmCollector>, String> {
    let (profile, region) = (cfg.profile.as_deref(), cfg.region.as_deref());
    let aws = rt.block_on(client::connect(profile, region))?;
    let control = Control::on(rt.clone(), aws.ssm.clone(), profile.map(str::to_string));
    status(&format!("Finding the collector instance of {target}"));
    let iface = control
        .block_on(target_interface(&aws, target))?
        .ok_or_else(|| format!("{target} is a load balancer target, not an instance; --connect ssm needs the instance that receives the mirror (or use --connect ssh)."))?;
    let instance = iface.instance.ok_or_else(|| {
        format!(
            "{target}'s network interface {} is not attached to an instance; choose the target of a running collector.",
            iface.eni
        )
    })?;
    start_relay(control, &instance, cfg.relay(), status, stop)
}

/// Starts the relay listener on `instance` with Run Command (once its agent is online) and
/// connects a port session to it: a host collector's relay, or an on-host capture's.
/// `Ok(None)`: stopped.
pub fn start_relay(
    control: Control,
    instance: &str,
    relay: RelayOptions,
    status: &dyn Fn(&str),
    stop: &AtomicBool,
) -> Result<Option<SsmCollector>, String> {
    let Some(agent) = control.wait_online(
        instance,
        ONLINE_WAIT,
        Duration::from_secs(2),
        status,
        Some(stop),
    )?
    else {
        return Ok(None);
    };
    let port = listener_port();
    status(&format!(
        "Starting the relay listener on {instance} with Run Command (agent {agent})"
    ));
    let command = relay_listener_command(&relay, port, LISTENER_IDLE_S);
    if !control.run_command(instance, &command, START_WAIT, stop)? {
        return Ok(None);
    }
    crate::log_msg!("relay listener started on {instance} (127.0.0.1:{port}) by Run Command");
    SsmCollector::connect(
        control,
        SsmSettings::new(instance, port),
        relay,
        status,
        stop,
    )
}
