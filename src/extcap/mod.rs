//! The extcap protocol: answers Wireshark's query calls from the manifest (no network, no
//! slow work), validates capture filters, and runs captures with the order Wireshark
//! needs: control pipes first, then the fifo; on a fatal error one line on stderr, the fifo
//! opened and closed, and a non-zero exit.

/// The argv model lives below `config`, which builds on it; re-exported under its old path.
pub use crate::argv as args;
pub mod control;
pub mod fifo;

use crate::aws_profiles;
use crate::capture::{Ending, Progress};
use crate::config::{self, CaptureConfig};
use crate::manifest::{render_values, sentence_safe, ArgValue, Manifest};
use crate::pipeline::Counters;
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
            crate::log::to_stderr(&why);
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
            crate::log::to_stderr(&format!(
                "awsvpc provides the interface \"{}\", not {i:?}.",
                m.interface.value
            ));
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
        crate::plan::aws_list(
            args.get("profile"),
            args.get("region"),
            args.get("vpc"),
            option,
        )
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
            crate::log::to_stderr(&line);
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
        .map_err(String::from)
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
    crate::plan::run(cfg, fifo, stop, &progress).map_err(|e| e.to_string())
}

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
