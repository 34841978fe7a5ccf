//! The extcap protocol: answers Wireshark's query calls from the manifest (no network, no
//! slow work), validates capture filters, and runs captures with the order Wireshark
//! needs: control pipes first, then the fifo; on a fatal error one line on stderr, the fifo
//! opened and closed, and a non-zero exit.

/// The argv model lives below `config`, which builds on it; re-exported under its old path.
pub use crate::argv as args;
pub mod control;
pub mod fifo;

use crate::aws_profiles;
use crate::capture::{self, Ending, Progress};
use crate::collector::local::UdpCollector;
use crate::collector::DatagramSource;
use crate::config::{self, CaptureConfig, CollectorMode};
use crate::manifest::{render_values, sentence_safe, ArgValue, Manifest};
use crate::pipeline::Counters;
use crate::transport::ssh::{SshCollector, SshSettings};
use crate::{log_debug, log_info, log_msg};
use args::{ExtcapArgs, Step};
use control::{Command, ControlSender, Incoming};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use crate::argv::{option_kind, parse_argv};

/// Runs one extcap call from the process's own arguments. Wireshark passes UTF-8; an
/// argument that is not is refused with one sentence naming it, as each call refuses bad
/// input: a capture by the fatal path (fifo opened and closed, exit 1), a filter
/// validation by the reason on stdout, another query by a line on stderr and exit 1.
pub fn run_os(argv: &[OsString], out: &mut dyn Write) -> ExitCode {
    let Some(bad) = argv.iter().position(|a| a.to_str().is_none()) else {
        let argv: Vec<String> = argv
            .iter()
            .filter_map(|a| a.to_str())
            .map(String::from)
            .collect();
        return run(&argv, out);
    };
    let lossy: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let why = not_utf8(&lossy, bad);
    // Parsed with every bad argument emptied, so none of them is used (a log file named
    // with replacement characters, say) while the call's shape is kept.
    let emptied: Vec<String> = argv
        .iter()
        .zip(&lossy)
        .map(|(raw, l)| match raw.to_str() {
            Some(s) => s.to_string(),
            None => match l.split_once('=') {
                Some((name, _)) if l.starts_with("--") && name.is_ascii() => format!("{name}="),
                _ => String::new(),
            },
        })
        .collect();
    let args = parse_argv(&emptied);
    match args.step() {
        Step::Capture => capture_step(&args, raw_fifo(argv), Some(why)),
        Step::ValidateFilter(_) => {
            let _ = writeln!(out, "{why}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{why}");
            ExitCode::FAILURE
        }
    }
}

/// The sentence for argument `i`, named by its option.
fn not_utf8(lossy: &[String], i: usize) -> String {
    let a = &lossy[i];
    let what = match a.strip_prefix("--").map(|b| b.split_once('=')) {
        Some(Some((name, _))) if name.is_ascii() => format!("The value of --{name}"),
        Some(_) => format!("The argument {a:?}"),
        None => match i.checked_sub(1).map(|p| &lossy[p]) {
            Some(prev) if prev.starts_with("--") && !prev.contains('=') && prev.is_ascii() => {
                format!("The value of {prev}")
            }
            _ => format!("The argument {a:?}"),
        },
    };
    format!("{what} is not valid UTF-8 (read as {a:?}); set it again as UTF-8 text.")
}

/// `--fifo`'s value as given, UTF-8 or not: even then it must be opened and closed.
fn raw_fifo(argv: &[OsString]) -> Option<PathBuf> {
    let mut fifo = None;
    for (i, a) in argv.iter().enumerate() {
        let b = a.as_encoded_bytes();
        if b == b"--fifo" {
            fifo = argv.get(i + 1).map(PathBuf::from);
        } else if let Some(v) = b.strip_prefix(b"--fifo=") {
            // SAFETY: split right after the ASCII "--fifo=", a valid UTF-8 prefix, as
            // from_encoded_bytes_unchecked allows.
            fifo = Some(PathBuf::from(unsafe {
                OsStr::from_encoded_bytes_unchecked(v)
            }));
        }
    }
    fifo
}

/// Runs one extcap call. Query output goes to `out` (stdout in production).
pub fn run(argv: &[String], out: &mut dyn Write) -> ExitCode {
    let args = parse_argv(argv);
    let m = Manifest::load();
    match args.step() {
        Step::Interfaces => {
            let mut listing =
                m.render_interfaces(VERSION, &crate::help::location().unwrap_or_default());
            if wireshark_4_4_0() {
                // Still listed, so the user sees why it will not capture.
                let i = &m.interface;
                let display = format!("{{display={}}}", i.display);
                let marked = format!(
                    "{{display={} (unsupported in Wireshark 4.4.0: upgrade Wireshark)}}",
                    i.display
                );
                listing = listing
                    .lines()
                    .map(|l| match l.starts_with("interface ") {
                        true => l.replacen(&display, &marked, 1) + "\n",
                        false => format!("{l}\n"),
                    })
                    .collect();
            }
            let _ = out.write_all(listing.as_bytes());
            ExitCode::SUCCESS
        }
        Step::Dlts => {
            if !interface_ok(&args, m) {
                return ExitCode::FAILURE;
            }
            let _ = out.write_all(m.render_dlts().as_bytes());
            ExitCode::SUCCESS
        }
        Step::Config { reload: None } => {
            if !interface_ok(&args, m) {
                return ExitCode::FAILURE;
            }
            let _ = out.write_all(m.render_config(&dynamic_values).as_bytes());
            ExitCode::SUCCESS
        }
        Step::Config {
            reload: Some(option),
        } => {
            let _ = out.write_all(reload(m, &args, &option).as_bytes());
            ExitCode::SUCCESS
        }
        Step::ValidateFilter(f) => {
            // Wireshark shows the first line of any output as the reason; exit 0 either way.
            if let Err(e) = crate::filter::compile_optional(Some(&f)) {
                let _ = writeln!(out, "{}", one_line(&e));
            }
            ExitCode::SUCCESS
        }
        Step::Capture => capture_step(&args, args.fifo.as_ref().map(PathBuf::from), None),
        Step::None => {
            let _ = writeln!(
                out,
                "awsvpc is a Wireshark extcap; Wireshark calls it with --extcap-interfaces, --extcap-config or --capture. See awsvpc --help."
            );
            ExitCode::from(2)
        }
    }
}

/// The sentence for a capture started by Wireshark 4.4.0.
pub const WIRESHARK_4_4_0: &str = "Wireshark 4.4.0 is not supported: it ignores extcap options (fixed in 4.4.1); upgrade Wireshark to 4.4.1 or later.";

/// Whether the Wireshark or tshark that runs this extcap is 4.4.0, which ignores extcap
/// options given on the command line (Wireshark issue 20054, fixed in 4.4.1). Wireshark
/// passes only `--extcap-version=4.4`, and only to `--extcap-interfaces`, so the patch
/// level is read from the caller itself (`sys::caller_library`): on Linux the
/// libwireshark it has mapped is `libwireshark.so.18.0.<patch>` (18 is 4.4's library
/// version). The parent is asked first, then up to three more ancestors (a wrapper
/// script); unknown means supported.
pub fn wireshark_4_4_0() -> bool {
    crate::sys::caller_library("libwireshark.so.")
        .is_some_and(|name| name == "libwireshark.so.18.0.0")
}

fn interface_ok(args: &ExtcapArgs, m: &Manifest) -> bool {
    match args.interface.as_deref() {
        None => true,
        Some(i) if i == m.interface.value => true,
        Some(i) => {
            eprintln!(
                "awsvpc provides the interface \"{}\", not {i:?}.",
                m.interface.value
            );
            false
        }
    }
}

/// Values computed at `--extcap-config` time, from local files only.
fn dynamic_values(from: &str) -> Vec<ArgValue> {
    match from {
        "aws-profiles" => aws_profiles::profile_values(),
        "aws-regions" => aws_profiles::region_values(),
        _ => Vec::new(),
    }
}

/// A reload answers with values for one argument; a reload that fails answers with one
/// value whose display says why, so the user sees it in the dialog. Reloads of AWS lists
/// are the only configuration calls that use the network.
fn reload(m: &Manifest, args: &ExtcapArgs, option: &str) -> String {
    let Some((n, arg)) = m.arg(&format!("--{option}")) else {
        return String::new();
    };
    let aws_list = matches!(
        option,
        "region" | "vpc" | "eni" | "launch-template" | "target-id"
    );
    let result = if aws_list {
        aws_reload(args, option)
    } else if let Some(from) = &arg.values_from {
        Ok(dynamic_values(from))
    } else {
        Err(match &arg.planned {
            Some(feature) => format!("Not available: {feature} is not in this build of awsvpc yet"),
            None => "Nothing to load".to_string(),
        })
    };
    match result {
        Ok(values) if !values.is_empty() => render_values(n, &values),
        Ok(_) => render_values(
            n,
            &[unavailable("Nothing found in this account and region")],
        ),
        Err(why) => render_values(n, &[unavailable(&why)]),
    }
}

fn unavailable(why: &str) -> ArgValue {
    ArgValue {
        value: "unavailable".into(),
        display: sentence_safe(why),
        default: true,
        enabled: false,
    }
}

#[cfg(not(feature = "aws"))]
fn aws_reload(_args: &ExtcapArgs, _option: &str) -> Result<Vec<ArgValue>, String> {
    Err(NO_AWS.to_string())
}

#[cfg(feature = "aws")]
fn aws_reload(args: &ExtcapArgs, option: &str) -> Result<Vec<ArgValue>, String> {
    use crate::aws::{client, discovery};
    let rt = client::runtime()?;
    rt.block_on(async {
        let aws = client::connect(args.get("profile"), args.get("region")).await?;
        match option {
            "region" => discovery::regions(&aws).await,
            "vpc" => discovery::vpcs(&aws).await,
            "eni" => discovery::eni_values(&aws, args.get("vpc")).await,
            "launch-template" => discovery::launch_templates(&aws).await,
            _ => discovery::targets(&aws).await,
        }
    })
}

/// A sentence on one line, with any value it quotes cut to 120 characters: an argument of
/// a megabyte must not become a megabyte-wide error dialog.
fn one_line(s: &str) -> String {
    const KEEP: usize = 120;
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(line.len().min(4096));
    // Alternate outside/inside a "…" quotation as Debug formatting writes it (\" inside).
    let mut quoted = 0usize;
    let mut inside = false;
    let mut escaped = false;
    for c in line.chars() {
        if inside && !escaped && c == '"' {
            if quoted > KEEP {
                out.push('…');
            }
            inside = false;
            out.push(c);
            continue;
        }
        if inside {
            escaped = !escaped && c == '\\';
            quoted += 1;
            if quoted <= KEEP {
                out.push(c);
            }
            continue;
        }
        if c == '"' {
            inside = true;
            quoted = 0;
            escaped = false;
        }
        out.push(c);
    }
    out
}

/// Status and counters to the toolbar (GUI) and the log (always).
struct ToolbarProgress {
    control: Option<ControlSender>,
    counters_control: u8,
    stats_requested: Arc<AtomicBool>,
    last_summary: std::sync::Mutex<String>,
    /// Packets written at the last report, for the rate in the status bar.
    last_packets: std::sync::Mutex<(u64, std::time::Instant)>,
}

impl ToolbarProgress {
    /// Packets per second since the previous report: the effective rate the user gets,
    /// whatever the transport allows.
    fn rate(&self, packets: u64) -> u64 {
        let Ok(mut last) = self.last_packets.lock() else {
            return 0;
        };
        let secs = last.1.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            (packets.saturating_sub(last.0) as f64 / secs).round() as u64
        } else {
            0
        };
        *last = (packets, std::time::Instant::now());
        rate
    }
}

impl Progress for ToolbarProgress {
    fn status(&self, text: &str) {
        log_info!("{text}");
        if let Some(c) = &self.control {
            c.send(0, Command::Statusbar, text.as_bytes());
        }
    }

    fn counters(&self, counters: &Counters) {
        let summary = counters.summary();
        log_debug!("{summary}");
        if self.stats_requested.swap(false, Ordering::Relaxed) {
            log_msg!("statistics: {}", counters.full());
        }
        let Ok(mut last) = self.last_summary.lock() else {
            return;
        };
        if *last == summary {
            return;
        }
        last.clone_from(&summary);
        if let Some(c) = &self.control {
            c.send(self.counters_control, Command::Set, summary.as_bytes());
            // Until packets flow, the status keeps saying where awsvpc listens.
            if counters.datagrams.load(Ordering::Relaxed) > 0 {
                let rate = self.rate(counters.packets.load(Ordering::Relaxed));
                c.send(
                    0,
                    Command::Statusbar,
                    format!("Capturing: {summary} · {rate} packets/s").as_bytes(),
                );
            }
        }
    }
}

/// A capture; `refused` is a reason found before it started, reported by the fatal path.
fn capture_step(args: &ExtcapArgs, fifo: Option<PathBuf>, refused: Option<String>) -> ExitCode {
    let mut fifo = fifo::Fifo::new(fifo);
    let mut control = None;
    let result = capture(args, &mut fifo, &mut control, refused);
    let code = match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(message) => {
            let line = one_line(&message);
            log_msg!("fatal: {line}");
            if let Some(c) = &control {
                c.send(0, Command::Statusbar, line.as_bytes());
            }
            // The one line Wireshark shows as "Error by extcap pipe: …".
            eprintln!("{line}");
            fifo.close_after_error();
            ExitCode::FAILURE
        }
    };
    if let Some(c) = &control {
        c.flush(std::time::Duration::from_secs(1));
    }
    code
}

fn capture(
    args: &ExtcapArgs,
    fifo: &mut fifo::Fifo,
    control_out: &mut Option<ControlSender>,
    refused: Option<String>,
) -> Result<Ending, String> {
    let m = Manifest::load();
    let stop = Arc::new(AtomicBool::new(false));
    for &sig in crate::sys::STOP_SIGNALS {
        // A second signal while stopping ends the process at once. The quit message sets
        // the same flag, so it is a first SIGTERM in every respect (Wireshark sends it
        // instead of SIGTERM, never both: `extcap_request_stop`).
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    // Logging first so everything after is recorded; a bad log setting is still reported
    // only after the pipes are open, below.
    let log_setup = config::log_settings(args)
        .and_then(|(level, file)| crate::log::init(level, file.as_deref()));

    // Control pipes before anything slow: the GUI blocks until control-in is opened.
    let stats_requested = Arc::new(AtomicBool::new(false));
    let control = match open_control(args, m, stats_requested.clone(), &stop)? {
        ControlPipes::Absent => None,
        ControlPipes::Open(c) => c,
        ControlPipes::Stopped => {
            log_msg!("stopped before Wireshark opened the control pipes");
            fifo.close_after_stop();
            return Ok(Ending::Stopped);
        }
    };
    control_out.clone_from(&control);
    if !fifo.open(&stop)? {
        // Like a stop while connecting to a collector: nothing was started, nothing to report.
        log_msg!("stopped before Wireshark opened the capture pipe");
        return Ok(Ending::Stopped);
    }
    log_setup?;
    if let Some(why) = refused {
        return Err(why);
    }
    log_msg!("awsvpc {VERSION} capture starting (argv: {})", redact(args));
    if wireshark_4_4_0() {
        return Err(WIRESHARK_4_4_0.into());
    }
    if !args.unknown.is_empty() {
        log_msg!(
            "ignoring arguments awsvpc does not know: {}",
            args.unknown.join(" ")
        );
    }
    if args.fifo.is_none() {
        return Err("No fifo given: Wireshark passes --fifo PATH with --capture (use --fifo - to write pcapng to stdout).".into());
    }
    let progress = ToolbarProgress {
        control: control.clone(),
        counters_control: m.control_number("counters").unwrap_or(2),
        stats_requested,
        last_summary: Default::default(),
        last_packets: std::sync::Mutex::new((0, std::time::Instant::now())),
    };
    let cfg = CaptureConfig::from_args(args, m)?;
    if let Some(f) = &cfg.filter {
        crate::filter::CaptureFilter::compile(f)
            .map_err(|e| format!("Invalid capture filter {f:?}: {e}."))?;
    }
    // Local files before any network call (a collector's SSH, AWS, the public address): a
    // wrong profile is named first, at once, even offline.
    #[cfg(feature = "aws")]
    if cfg.uses_aws() {
        crate::aws::client::check_profile(cfg.profile.as_deref())?;
    }
    if cfg.enis.is_empty() && (cfg.profile.is_some() || cfg.region.is_some() || cfg.vpc.is_some()) {
        log_msg!("no --eni: no AWS call is made, so --profile, --region and --vpc are not used");
    }
    let mut cfg = cfg;
    // ENIs AWS cannot mirror (every ENI with --capture-mode on-host) are captured on their
    // own instances, reached before any collector or AWS resource (src/onhost.rs).
    let Some(extra) = on_host_sources(&mut cfg, &progress, &stop)? else {
        log_msg!("stopped while starting an on-host capture");
        return Ok(Ending::Stopped);
    };
    if cfg.enis.is_empty() && !extra.is_empty() {
        // Nothing to mirror: no collector, no mirror, nothing created in AWS.
        let out = fifo
            .take_writer()
            .ok_or("Wireshark's capture pipe is not open.")?;
        let source = crate::collector::merged::Merged::new(extra);
        let ending = capture::run(&cfg, source, out, stop, &progress)
            .map_err(|e| format!("Capture failed: {e}."))?;
        return finished(ending);
    }
    match cfg.collector {
        CollectorMode::Local => {
            progress.status(&format!(
                "Opening UDP {}:{}",
                cfg.listen_addr, cfg.listen_port
            ));
            // Before any AWS work: a busy port must fail before anything is created.
            let collector = UdpCollector::bind(cfg.listen_addr, cfg.listen_port)?;
            mirror_and_capture(cfg, with_extra(collector, extra), fifo, stop, &progress)
        }
        CollectorMode::Host if cfg.connect == crate::config::Connect::Ssm => {
            host_over_ssm(cfg, extra, fifo, stop, &progress)
        }
        CollectorMode::Host => {
            let t = cfg
                .ssh
                .clone()
                .ok_or("--collector host needs --ssh-host.")?;
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
            let relay = cfg.relay();
            let status = |s: &str| progress.status(s);
            // The collector first: a host that cannot be reached must fail before anything
            // is created in AWS.
            let Some(collector) = SshCollector::connect(settings, relay, &status, &stop)? else {
                log_msg!("stopped while connecting to the collector");
                return Ok(Ending::Stopped);
            };
            mirror_and_capture(cfg, with_extra(collector, extra), fifo, stop, &progress)
        }
        CollectorMode::Ephemeral => ephemeral_capture(cfg, extra, fifo, stop, &progress),
    }
}

/// `--collector host --connect ssm`: the relay of the instance behind `--target-id`, started
/// through its SSM agent, before anything is created in AWS.
#[cfg(feature = "aws")]
fn host_over_ssm(
    cfg: CaptureConfig,
    extra: Vec<Box<dyn DatagramSource>>,
    fifo: &mut fifo::Fifo,
    stop: Arc<AtomicBool>,
    progress: &ToolbarProgress,
) -> Result<Ending, String> {
    let status = |s: &str| progress.status(s);
    let Some(collector) = crate::collector::ssm_host::connect(&cfg, &status, &stop)? else {
        log_msg!("stopped while connecting to the collector");
        return Ok(Ending::Stopped);
    };
    mirror_and_capture(cfg, with_extra(collector, extra), fifo, stop, progress)
}

#[cfg(not(feature = "aws"))]
fn host_over_ssm(
    _cfg: CaptureConfig,
    _extra: Vec<Box<dyn DatagramSource>>,
    _fifo: &mut fifo::Fifo,
    _stop: Arc<AtomicBool>,
    _progress: &ToolbarProgress,
) -> Result<Ending, String> {
    Err(NO_AWS.to_string())
}

/// Provisions the mirror when ENIs are chosen, captures from `source` with the sources the
/// mirror maps, and tears the mirror down on every way out, before reporting anything.
fn mirror_and_capture<S: crate::collector::DatagramSource>(
    cfg: CaptureConfig,
    source: S,
    fifo: &mut fifo::Fifo,
    stop: Arc<AtomicBool>,
    progress: &ToolbarProgress,
) -> Result<Ending, String> {
    if cfg.enis.is_empty() {
        let out = fifo
            .take_writer()
            .ok_or("Wireshark's capture pipe is not open.")?;
        let ending = capture::run(&cfg, source, out, stop, progress)
            .map_err(|e| format!("Capture failed: {e}."))?;
        return finished(ending);
    }
    mirror_then_capture(cfg, source, fifo, stop, progress)
}

#[cfg(feature = "aws")]
fn mirror_then_capture<S: crate::collector::DatagramSource>(
    mut cfg: CaptureConfig,
    source: S,
    fifo: &mut fifo::Fifo,
    stop: Arc<AtomicBool>,
    progress: &ToolbarProgress,
) -> Result<Ending, String> {
    let m = provision_mirror(&cfg, None, stop.clone(), progress)?;
    with_mirror_sources(&mut cfg, &m.sources);
    capture_then_teardown(&cfg, source, m.mirror, fifo, stop, progress)
}

#[cfg(not(feature = "aws"))]
fn mirror_then_capture<S: crate::collector::DatagramSource>(
    _cfg: CaptureConfig,
    _source: S,
    _fifo: &mut fifo::Fifo,
    _stop: Arc<AtomicBool>,
    _progress: &ToolbarProgress,
) -> Result<Ending, String> {
    Err(NO_AWS.to_string())
}

/// Captures from `source` with the sources `mirror` maps, then tears the mirror down.
#[cfg(feature = "aws")]
fn capture_then_teardown<S: crate::collector::DatagramSource>(
    cfg: &CaptureConfig,
    source: S,
    mirror: crate::mirror::Mirror,
    fifo: &mut fifo::Fifo,
    stop: Arc<AtomicBool>,
    progress: &ToolbarProgress,
) -> Result<Ending, String> {
    // A source that delivers nothing gets its mirror path checked (src/diagnose).
    let watch = crate::path_watch::Watch::new(cfg, &mirror, progress);
    let captured = match fifo.take_writer() {
        Some(out) => capture::run(cfg, source, out, stop, &watch)
            .map_err(|e| format!("Capture failed: {e}.")),
        None => Err("Wireshark's capture pipe is not open.".into()),
    };
    // The diagnosis stops first: it shares the ledger the teardown works from.
    drop(watch);
    progress.status("Removing the mirror sessions, filter, target and the collector instance");
    let removed = mirror.teardown();
    let ending = captured?;
    removed?;
    finished(ending)
}

/// `--collector ephemeral`: launches a collector with the capture's user data, mirrors the
/// ENIs to it, connects (bounded by its boot), captures, and removes everything; a failure
/// to connect is reported after teardown.
#[cfg(feature = "aws")]
fn ephemeral_capture(
    mut cfg: CaptureConfig,
    extra: Vec<Box<dyn DatagramSource>>,
    fifo: &mut fifo::Fifo,
    stop: Arc<AtomicBool>,
    progress: &ToolbarProgress,
) -> Result<Ending, String> {
    use crate::collector::launched;
    let status = |s: &str| progress.status(s);
    let (launch, access) = launched::prepare(&cfg)?;
    let m = provision_mirror(&cfg, Some(launch), stop.clone(), progress)?;
    with_mirror_sources(&mut cfg, &m.sources);
    let connected = launched::connect(&cfg, &m.mirror, access, &status, &stop);
    let why = match connected {
        Ok(Some(source)) => {
            let source = with_extra(source, extra);
            return capture_then_teardown(&cfg, source, m.mirror, fifo, stop, progress);
        }
        Ok(None) => STOPPED.to_string(),
        Err(e) => e,
    };
    progress.status("Removing what was created for the capture");
    match m.mirror.teardown() {
        Ok(()) => Err(why),
        Err(left) => Err(format!("{}. {left}", why.trim_end_matches('.'))),
    }
}

#[cfg(not(feature = "aws"))]
fn ephemeral_capture(
    _cfg: CaptureConfig,
    _extra: Vec<Box<dyn DatagramSource>>,
    _fifo: &mut fifo::Fifo,
    _stop: Arc<AtomicBool>,
    _progress: &ToolbarProgress,
) -> Result<Ending, String> {
    Err(NO_AWS.to_string())
}

/// The capture's sources become the mirror's, and the on-host ones planned before it; only
/// their VNIs are expected.
#[cfg(feature = "aws")]
fn with_mirror_sources(cfg: &mut CaptureConfig, mirrored: &[crate::sources::KnownSource]) {
    let on_host: Vec<_> = cfg
        .sources
        .iter()
        .filter(|s| s.on_host.is_some())
        .cloned()
        .collect();
    cfg.sources = mirrored.iter().cloned().chain(on_host).collect();
    cfg.expected_vnis = Some(cfg.sources.iter().map(|s| s.vni).collect());
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

/// Plans the capture's ENIs (`crate::onhost`) and starts the on-host ones; `cfg.enis`
/// keeps those to mirror. `Ok(None)`: stopped.
#[cfg(feature = "aws")]
fn on_host_sources(
    cfg: &mut CaptureConfig,
    progress: &ToolbarProgress,
    stop: &AtomicBool,
) -> Result<Option<Vec<Box<dyn DatagramSource>>>, String> {
    let plan = crate::onhost::plan(cfg)?;
    if plan.on_host.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let status = |s: &str| progress.status(s);
    let Some((sources, known)) = crate::onhost::start(cfg, &plan.on_host, &status, stop)? else {
        return Ok(None);
    };
    cfg.enis = plan.mirror;
    cfg.sources
        .retain(|s| !known.iter().any(|k| k.vni == s.vni));
    cfg.sources.extend(known);
    cfg.expected_vnis = Some(cfg.sources.iter().map(|s| s.vni).collect());
    Ok(Some(sources))
}

#[cfg(not(feature = "aws"))]
fn on_host_sources(
    _cfg: &mut CaptureConfig,
    _progress: &ToolbarProgress,
    _stop: &AtomicBool,
) -> Result<Option<Vec<Box<dyn DatagramSource>>>, String> {
    Ok(Some(Vec::new()))
}

/// The sentence of a capture stopped before it could start.
#[cfg(feature = "aws")]
const STOPPED: &str =
    "The capture was stopped during provisioning; everything created so far was removed.";

/// A source that failed mid-capture ends the capture with its sentence, after teardown.
fn finished(ending: Ending) -> Result<Ending, String> {
    match ending {
        Ending::SourceFailed(why) => Err(why),
        e => Ok(e),
    }
}

/// A capture's mirror in AWS: what to expect on the wire, and how to remove it.
#[cfg(feature = "aws")]
struct ProvisionedMirror {
    sources: Vec<crate::sources::KnownSource>,
    mirror: crate::mirror::Mirror,
}

#[cfg(feature = "aws")]
fn provision_mirror(
    cfg: &CaptureConfig,
    launch: Option<crate::aws::launch::LaunchRequest>,
    stop: Arc<AtomicBool>,
    progress: &ToolbarProgress,
) -> Result<ProvisionedMirror, String> {
    let mirror = crate::mirror::Mirror::start(cfg, launch, stop, &|s| progress.status(s))?;
    progress.status(&format!(
        "Mirroring {} ENI(s) to the collector (run {}, about ${:.3}/hour while capturing); waiting for packets",
        mirror.sessions.len(),
        mirror.run_id(),
        mirror.cost_per_hour()
    ));
    Ok(ProvisionedMirror {
        sources: mirror.sources.clone(),
        mirror,
    })
}

#[cfg(not(feature = "aws"))]
const NO_AWS: &str = "This awsvpc was built without AWS support (cargo feature \"aws\"); clear --eni to capture with the local collector, or install a full build.";

/// The control pipes, when Wireshark passed them.
enum ControlPipes {
    Absent,
    /// The sender exists only when Wireshark passed `--extcap-control-out` (toolbar); a
    /// quit-only interface (`{control=2}`) gets `--extcap-control-in` alone.
    Open(Option<ControlSender>),
    /// A stop came while waiting for Wireshark to open them.
    Stopped,
}

/// What ends the sentence refusing a control pipe.
const CONTROL_FIX: &str = "pass the control pipes Wireshark created, or leave out --extcap-control-in and --extcap-control-out.";

/// Opens `--extcap-control-in` then `--extcap-control-out`, each when Wireshark passed it.
/// Each must be a fifo; the waits for Wireshark's ends give way to a stop. A quit message
/// on control-in sets `stop`, exactly as SIGTERM does.
fn open_control(
    args: &ExtcapArgs,
    m: &Manifest,
    stats_requested: Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> Result<ControlPipes, String> {
    if args.control_in.is_none() && args.control_out.is_none() {
        return Ok(ControlPipes::Absent);
    }
    let input = match &args.control_in {
        None => None,
        Some(cin) => match fifo::open_reader(
            "--extcap-control-in",
            std::path::Path::new(cin),
            CONTROL_FIX,
            stop,
        )? {
            None => return Ok(ControlPipes::Stopped),
            Some(input) => Some(input),
        },
    };
    let sender = match &args.control_out {
        None => None,
        Some(cout) => {
            let Some(output) = fifo::open_writer(
                "--extcap-control-out",
                std::path::Path::new(cout),
                CONTROL_FIX,
                stop,
            )?
            else {
                return Ok(ControlPipes::Stopped);
            };
            // The sender's thread may block on a GUI that does not read: nothing waits for
            // it but the final flush, which is bounded.
            crate::sys::set_blocking(&output)
                .map_err(|e| format!("Cannot use --extcap-control-out {cout}: {e}."))?;
            let sender = ControlSender::spawn(output);
            if let Some(n) = m.control_number("logger") {
                let s = sender.clone();
                crate::log::attach_sink(Box::new(move |line: &[u8]| {
                    s.send(n, Command::Add, line);
                }));
            }
            Some(sender)
        }
    };
    if let Some(input) = input {
        let counters = m.control_number("counters");
        let stop = stop.clone();
        let _ = std::thread::Builder::new()
            .name("control-in".into())
            .spawn(move || {
                let mut input = std::io::BufReader::new(input);
                loop {
                    match control::read_message(&mut input) {
                        Ok(Incoming::Quit) => {
                            log_msg!("Wireshark asked awsvpc to quit: stopping");
                            stop.store(true, Ordering::Relaxed);
                        }
                        Ok(Incoming::Toolbar(f)) if f.command == Command::Initialized as u8 => {
                            log_debug!("toolbar initialized")
                        }
                        Ok(Incoming::Toolbar(f))
                            if Some(f.control) == counters && f.command == Command::Set as u8 =>
                        {
                            stats_requested.store(true, Ordering::Relaxed)
                        }
                        Ok(Incoming::Toolbar(f)) => {
                            log_debug!("control frame {} command {} ignored", f.control, f.command)
                        }
                        Err(e) => {
                            log_debug!("control input ended: {e}");
                            break;
                        }
                    }
                }
            });
    }
    Ok(ControlPipes::Open(sender))
}

/// The argv for the log, without pipe paths' noise and with nothing secret in it (awsvpc
/// has no password arguments; keys are file paths).
fn redact(args: &ExtcapArgs) -> String {
    let mut parts: Vec<String> = args
        .options
        .iter()
        .map(|(k, v)| format!("--{k}={v}"))
        .collect();
    if let Some(f) = &args.capture_filter {
        parts.push(format!("--extcap-capture-filter={f:?}"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn long_quoted_values_are_cut_the_sentence_is_kept() {
        let v = "a".repeat(100_000);
        let line = one_line(&format!("--eni must list ENI ids; {v:?} is not one.\n"));
        assert!(line.len() < 200, "{}", line.len());
        assert!(line.starts_with("--eni must list ENI ids; \"aaa"));
        assert!(line.ends_with("a…\" is not one."));
        let short = "--x must be a port, not \"a \\\" b\".";
        assert_eq!(one_line(short), short);
    }
}
