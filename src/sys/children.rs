//! Processes awsvpc leaves behind. The AWS SDK runs a profile's `credential_process` with
//! `sh -c` and, when its identity resolver times out, drops the future without killing the
//! child: a hung helper (and its own children) would outlive awsvpc. At exit awsvpc ends
//! every descendant still in its own session; what it detached on purpose (the deferred
//! `awsvpc cleanup`, its own session) is spared.

use std::time::Duration;

/// Ends the descendants of this process that share its session: SIGTERM, then SIGKILL for
/// those still there after `grace`. Returns how many were signalled.
pub fn end_children(grace: Duration) -> usize {
    imp::end_descendants_of(std::process::id() as i32, grace)
}

/// The file name starting with `prefix` among the libraries the nearest of this process's
/// ancestors has mapped (the parent first, then up to three more: a wrapper script), e.g.
/// `libwireshark.so.18.0.0`. Linux only (`/proc/PID/maps`); `None` elsewhere.
pub fn caller_library(prefix: &str) -> Option<String> {
    imp::caller_library(prefix)
}

#[cfg(target_os = "linux")]
mod imp {
    pub fn caller_library(prefix: &str) -> Option<String> {
        // SAFETY: getppid has no preconditions.
        let mut pid = unsafe { libc::getppid() };
        for _ in 0..4 {
            if pid <= 1 {
                break;
            }
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
            let found = maps
                .lines()
                .filter_map(|l| l.rsplit('/').next())
                .find(|name| name.starts_with(prefix));
            if let Some(name) = found {
                return Some(name.trim_end().to_string());
            }
            // /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces and ')'.
            pid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
                })
                .unwrap_or(0);
        }
        None
    }

    use std::time::{Duration, Instant};

    /// (pid, parent pid, session id, state) of every process, from /proc.
    fn processes() -> Vec<(i32, i32, i32, char)> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // "pid (comm) state ppid pgrp session …"; comm may hold spaces and ')'.
                let (_, rest) = stat.rsplit_once(')')?;
                let mut f = rest.split_whitespace();
                let state = f.next()?.chars().next()?;
                let ppid = f.next()?.parse().ok()?;
                let _pgrp = f.next()?;
                let sid = f.next()?.parse().ok()?;
                Some((pid, ppid, sid, state))
            })
            .collect()
    }

    /// Live descendants of `root` (not `root` itself) in `root`'s session; with `any_session`
    /// also those that left it (they are not walked into when not counted).
    pub(super) fn descendants_of(root: i32, any_session: bool) -> Vec<(i32, i32)> {
        // SAFETY: getsid has no memory preconditions.
        let session = unsafe { libc::getsid(root) };
        let all = processes();
        let mut found: Vec<(i32, i32)> = vec![(root, session)];
        let mut i = 0;
        while i < found.len() {
            let parent = found[i].0;
            for &(pid, ppid, sid, state) in &all {
                let counted = any_session || sid == session;
                if ppid == parent && counted && state != 'Z' && !found.iter().any(|f| f.0 == pid) {
                    found.push((pid, sid));
                }
            }
            i += 1;
        }
        found.remove(0);
        found
    }

    pub fn end_descendants_of(root: i32, grace: Duration) -> usize {
        let first = descendants_of(root, false);
        for &(pid, _) in &first {
            // SAFETY: kill has no memory preconditions; pid is a descendant just read.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        while !first.is_empty() && Instant::now() < deadline {
            if descendants_of(root, false).is_empty() {
                return first.len();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for (pid, _) in descendants_of(root, false) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        first.len()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::time::Duration;

    /// No process table to walk without a platform API; the guardian (and on Windows a
    /// job object) is where children are bounded there.
    pub fn caller_library(_prefix: &str) -> Option<String> {
        None
    }

    pub fn end_descendants_of(_root: i32, _grace: Duration) -> usize {
        0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::imp::*;
    use std::time::{Duration, Instant};

    #[test]
    fn descendants_in_the_session_are_ended_a_detached_one_is_not() {
        // sh runs a sleep in its session and one in a session of its own (setsid).
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 600 & a=$!; setsid sleep 601 & wait $a"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let root = sh.id() as i32;
        // SAFETY: getsid has no memory preconditions.
        let session = unsafe { libc::getsid(root) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut all = Vec::new();
        while Instant::now() < deadline {
            all = descendants_of(root, true);
            if all.len() >= 2 && all.iter().any(|d| d.1 != session) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let detached = all.iter().find(|d| d.1 != session).expect("setsid sleep").0;
        assert_eq!(end_descendants_of(root, Duration::from_secs(2)), 1);
        // sh's `wait` returns once its sleep is gone.
        let status = sh.wait().unwrap();
        assert_eq!(status.code(), Some(143), "sleep ended by SIGTERM");
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(detached, 0) } == 0;
        unsafe { libc::kill(detached, libc::SIGKILL) };
        assert!(alive, "the detached process was spared");
    }
}
