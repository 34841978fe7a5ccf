//! Per-user folders, by each OS's convention: the home folder (where `~/.aws` and
//! `~/.ssh` live), the state folder (ledgers) and the data folder (the Help page). Only
//! absolute values from the environment are taken: a relative one would depend on the
//! folder Wireshark was started from.

use std::path::PathBuf;

fn env(k: &str) -> Option<PathBuf> {
    std::env::var_os(k)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The user's home folder: `HOME` on Unix, `USERPROFILE` on Windows (where the AWS CLI and
/// OpenSSH for Windows look for `.aws` and `.ssh`).
pub fn home() -> Option<PathBuf> {
    if cfg!(windows) {
        env("USERPROFILE")
    } else {
        std::env::var_os("HOME").map(PathBuf::from)
    }
}

/// Where per-user state goes: `$XDG_STATE_HOME` or `~/.local/state` on Linux and macOS
/// (macOS has no state folder of its own, and the XDG one keeps the README's paths one),
/// `%LOCALAPPDATA%` on Windows (not roamed between machines, as a ledger must not be).
pub fn state_base() -> Option<PathBuf> {
    if cfg!(windows) {
        env("LOCALAPPDATA")
    } else {
        env("XDG_STATE_HOME").or_else(|| home().map(|h| h.join(".local/state")))
    }
}

/// Where per-user data goes: `$XDG_DATA_HOME` or `~/.local/share` on Linux,
/// `~/Library/Application Support` on macOS, `%LOCALAPPDATA%` (else `%APPDATA%`) on
/// Windows.
pub fn data_base() -> Option<PathBuf> {
    if cfg!(windows) {
        env("LOCALAPPDATA").or_else(|| env("APPDATA"))
    } else if cfg!(target_os = "macos") {
        Some(env("HOME")?.join("Library/Application Support"))
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local/share")))
    }
}

/// Wireshark's per-user configuration root on Windows (`%APPDATA%`), where its personal
/// extcap folder is `Wireshark\extcap`; `None` elsewhere.
pub fn windows_appdata() -> Option<PathBuf> {
    if cfg!(windows) {
        env("APPDATA")
    } else {
        None
    }
}

/// Where tshark may be when it is not on PATH: inside Wireshark.app on macOS, Wireshark's
/// program folder on Windows.
pub fn wireshark_programs() -> Vec<PathBuf> {
    if cfg!(windows) {
        let pf = env("ProgramFiles").unwrap_or_else(|| PathBuf::from(r"C:\Program Files"));
        vec![
            pf.join(r"Wireshark\tshark.exe"),
            pf.join(r"Wireshark\Wireshark.exe"),
        ]
    } else if cfg!(target_os = "macos") {
        vec![
            PathBuf::from("/Applications/Wireshark.app/Contents/MacOS/tshark"),
            PathBuf::from("/Applications/Wireshark.app/Contents/MacOS/Wireshark"),
        ]
    } else {
        Vec::new()
    }
}

/// The system OpenSSH client: on Windows the one Windows ships (an optional feature of
/// Windows 10/11, in `System32\OpenSSH`), else `ssh` on PATH.
pub fn system_ssh() -> PathBuf {
    if cfg!(windows) {
        let root = env("SystemRoot").unwrap_or_else(|| PathBuf::from(r"C:\Windows"));
        let shipped = root.join(r"System32\OpenSSH\ssh.exe");
        if shipped.is_file() {
            return shipped;
        }
    }
    PathBuf::from("ssh")
}

/// What to do when no ssh client is found, for the sentence that says so.
pub const SSH_INSTALL_HINT: &str = if cfg!(windows) {
    "add Windows' OpenSSH Client (Settings, Optional features)"
} else {
    "install OpenSSH's client"
};
