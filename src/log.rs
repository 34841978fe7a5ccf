//! The capture log. Wireshark shows anything on an extcap's stderr as an error, so log lines
//! go to `--log-file`, the toolbar's logger control, or nowhere — never to stderr.

use crate::civil::timestamp;
use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Where else a log line goes (the toolbar's logger control): the extcap layer supplies it,
/// so the log, which every layer uses, imports none of them.
pub type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Wireshark's extcap log levels (`--log-level`), most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Message,
    Info,
    Debug,
    Noisy,
}

impl Level {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "message" | "warning" | "critical" | "error" => Level::Message,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "noisy" => Level::Noisy,
            _ => return None,
        })
    }

    fn tag(self) -> &'static str {
        match self {
            Level::Message => "message",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Noisy => "noisy",
        }
    }
}

struct Logger {
    level: Level,
    file: Option<Mutex<File>>,
    control: Mutex<Option<Sink>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Opens the log. A log file that cannot be written is an error the user must hear about.
pub fn init(level: Level, file: Option<&str>) -> Result<(), String> {
    let file = match file {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| {
                    format!("Cannot write the log file {p} ({e}); choose a writable path for --log-file or clear it.")
                })?,
        )),
        None => None,
    };
    let _ = LOGGER.set(Logger {
        level,
        file,
        control: Mutex::new(None),
    });
    Ok(())
}

/// Also send log lines to `sink` (the toolbar's logger control).
pub fn attach_sink(sink: Sink) {
    if let Some(l) = LOGGER.get() {
        if let Ok(mut c) = l.control.lock() {
            *c = Some(sink);
        }
    }
}

pub fn enabled(level: Level) -> bool {
    LOGGER.get().is_some_and(|l| level <= l.level)
}

pub fn log(level: Level, msg: std::fmt::Arguments<'_>) {
    let Some(l) = LOGGER.get() else { return };
    if level > l.level {
        return;
    }
    let line = format!("{} [{}] {}\n", timestamp(), level.tag(), msg);
    if let Some(f) = &l.file {
        if let Ok(mut f) = f.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
    if let Ok(c) = l.control.lock() {
        if let Some(sink) = c.as_ref() {
            sink(line.as_bytes());
        }
    }
}

/// The one place outside `main` that writes to stderr: the single line saying why a call
/// failed. Wireshark shows an extcap's stderr as its error, so nothing else ever goes there.
pub fn to_stderr(line: &str) {
    eprintln!("{line}");
}

/// A panic is a bug, and Rust's own report is several lines on stderr, which Wireshark
/// shows as the error: the user gets one line saying so, the log gets the whole report
/// (thread, place, message). Unwinding then runs the teardown as on any other exit.
pub fn report_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        log_panic(&format!(
            "{} [message] internal error: thread {thread} panicked{place}: {message}\n",
            timestamp()
        ));
        let message: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
        let message = match message.char_indices().nth(200) {
            Some((i, _)) => format!("{}…", &message[..i]),
            None => message,
        };
        to_stderr(&format!(
            "awsvpc stopped on an internal error ({message}{place}); please report it, with the log (--log-file) if there is one."
        ));
    }));
}

/// [`log`] for the panic hook, at any level: it never waits for a lock, since the
/// panicking thread may be the one holding it.
fn log_panic(line: &str) {
    let Some(l) = LOGGER.get() else { return };
    if let Some(Ok(mut f)) = l.file.as_ref().map(Mutex::try_lock) {
        let _ = f.write_all(line.as_bytes());
    }
    if let Ok(c) = l.control.try_lock() {
        if let Some(sink) = c.as_ref() {
            sink(line.as_bytes());
        }
    }
}

#[macro_export]
macro_rules! log_msg { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Message, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_info { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_debug { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Debug, format_args!($($t)*)) } }
