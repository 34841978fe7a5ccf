//! On-host capture: an ENI that AWS cannot mirror (most current instance families: M6i,
//! M7i, C7g, R8g…, `aws-traffic-mirroring.md` §2.2), or any ENI with `--capture-mode
//! on-host`, is captured on its own instance by the relay (`relay/onhost.py`): a packet
//! socket on the device with the ENI's MAC, the capture filter attached in that kernel, the
//! frames streamed back over Session Manager (Run Command starts it, a port session carries
//! it, as for a host collector) or the system ssh (the instance id as the host, as the
//! user's `~/.ssh/config` maps it). Nothing is created in AWS for these ENIs and nothing
//! bills by the hour.
//!
//! Each such ENI gets a VNI of its own from the top of the range (the relay wraps its
//! frames in VXLAN with it, from the ENI's address), so the capture's pipeline takes them
//! as it takes a mirror's: one pcapng interface per ENI, direction from its MAC.

use crate::aws::client;
use crate::aws::discovery::{self, Eni};
use crate::config::{CaptureConfig, CaptureMode, Connect};
use crate::relay::{OnHost, RelayOptions};
use crate::source::DatagramSource;
use crate::sources::KnownSource;
use crate::transport::ssh::{SshCollector, SshSettings};
use crate::wire::ethernet::parse_mac;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// The first on-host VNI: above those a mirror uses (`provision::vnis` keeps clear of
/// the top 1,024).
pub const FIRST_VNI: u32 = (1 << 24) - 256;

/// The capture's ENIs, split: mirrored ones, and those captured on their instances.
#[derive(Debug, Default)]
pub struct Plan {
    pub mirror: Vec<String>,
    pub on_host: Vec<Eni>,
}

/// Splits `cfg.enis` by `--capture-mode` (read-only calls on the capture's runtime;
/// nothing is created). With `mirror` no call is made: provisioning checks the ENIs.
pub fn plan(cfg: &CaptureConfig, rt: &Runtime) -> Result<Plan, String> {
    if cfg.capture_mode == CaptureMode::Mirror || cfg.enis.is_empty() {
        return Ok(Plan {
            mirror: cfg.enis.clone(),
            on_host: Vec::new(),
        });
    }
    let (enis, region) = rt.block_on(async {
        let aws = client::connect(cfg.profile.as_deref(), cfg.region.as_deref()).await?;
        // Who is calling, first, as provisioning does: bad credentials, an unreachable
        // endpoint or a missing permission are said the same way whatever the ENIs.
        aws.caller_arn().await?;
        let enis = discovery::enis(&aws, None, &cfg.enis).await?;
        Ok::<_, String>((enis, aws.region.clone()))
    })?;
    let mut plan = Plan::default();
    for id in &cfg.enis {
        let Some(e) = enis.iter().find(|e| &e.id == id) else {
            return Err(format!(
                "{id} not found in region {region}; check --eni and --region."
            ));
        };
        if let Some(v) = &cfg.vpc {
            if &e.vpc != v {
                return Err(format!(
                    "{id} is in {}, not in the chosen VPC {v}; choose ENIs of {v} or change --vpc.",
                    e.vpc
                ));
            }
        }
        let why = e.unsupported();
        if cfg.capture_mode == CaptureMode::Auto && why.is_none() {
            plan.mirror.push(id.clone());
            continue;
        }
        if let Some(refused) = e.on_host_refusal(why.as_deref()) {
            return Err(refused);
        }
        plan.on_host.push(e.clone());
    }
    Ok(plan)
}

/// The relay of one on-host ENI.
fn relay_for(cfg: &CaptureConfig, e: &Eni, vni: u32, bpf: Option<String>) -> RelayOptions {
    let src_ip = e
        .private_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    RelayOptions {
        listen_addr: cfg.listen_addr,
        listen_port: cfg.listen_port,
        snaplen: cfg.on_host_snaplen,
        bind_wait_s: 0,
        on_host: Some(OnHost {
            mac: e.mac.clone().unwrap_or_default().to_ascii_lowercase(),
            vni,
            src_ip,
            bpf,
            over_ssm: cfg.on_host_connect == Connect::Ssm,
        }),
    }
}

/// Starts the relay on each ENI's instance, before anything is created in AWS: a capture
/// that cannot reach one of them fails with its sentence first. Returns the sources and
/// what the capture knows of them; `Ok(None)`: stopped.
#[allow(clippy::type_complexity)]
pub fn start(
    cfg: &CaptureConfig,
    enis: &[Eni],
    rt: &Arc<Runtime>,
    status: &dyn Fn(&str),
    stop: &AtomicBool,
) -> Result<Option<(Vec<Box<dyn DatagramSource>>, Vec<KnownSource>)>, String> {
    let bpf = match &cfg.filter {
        Some(f) => Some(
            crate::filter::CaptureFilter::compile(f)
                .map_err(|e| format!("Invalid capture filter {f:?}: {e}."))?
                .classic_bpf(),
        ),
        None => None,
    };
    let mut sources: Vec<Box<dyn DatagramSource>> = Vec::new();
    let mut known = Vec::new();
    // Over Session Manager, one SSM client for all the instances (made at the first).
    let mut ssm: Option<aws_sdk_ssm::Client> = None;
    for (i, e) in enis.iter().enumerate() {
        let instance = e.instance_id.clone().unwrap_or_default();
        let vni = FIRST_VNI + i as u32;
        let relay = relay_for(cfg, e, vni, bpf.clone());
        crate::log_msg!(
            "{}: on-host capture on {instance} over {} (VNI {vni})",
            e.id,
            if cfg.on_host_connect == Connect::Ssm {
                "Session Manager"
            } else {
                "SSH"
            }
        );
        let source: Option<Box<dyn DatagramSource>> = match cfg.on_host_connect {
            Connect::Ssh => {
                let settings = SshSettings {
                    host: instance.clone(),
                    config: std::env::var_os("AWSVPC_SSH_CONFIG").map(Into::into),
                    program: std::env::var("AWSVPC_SSH").unwrap_or_default(),
                    on_host: true,
                    ..Default::default()
                };
                status(&format!(
                    "Starting the on-host capture of {} on {instance} over SSH",
                    e.id
                ));
                SshCollector::connect(settings, relay, status, stop)?
                    .map(|c| Box::new(c) as Box<dyn DatagramSource>)
            }
            Connect::Ssm => {
                let profile = cfg.profile.as_deref();
                let client = match &ssm {
                    Some(c) => c.clone(),
                    None => {
                        let aws = rt.block_on(client::connect(profile, cfg.region.as_deref()))?;
                        ssm.insert(aws.ssm).clone()
                    }
                };
                let control = crate::transport::ssm::session::Control::on(
                    rt.clone(),
                    client,
                    profile.map(str::to_string),
                );
                super::ssm_host::start_relay(control, &instance, relay, status, stop)?
                    .map(|c| Box::new(c) as Box<dyn DatagramSource>)
            }
        };
        let Some(source) = source else {
            return Ok(None);
        };
        sources.push(source);
        known.push(KnownSource {
            vni,
            eni: e.id.clone(),
            mac: e.mac.as_deref().and_then(parse_mac),
            on_host: Some(instance),
        });
    }
    Ok(Some((sources, known)))
}
