//! The guardian: teardown that survives a killed awsvpc. Before the first resource is
//! created the capture starts `awsvpc guard` (detached, see `crate::sys::guardian`). When
//! the capture finishes its own teardown it says so and the guardian exits without an AWS
//! call; when the capture dies (SIGKILL, a crash, TerminateProcess) the guardian ends its
//! children and removes the run exactly as `awsvpc cleanup --run-id` does, bounded in time,
//! logging to the capture's log file.
//!
//! Also here: `--extcap-cleanup-postkill`, Wireshark 5.0's call after it killed an extcap,
//! which removes the runs in the ledger folder whose capture process is dead.

use super::cleanup::{self, Selection};
use super::client;
use super::ledger::{state_dir, Ledger};
use crate::log_msg;
use crate::sys::guardian::{self as sys, Heard};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long the guardian may take over a run: sessions go first and take seconds; a
/// launched collector's security group is freed 30–90 s after its instance terminates.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Starts the guardian of the run whose ledger is `ledger`; `None` when it cannot run
/// (said in the log: `awsvpc cleanup` stays the last line of defence).
/// `AWSVPC_TEST_NO_GUARDIAN=1` leaves it out (the leak matrix proves that last line).
pub fn start(ledger: &Ledger, log_file: Option<&str>) -> Option<u32> {
    if std::env::var_os("AWSVPC_TEST_NO_GUARDIAN").is_some() {
        log_msg!("test hook: no guardian for run {}", ledger.run_id);
        return None;
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "awsvpc".into());
    let mut args: Vec<OsString> = vec!["guard".into(), "--ledger".into()];
    args.push(ledger.path().into());
    if let Some(f) = log_file {
        // The guardian's cwd is ours, but an absolute path survives any change.
        let p = std::path::absolute(f).unwrap_or_else(|_| f.into());
        args.extend(["--log-file".into(), p.into()]);
    }
    match sys::start(&exe, &args) {
        Ok(pid) => {
            log_msg!(
                "guardian started (pid {pid}): if awsvpc is killed it removes run {}",
                ledger.run_id
            );
            Some(pid)
        }
        Err(e) => {
            log_msg!(
                "could not start the guardian ({e}); if awsvpc is killed, run awsvpc cleanup --run-id {}",
                ledger.run_id
            );
            None
        }
    }
}

/// `awsvpc guard --ledger PATH [--log-file F]`: waits for the capture to end.
pub fn guard(ledger: &Path, log_file: Option<&str>) -> ExitCode {
    sys::close_inherited_fds();
    // Best effort: an unwritable log must not stop the teardown.
    let _ = crate::log::init(crate::log::Level::Info, log_file);
    let heard = sys::listen(&mut std::io::stdin().lock());
    match heard {
        Heard::Done => {
            crate::log_info!("guardian: the capture finished its own teardown; exiting");
            ExitCode::SUCCESS
        }
        Heard::Junk(b) => {
            log_msg!("guardian: unexpected byte 0x{b:02x} from the capture; exiting without removing anything");
            ExitCode::FAILURE
        }
        Heard::Broken(e) => {
            log_msg!(
                "guardian: cannot read from the capture ({e}); exiting without removing anything"
            );
            ExitCode::FAILURE
        }
        Heard::Died(children) => {
            let ended = sys::end_children(&children, Duration::from_secs(1));
            if ended > 0 {
                log_msg!("guardian: ended {ended} child process(es) of the dead capture");
            }
            match take_over(ledger) {
                Ok(msg) => {
                    log_msg!("guardian: {msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    log_msg!("guardian: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The capture died before its teardown: remove its run.
fn take_over(path: &Path) -> Result<String, String> {
    let t0 = Instant::now();
    let l = match Ledger::load(path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(format!(
                "the capture ended and its ledger {} is gone: nothing to remove",
                path.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "cannot read the run ledger {} ({e}); run awsvpc cleanup to remove what is left",
                path.display()
            ))
        }
    };
    if l.entries.iter().all(|e| e.deleted) {
        return Ok(format!(
            "the capture of run {} ended with nothing created: nothing to remove",
            l.run_id
        ));
    }
    log_msg!(
        "guardian: the capture of run {} died before its teardown; removing what it created",
        l.run_id
    );
    let dir = path.parent().unwrap_or(Path::new("."));
    remove_run(&l, dir, LIMIT, LIMIT + Duration::from_secs(30)).map(|removed| {
        format!(
            "removed {} resources of run {} in {:.1} s: {}",
            removed.len(),
            l.run_id,
            t0.elapsed().as_secs_f64(),
            removed.join(", ")
        )
    })
}

/// `awsvpc cleanup --run-id` for the run of `l`, with its profile and region; Ok lists
/// what was removed, Err says what is left and how to finish.
/// Removes run `l`: its teardown may take `limit`, the whole (with the calls before it)
/// `overall`.
fn remove_run(
    l: &Ledger,
    dir: &Path,
    limit: Duration,
    overall: Duration,
) -> Result<Vec<String>, String> {
    let rt = client::runtime()?;
    let fail = |e: String| {
        format!(
            "{}; run awsvpc cleanup --run-id {} to finish",
            e.trim_end_matches('.'),
            l.run_id
        )
    };
    let work = async {
        let aws = client::connect(l.profile.as_deref(), Some(&l.region)).await?;
        let me = aws.caller_arn().await?;
        let sel = Selection {
            run_id: Some(l.run_id.clone()),
            created_by: Some(me),
            ..Default::default()
        };
        cleanup::remove(&aws, &sel, false, limit, dir).await
    };
    // The calls before the teardown have their own timeouts; this bounds the whole.
    let r = rt
        .block_on(async { tokio::time::timeout(overall, work).await })
        .map_err(|_| fail(format!("run {} is not removed after {limit:?}", l.run_id)))?
        .map_err(fail)?;
    let Some(report) = r.report else {
        return Ok(Vec::new());
    };
    match report.sentence(&l.run_id) {
        Some(s) => Err(s),
        None => Ok(report.removed),
    }
}

/// How long `--extcap-cleanup-postkill` may take. Wireshark runs it synchronously on its
/// main loop with no timeout (`extcap_cleanup_postkill`, `ws_pipe_spawn_sync`), so the GUI
/// is frozen meanwhile: sessions, filters and targets go in seconds; what needs longer (a
/// launched collector's security group) is left to the guardian and `awsvpc cleanup`.
pub const POSTKILL_LIMIT: Duration = Duration::from_secs(20);

/// How long a capture Wireshark has just sent SIGKILL may take to be gone: postkill runs
/// right after the kill, before Wireshark reaps it.
const KILLED_GRACE: Duration = Duration::from_secs(2);

/// `--extcap-cleanup-postkill`, as Wireshark's development branch (toward 5.0) calls it:
/// argv exactly `[extcap, "--extcap-cleanup-postkill"]`, cwd the global extcap folder, once
/// per extcap interface of a capture session whose extcaps were still running 30 s after
/// the stop request, right after `SIGKILL`/`TerminateProcess` (`extcap_terminate_cb` in
/// `extcap.c`, read in dreibh/wireshark ccf46bb120320c616e2b353f099d089d42066647). Its
/// stdout and exit status are ignored. What to clean comes from disk: the runs in the
/// ledger folder whose capture process is gone (a live capture's, or one from an awsvpc
/// that did not record its pid, are left alone).
pub fn postkill() -> ExitCode {
    let deadline = Instant::now() + POSTKILL_LIMIT;
    let dir = state_dir();
    let mut left = Vec::new();
    let mut done = Vec::new();
    let runs: Vec<Ledger> = Ledger::all_in(&dir)
        .into_iter()
        .filter(|l| l.pid.is_some() && !l.entries.iter().all(|e| e.deleted))
        .collect();
    // The capture just killed may still be dying; a live one never is, so the wait is
    // shared, not per run.
    let grace = Instant::now() + KILLED_GRACE;
    while runs.iter().any(|l| l.pid.is_some_and(sys::alive)) && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(20));
    }
    for l in runs {
        let Some(pid) = l.pid else { continue };
        if sys::alive(pid) {
            continue;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match remove_run(&l, &dir, remaining, remaining) {
            Ok(r) => done.push(format!("run {}: removed {}", l.run_id, r.len())),
            Err(e) => left.push(e),
        }
    }
    if !done.is_empty() {
        println!("{}", done.join("; "));
    }
    if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        crate::log::to_stderr(&left.join(" "));
        ExitCode::FAILURE
    }
}
