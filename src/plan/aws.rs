//! The capture plans that need AWS: a mirror to a connected collector, a host collector
//! over Session Manager, a collector launched for the capture. Each runs on one tokio
//! runtime made for the capture ([`client::capture_runtime`]), shared by the mirror, the
//! collector's Session Manager, the path diagnosis and the expiry refresher.

use super::{finished, launched, onhost, ssm_host, with_extra, PlanError, Run};
use crate::aws::client;
use crate::capture::{self, Ending, Pipe};
use crate::config::{CaptureConfig, Ephemeral};
use crate::log_msg;
use crate::manifest::ArgValue;
use crate::mirror::Mirror;
use crate::source::DatagramSource;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// `--collector host --connect ssm`: the relay of the instance behind `--target-id`, started
/// through its SSM agent, before anything is created in AWS.
pub(super) fn host_over_ssm<P: Pipe>(
    cfg: CaptureConfig,
    target: &str,
    extra: Vec<Box<dyn DatagramSource>>,
    run: &mut Run<P>,
) -> Result<Ending, PlanError> {
    let rt = runtime(run)?;
    let status = |s: &str| run.progress.status(s);
    let Some(collector) = ssm_host::connect(&cfg, target, &rt, &status, &run.stop)? else {
        log_msg!("stopped while connecting to the collector");
        return Ok(Ending::Stopped);
    };
    let collector = with_extra(collector, extra);
    if cfg.enis.is_empty() {
        return super::capture_only(&cfg, collector, run);
    }
    mirror_on(rt, cfg, collector, run)
}

/// Provisions the mirror of `cfg`'s ENIs to `source`, a collector already connected, then
/// captures and tears down.
pub(super) fn mirror_then_capture<S: DatagramSource, P: Pipe>(
    cfg: CaptureConfig,
    source: S,
    run: &mut Run<P>,
) -> Result<Ending, PlanError> {
    mirror_on(runtime(run)?, cfg, source, run)
}

fn mirror_on<S: DatagramSource, P: Pipe>(
    rt: Arc<Runtime>,
    mut cfg: CaptureConfig,
    source: S,
    run: &mut Run<P>,
) -> Result<Ending, PlanError> {
    let mirror = provision_mirror(rt, &cfg, None, run)?;
    expect_sources(&mut cfg, &mirror);
    capture_then_teardown(&cfg, source, mirror, run)
}

/// What the capture expects on the wire: the sources the mirror maps, and the on-host ones
/// planned before it.
fn expect_sources(cfg: &mut CaptureConfig, mirror: &Mirror) {
    let on_host: Vec<_> = cfg
        .sources
        .iter()
        .filter(|s| s.on_host.is_some())
        .cloned()
        .collect();
    cfg.sources = mirror.sources.iter().cloned().chain(on_host).collect();
    cfg.expected_vnis = Some(cfg.sources.iter().map(|s| s.vni).collect());
}

/// The capture's one runtime, made at its first AWS call.
fn runtime<P>(run: &Run<P>) -> Result<Arc<Runtime>, String> {
    if let Some(rt) = run.rt.get() {
        return Ok(rt.clone());
    }
    let rt = client::capture_runtime()?;
    Ok(run.rt.get_or_init(|| rt).clone())
}

/// Plans the capture's ENIs and starts the on-host relays (`onhost`): `cfg.enis` keeps
/// those to mirror, `cfg.sources` gains the on-host ones. `Ok(None)`: stopped.
pub(super) fn on_host_sources<P>(
    cfg: &mut CaptureConfig,
    run: &mut Run<P>,
) -> Result<Option<Vec<Box<dyn DatagramSource>>>, String> {
    if cfg.enis.is_empty() || cfg.capture_mode == crate::config::CaptureMode::Mirror {
        return Ok(Some(Vec::new()));
    }
    let rt = runtime(run)?;
    let plan = onhost::plan(cfg, &rt)?;
    if plan.on_host.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let status = |s: &str| run.progress.status(s);
    let Some((sources, known)) = onhost::start(cfg, &plan.on_host, &rt, &status, &run.stop)? else {
        return Ok(None);
    };
    cfg.enis = plan.mirror;
    cfg.sources
        .retain(|s| !known.iter().any(|k| k.vni == s.vni));
    cfg.sources.extend(known);
    cfg.expected_vnis = Some(cfg.sources.iter().map(|s| s.vni).collect());
    Ok(Some(sources))
}

/// Captures from `source` with the sources `mirror` maps, then tears the mirror down.
fn capture_then_teardown<S: DatagramSource, P: Pipe>(
    cfg: &CaptureConfig,
    source: S,
    mirror: Mirror,
    run: &mut Run<P>,
) -> Result<Ending, PlanError> {
    // A source that delivers nothing gets its mirror path checked (src/diagnose).
    let watch = crate::path_watch::Watch::new(cfg, &mirror, run.progress);
    let captured = match run.pipe.take_writer() {
        Some(out) => {
            capture::run(cfg, source, out, run.stop.clone(), &watch).map_err(PlanError::Capture)
        }
        None => Err(PlanError::PipeNotOpen),
    };
    // The diagnosis stops first: it shares the ledger the teardown works from.
    drop(watch);
    run.progress
        .status("Removing the mirror sessions, filter, target and the collector instance");
    let removed = mirror.teardown();
    let ending = captured?;
    removed?;
    finished(ending)
}

/// `--collector ephemeral`: launches a collector with the capture's user data, mirrors the
/// ENIs to it, connects (bounded by its boot), captures, and removes everything; a failure
/// to connect is reported after teardown.
pub(super) fn ephemeral_capture<P: Pipe>(
    mut cfg: CaptureConfig,
    e: &Ephemeral,
    extra: Vec<Box<dyn DatagramSource>>,
    run: &mut Run<P>,
) -> Result<Ending, PlanError> {
    let rt = runtime(run)?;
    let (launch, access) = launched::prepare(&cfg, e)?;
    let mirror = provision_mirror(rt, &cfg, Some(launch), run)?;
    expect_sources(&mut cfg, &mirror);
    let status = |s: &str| run.progress.status(s);
    let connected = launched::connect(&cfg, e, &mirror, access, &status, &run.stop);
    let why = match connected {
        Ok(Some(source)) => {
            return capture_then_teardown(&cfg, with_extra(source, extra), mirror, run)
        }
        Ok(None) => PlanError::Stopped,
        Err(e) => PlanError::Refused(e),
    };
    run.progress
        .status("Removing what was created for the capture");
    match mirror.teardown() {
        Ok(()) => Err(why),
        Err(left) => Err(PlanError::NotRemoved {
            why: why.to_string(),
            left,
        }),
    }
}

fn provision_mirror<P>(
    rt: Arc<Runtime>,
    cfg: &CaptureConfig,
    launch: Option<crate::aws::launch::LaunchRequest>,
    run: &Run<P>,
) -> Result<Mirror, String> {
    let progress = run.progress;
    let mirror = Mirror::start(rt, cfg, launch, run.stop.clone(), &|s| progress.status(s))?;
    progress.status(&format!(
        "Mirroring {} ENI(s) to the collector (run {}, about ${:.3}/hour while capturing); waiting for packets",
        mirror.sessions.len(),
        mirror.run_id(),
        mirror.cost_per_hour()
    ));
    Ok(mirror)
}

/// An AWS list for the options dialog (a query call, not a capture: its own runtime).
pub(super) fn list(
    profile: Option<&str>,
    region: Option<&str>,
    vpc: Option<&str>,
    option: &str,
) -> Result<Vec<ArgValue>, String> {
    use crate::aws::discovery;
    let rt = client::runtime()?;
    rt.block_on(async {
        let aws = client::connect(profile, region).await?;
        match option {
            "region" => discovery::regions(&aws).await,
            "vpc" => discovery::vpcs(&aws).await,
            "eni" => discovery::eni_values(&aws, vpc).await,
            "launch-template" => discovery::launch_templates(&aws).await,
            _ => discovery::targets(&aws).await,
        }
    })
}
