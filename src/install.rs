//! `awsvpc install` / `uninstall`: put the binary into the personal extcap folder of the
//! Wireshark found on this machine, and take it out again.

use std::path::{Path, PathBuf};
use std::process::Command;

fn home() -> Option<PathBuf> {
    crate::sys::dirs::home()
}

/// Wireshark's `major.minor`, from `tshark --version` or `wireshark --version`.
pub fn wireshark_version() -> Option<(u32, u32)> {
    let on_path = ["tshark", "wireshark"].map(PathBuf::from);
    for prog in on_path
        .into_iter()
        .chain(crate::sys::dirs::wireshark_programs())
    {
        let Ok(out) = Command::new(&prog).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or("");
        if let Some(v) = first
            .split_whitespace()
            .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        {
            let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
            if let (Some(Some(a)), Some(Some(b))) = (it.next(), it.next()) {
                return Some((a, b));
            }
        }
    }
    None
}

/// The personal extcap folder of a given Wireshark version (4.0: the config folder;
/// 4.1 and later: `~/.local/lib/wireshark/extcap`).
pub fn personal_extcap_dir(version: Option<(u32, u32)>) -> Option<PathBuf> {
    if let Some(appdata) = crate::sys::dirs::windows_appdata() {
        return Some(appdata.join("Wireshark").join("extcap"));
    }
    let home = home()?;
    match version {
        Some((major, minor)) if (major, minor) < (4, 1) => {
            let legacy = home.join(".wireshark");
            if legacy.is_dir() {
                return Some(legacy.join("extcap"));
            }
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(".config"));
            Some(config.join("wireshark").join("extcap"))
        }
        _ => Some(home.join(".local/lib/wireshark/extcap")),
    }
}

fn binary_name() -> String {
    format!("awsvpc{}", std::env::consts::EXE_SUFFIX)
}

pub fn install(dir: Option<&Path>, symlink: bool) -> Result<String, String> {
    let version = wireshark_version();
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => personal_extcap_dir(version)
            .ok_or("Cannot find the home folder; name the extcap folder with --dir.")?,
    };
    let me = std::env::current_exe().map_err(|e| format!("Cannot find the awsvpc binary: {e}."))?;
    let me = me.canonicalize().unwrap_or(me);
    if let Ok(m) = std::fs::metadata(&dir) {
        if !m.is_dir() {
            return Err(format!(
                "{} is a {}, not a folder; name the extcap folder with --dir.",
                dir.display(),
                crate::files::kind(&m.file_type())
            ));
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "Cannot create {}: {e}; name a folder you can write to with --dir.",
            dir.display()
        )
    })?;
    let target = dir.join(binary_name());
    if let Ok(m) = std::fs::symlink_metadata(&target) {
        if m.is_dir() {
            return Err(format!(
                "{} is a folder, not awsvpc; remove it or install into another folder with --dir.",
                target.display()
            ));
        }
        // The installed binary (or a hard link to it) running `install` again: removing it
        // would leave nothing to copy. A symlink to it is only a link, and is replaced.
        if !m.file_type().is_symlink() && crate::files::same_file_paths(&me, &target) {
            let _ = write_help();
            return Ok(format!(
                "awsvpc {} is already installed at {} (it is the binary that ran this).",
                env!("CARGO_PKG_VERSION"),
                target.display()
            ));
        }
        std::fs::remove_file(&target)
            .map_err(|e| format!("Cannot replace {}: {e}.", target.display()))?;
    }
    if symlink {
        crate::sys::fs::symlink(&me, &target).map_err(|e| {
            if e.kind() == std::io::ErrorKind::Unsupported {
                "--symlink is not supported on this system; install a copy.".to_string()
            } else {
                format!("Cannot link {}: {e}.", target.display())
            }
        })?;
    } else {
        std::fs::copy(&me, &target)
            .map_err(|e| format!("Cannot copy awsvpc to {}: {e}.", target.display()))?;
        crate::sys::fs::make_executable(&target);
    }
    let help = write_help();
    let found = match version {
        Some((a, b)) => format!("Wireshark {a}.{b}"),
        None => "no Wireshark on PATH (assumed 4.2 or later)".to_string(),
    };
    Ok(format!(
        "Installed awsvpc {} for {found}: {}{}{help}\nRestart Wireshark (or run tshark -D) to see \"AWS VPC Traffic Mirroring\". Undo with: awsvpc uninstall",
        env!("CARGO_PKG_VERSION"),
        target.display(),
        if symlink { format!(" -> {}", me.display()) } else { String::new() }
    ))
}

/// The page the toolbar's Help button opens, and a line saying where it went.
fn write_help() -> String {
    match crate::help::page_path() {
        Some(h) => match crate::help::write_page(&h) {
            Ok(()) => format!("\nHelp (the toolbar's Help button): {}", h.display()),
            Err(e) => format!("\nCould not write the help page {} ({e}).", h.display()),
        },
        None => String::new(),
    }
}

/// Removes awsvpc from every personal extcap folder it may be in.
pub fn uninstall(dir: Option<&Path>) -> Result<String, String> {
    let dirs: Vec<PathBuf> = match dir {
        Some(d) => vec![d.to_path_buf()],
        None => [
            personal_extcap_dir(Some((4, 0))),
            personal_extcap_dir(Some((4, 2))),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    let mut removed = Vec::new();
    for d in dirs {
        let t = d.join(binary_name());
        // A folder of that name is not awsvpc.
        if std::fs::symlink_metadata(&t).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&t).map_err(|e| format!("Cannot remove {}: {e}.", t.display()))?;
            removed.push(t.display().to_string());
        }
    }
    if let Some(h) = crate::help::page_path() {
        let _ = std::fs::remove_file(h);
    }
    Ok(if removed.is_empty() {
        "awsvpc was not installed in a personal extcap folder.".to_string()
    } else {
        format!("Removed {}", removed.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_depends_on_version() {
        let d40 = personal_extcap_dir(Some((4, 0))).unwrap();
        let d42 = personal_extcap_dir(Some((4, 2))).unwrap();
        assert!(d40.ends_with("wireshark/extcap"));
        assert!(d42.ends_with(".local/lib/wireshark/extcap"));
        assert_ne!(d40, d42);
    }
}
