//! The guardian's Unix plumbing (Linux and macOS): descriptors it must not hold, and the
//! children it ends (by session, so that a recycled pid elsewhere is never touched).

use std::io;
use std::path::Path;

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
