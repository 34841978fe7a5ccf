//! The capture plan: which collector a capture reads, whether a mirror is provisioned for
//! it, and the order of connecting, provisioning, capturing and teardown (a collector that
//! cannot be reached fails before anything is created in AWS; the mirror is torn down on
//! every way out, before anything is reported). The extcap layer above opens Wireshark's
//! pipes and hands over the checked configuration.
//!
//! This module is also the one seam of the `aws` feature: everything the extcap layer and
//! `main` ask of AWS goes through the functions below, and only here does a build without
//! AWS answer differently (with [`NO_AWS`]).

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
pub mod launched;
#[cfg(feature = "aws")]
pub mod onhost;
#[cfg(feature = "aws")]
pub mod ssm_host;

use crate::capture::{self, Ending, Pipe, Progress};
use crate::collector::local::UdpCollector;
use crate::config::{CaptureConfig, Collector, Ephemeral};
use crate::log_msg;
use crate::manifest::ArgValue;
use crate::source::DatagramSource;
use crate::transport::ssh::{SshCollector, SshSettings};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Why a capture did not run, or ended with an error; each `Display` is the one sentence
/// the user sees.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The sentence of the layer that found the problem (a collector, AWS, the mirror).
    #[error("{0}")]
    Refused(String),
    #[error("Invalid capture filter {filter:?}: {why}.")]
    InvalidFilter { filter: String, why: String },
    #[error("Wireshark's capture pipe is not open.")]
    PipeNotOpen,
    #[error("Capture failed: {0}.")]
    Capture(std::io::Error),
    /// The source failed mid-capture (a remote collector's tunnel could not be restored).
    #[error("{0}")]
    SourceFailed(String),
    /// Stopped before the capture could start; what was created is removed.
    #[error("The capture was stopped during provisioning; everything created so far was removed.")]
    Stopped,
    /// `why` ended the capture, and the teardown after it left `left`.
    #[error("{}. {left}", .why.trim_end_matches('.'))]
    NotRemoved { why: String, left: String },
    #[error("{}", NO_AWS)]
    NoAws,
}

impl From<String> for PlanError {
    fn from(sentence: String) -> Self {
        PlanError::Refused(sentence)
    }
}

/// Runs the capture `cfg` describes into `pipe` until `stop`, the reader's leaving, or a
/// source failure.
pub fn run<P: Pipe>(
    cfg: CaptureConfig,
    pipe: &mut P,
    stop: Arc<AtomicBool>,
    progress: &(dyn Progress + Sync),
) -> Result<Ending, PlanError> {
    let mut run = Run {
        pipe,
        stop,
        progress,
        #[cfg(feature = "aws")]
        rt: std::cell::OnceCell::new(),
    };
    if let Some(f) = &cfg.filter {
        crate::filter::CaptureFilter::compile(f).map_err(|e| PlanError::InvalidFilter {
            filter: f.clone(),
            why: e.to_string(),
        })?;
    }
    // Local files before any network call (a collector's SSH, AWS, the public address): a
    // wrong profile is named first, at once, even offline.
    if cfg.uses_aws() {
        check_profile(&cfg)?;
    }
    if cfg.enis.is_empty() && (cfg.profile.is_some() || cfg.region.is_some() || cfg.vpc.is_some()) {
        log_msg!("no --eni: no AWS call is made, so --profile, --region and --vpc are not used");
    }
    let mut cfg = cfg;
    // ENIs AWS cannot mirror (every ENI with --capture-mode on-host) are captured on their
    // own instances, reached before any collector or AWS resource (`onhost`).
    let Some(extra) = on_host_sources(&mut cfg, &mut run)? else {
        log_msg!("stopped while starting an on-host capture");
        return Ok(Ending::Stopped);
    };
    if cfg.enis.is_empty() && !extra.is_empty() {
        // Nothing to mirror: no collector, no mirror, nothing created in AWS.
        return capture_only(&cfg, crate::collector::merged::Merged::new(extra), &mut run);
    }
    match cfg.collector.clone() {
        Collector::Local => {
            progress.status(&format!(
                "Opening UDP {}:{}",
                cfg.listen_addr, cfg.listen_port
            ));
            // Before any AWS work: a busy port must fail before anything is created.
            let collector = UdpCollector::bind(cfg.listen_addr, cfg.listen_port)?;
            mirror_and_capture(cfg, with_extra(collector, extra), &mut run)
        }
        Collector::HostSsm { target_id } => {
            with_aws::<UdpCollector, P>(AwsPlan::HostOverSsm(target_id, extra), cfg, &mut run)
        }
        Collector::HostSsh { ssh: t, .. } => {
            let settings = SshSettings {
                host: t.host,
                port: t.port,
                user: t.user,
                key: t.key.map(Into::into),
                known_hosts: t.known_hosts.map(Into::into),
                config: std::env::var_os("AWSVPC_SSH_CONFIG").map(Into::into),
                program: std::env::var("AWSVPC_SSH").unwrap_or_default(),
                on_host: false,
            };
            let status = |s: &str| progress.status(s);
            // The collector first: a host that cannot be reached must fail before anything
            // is created in AWS.
            let Some(collector) = SshCollector::connect(settings, cfg.relay(), &status, &run.stop)?
            else {
                log_msg!("stopped while connecting to the collector");
                return Ok(Ending::Stopped);
            };
            mirror_and_capture(cfg, with_extra(collector, extra), &mut run)
        }
        Collector::Ephemeral(e) => {
            with_aws::<UdpCollector, P>(AwsPlan::Ephemeral(e, extra), cfg, &mut run)
        }
    }
}

/// What every plan is given: Wireshark's capture pipe, the stop flag, the progress reports,
/// and (made at the first AWS call) the capture's one tokio runtime.
struct Run<'a, P> {
    pipe: &'a mut P,
    stop: Arc<AtomicBool>,
    progress: &'a (dyn Progress + Sync),
    #[cfg(feature = "aws")]
    rt: std::cell::OnceCell<Arc<tokio::runtime::Runtime>>,
}

/// `source`, and the on-host captures' relays beside it when there are any.
fn with_extra<S: DatagramSource + 'static>(
    source: S,
    extra: Vec<Box<dyn DatagramSource>>,
) -> Box<dyn DatagramSource> {
    if extra.is_empty() {
        return Box::new(source);
    }
    let mut all: Vec<Box<dyn DatagramSource>> = vec![Box::new(source)];
    all.extend(extra);
    Box::new(crate::collector::merged::Merged::new(all))
}

/// Plans the capture's ENIs (`onhost`) and starts the on-host ones; `cfg.enis` keeps those
/// to mirror. `Ok(None)`: stopped. A build without AWS has no ENI facts: none on-host.
fn on_host_sources<P>(
    cfg: &mut CaptureConfig,
    run: &mut Run<P>,
) -> Result<Option<Vec<Box<dyn DatagramSource>>>, PlanError> {
    #[cfg(feature = "aws")]
    return aws::on_host_sources(cfg, run).map_err(PlanError::from);
    #[cfg(not(feature = "aws"))]
    {
        let _ = (cfg, run);
        Ok(Some(Vec::new()))
    }
}

/// Provisions the mirror when ENIs are chosen, captures from `source` with the sources the
/// mirror maps, and tears the mirror down on every way out, before reporting anything.
fn mirror_and_capture<S: DatagramSource, P: Pipe>(
    cfg: CaptureConfig,
    source: S,
    run: &mut Run<P>,
) -> Result<Ending, PlanError> {
    if cfg.enis.is_empty() {
        return capture_only(&cfg, source, run);
    }
    with_aws(AwsPlan::MirrorTo(source), cfg, run)
}

/// Captures from `source` without a mirror of awsvpc's.
fn capture_only<S: DatagramSource, P: Pipe>(
    cfg: &CaptureConfig,
    source: S,
    run: &mut Run<P>,
) -> Result<Ending, PlanError> {
    let out = run.pipe.take_writer().ok_or(PlanError::PipeNotOpen)?;
    let ending = capture::run(cfg, source, out, run.stop.clone(), run.progress)
        .map_err(PlanError::Capture)?;
    finished(ending)
}

/// A source that failed mid-capture ends the capture with its sentence, after teardown.
fn finished(ending: Ending) -> Result<Ending, PlanError> {
    match ending {
        Ending::SourceFailed(why) => Err(PlanError::SourceFailed(why)),
        e => Ok(e),
    }
}

/// What a capture needs AWS for (with the on-host captures' relays, read beside the
/// collector). A build without AWS refuses every plan unread.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
enum AwsPlan<S> {
    /// `--collector host --connect ssm`: the relay of the instance behind `--target-id`.
    HostOverSsm(String, Vec<Box<dyn DatagramSource>>),
    /// A mirror of the chosen ENIs to a collector already connected.
    MirrorTo(S),
    /// `--collector ephemeral`: a collector launched for the capture.
    Ephemeral(Ephemeral, Vec<Box<dyn DatagramSource>>),
}

/// The sentence of a build without the `aws` feature, for anything that needs AWS.
pub const NO_AWS: &str = "This awsvpc was built without AWS support (cargo feature \"aws\"); clear --eni to capture with the local collector, or install a full build.";

#[cfg(feature = "aws")]
fn with_aws<S: DatagramSource, P: Pipe>(
    plan: AwsPlan<S>,
    cfg: CaptureConfig,
    run: &mut Run<P>,
) -> Result<Ending, PlanError> {
    match plan {
        AwsPlan::HostOverSsm(target, extra) => aws::host_over_ssm(cfg, &target, extra, run),
        AwsPlan::MirrorTo(source) => aws::mirror_then_capture(cfg, source, run),
        AwsPlan::Ephemeral(e, extra) => aws::ephemeral_capture(cfg, &e, extra, run),
    }
}

#[cfg(not(feature = "aws"))]
fn with_aws<S: DatagramSource, P: Pipe>(
    _: AwsPlan<S>,
    _: CaptureConfig,
    _: &mut Run<P>,
) -> Result<Ending, PlanError> {
    Err(PlanError::NoAws)
}

/// The profile is one of this machine's (local files only); a build without AWS makes no
/// AWS call, so has no profile to check.
fn check_profile(cfg: &CaptureConfig) -> Result<(), String> {
    #[cfg(feature = "aws")]
    crate::aws::client::check_profile(cfg.profile.as_deref())?;
    let _ = cfg;
    Ok(())
}

/// The values of an AWS list in the options dialog (`option`: region, vpc, eni,
/// launch-template, target-id), for a reload.
pub fn aws_list(
    profile: Option<&str>,
    region: Option<&str>,
    vpc: Option<&str>,
    option: &str,
) -> Result<Vec<ArgValue>, String> {
    #[cfg(feature = "aws")]
    return aws::list(profile, region, vpc, option);
    #[cfg(not(feature = "aws"))]
    {
        let _ = (profile, region, vpc, option);
        Err(NO_AWS.to_string())
    }
}

/// `--extcap-cleanup-postkill`, run by Wireshark after it killed a capture: the dead run's
/// guardian work. A build without AWS creates nothing, so has nothing to clean.
pub fn postkill() -> ExitCode {
    #[cfg(feature = "aws")]
    return crate::aws::guardian::postkill();
    #[cfg(not(feature = "aws"))]
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::PlanError;

    #[test]
    fn sentences_are_the_ones_users_know() {
        let left = PlanError::NotRemoved {
            why: PlanError::Stopped.to_string(),
            left: "Left: tmf-1.".into(),
        };
        assert_eq!(
            left.to_string(),
            "The capture was stopped during provisioning; everything created so far was removed. Left: tmf-1."
        );
        let failed = PlanError::Capture(std::io::Error::other("the relay broke"));
        assert_eq!(failed.to_string(), "Capture failed: the relay broke.");
        let filter = PlanError::InvalidFilter {
            filter: "tcp port".into(),
            why: "syntax error".into(),
        };
        assert_eq!(
            filter.to_string(),
            "Invalid capture filter \"tcp port\": syntax error."
        );
    }
}
