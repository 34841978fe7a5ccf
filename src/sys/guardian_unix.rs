//! The guardian's Unix plumbing (Linux and macOS): a detached child in a session of its own
//! reading the end of a pipe that only this process can write.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Starts `exe args` in its own session (a signal to Wireshark's process group or to awsvpc
/// does not reach it), stdin the read end of a fresh pipe, stdout and stderr /dev/null.
/// `std::io::pipe` opens both ends close-on-exec, so only the guardian's stdin (a dup2,
/// which clears the flag) carries the read end and no other child (ssh, a credential
/// helper) inherits the write end: EOF means this process is gone.
pub fn spawn_detached(exe: &Path, args: &[OsString]) -> io::Result<(u32, io::PipeWriter)> {
    let (reader, writer) = io::pipe()?;
    let mut c = Command::new(exe);
    c.args(args)
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and changes only the child.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The child is not waited for: once this process is gone it is reparented and reaped.
    let child = c.spawn()?;
    Ok((child.id(), writer))
}

/// Closes every descriptor above stderr that came in over exec: what Wireshark or awsvpc
/// left inheritable (a fifo, a control pipe) must not be held open by the guardian.
pub fn close_inherited_fds() {
    let dir = if Path::new("/proc/self/fd").is_dir() {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    let fds: Vec<i32> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        // SAFETY: closing a descriptor number; the directory's own is already closed
        // (EBADF), and nothing else runs yet in this process.
        unsafe { libc::close(fd) };
    }
}

/// The session `pid` is in, if it exists.
pub fn session_of(pid: u32) -> Option<i32> {
    // SAFETY: getsid has no memory preconditions.
    let sid = unsafe { libc::getsid(pid as i32) };
    (sid >= 0).then_some(sid)
}

/// Whether a process with this id exists (a zombie counts as gone on Linux).
pub fn alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    #[cfg(target_os = "linux")]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        return state != Some('Z') && state != Some('X');
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// SIGTERM, then SIGKILL after `grace`, to `pid` if it is still in session `sid` (a
/// recycled pid elsewhere is not touched).
pub fn end(pid: u32, sid: i32, grace: std::time::Duration) -> bool {
    if session_of(pid) != Some(sid) || !alive(pid) {
        return false;
    }
    // SAFETY: kill has no memory preconditions; pid was checked just above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + grace;
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if alive(pid) && session_of(pid) == Some(sid) {
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    true
}
