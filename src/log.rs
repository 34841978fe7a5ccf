//! The capture log. Wireshark shows anything on an extcap's stderr as an error, so log lines
//! go to `--log-file`, the toolbar's logger control, or nowhere — never to stderr.

use crate::extcap::control::{Command, ControlSender};
use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

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
    control: Mutex<Option<(ControlSender, u8)>>,
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

/// Also send log lines to the toolbar's logger control.
pub fn attach_control(sender: ControlSender, logger_control: u8) {
    if let Some(l) = LOGGER.get() {
        if let Ok(mut c) = l.control.lock() {
            *c = Some((sender, logger_control));
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
        if let Some((sender, n)) = c.as_ref() {
            sender.send(*n, Command::Add, line.as_bytes());
        }
    }
}

/// UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` without a date crate.
pub fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[macro_export]
macro_rules! log_msg { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Message, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_info { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! log_debug { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Debug, format_args!($($t)*)) } }

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_779), (2026, 11, 22));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
        for days in [0, 11_016, 20_779, -1, 100_000] {
            let (y, m, d) = super::civil_from_days(days);
            assert_eq!(super::days_from_civil(y, m, d), days);
        }
    }
}
