//! The guardian's Windows plumbing: a process created outside Wireshark's console, process
//! group and (where the job allows it) job object, whose stdin is the read end of an
//! anonymous pipe whose write end only this process holds. `TerminateProcess` on awsvpc
//! closes that end: the guardian reads EOF, as on Unix.
//!
//! Windows has no sessions; a child's identity is its creation time, so that a recycled
//! process id is never ended by mistake.

use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE, STILL_ACTIVE};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, TerminateProcess,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
};

/// Handles are not inherited unless asked for (std's default): nothing to close.
pub fn close_inherited_fds() {}

struct Process(HANDLE);

impl Process {
    fn open(pid: u32, access: u32) -> Option<Process> {
        // SAFETY: OpenProcess has no memory preconditions; null means failure.
        let h = unsafe { OpenProcess(access, 0, pid) };
        (!h.is_null()).then_some(Process(h))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: a handle this value owns.
        unsafe { CloseHandle(self.0) };
    }
}

/// The process's identity: the low 31 bits of its creation time (100 ns ticks).
pub fn session_of(pid: u32) -> Option<i32> {
    let p = Process::open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: four FILETIMEs that outlive the call, a valid handle.
    let ok = unsafe { GetProcessTimes(p.0, &mut created, &mut exited, &mut kernel, &mut user) };
    (ok != 0).then_some((created.dwLowDateTime & 0x7fff_ffff) as i32)
}

/// Whether a process with this id is still running.
pub fn alive(pid: u32) -> bool {
    let Some(p) = Process::open(pid, PROCESS_QUERY_LIMITED_INFORMATION) else {
        return false;
    };
    let mut code = 0u32;
    // SAFETY: a valid handle and an out-parameter that outlives the call.
    let ok = unsafe { GetExitCodeProcess(p.0, &mut code) };
    ok != 0 && code == STILL_ACTIVE as u32
}

/// Ends `pid` if it is still the process first seen with identity `sid`. Windows has no
/// SIGTERM for a console-less child: this is `TerminateProcess`, without a grace period.
pub fn end(pid: u32, sid: i32, _grace: std::time::Duration) -> bool {
    if session_of(pid) != Some(sid) || !alive(pid) {
        return false;
    }
    let Some(p) = Process::open(pid, PROCESS_TERMINATE) else {
        return false;
    };
    // SAFETY: a valid handle with PROCESS_TERMINATE access.
    unsafe { TerminateProcess(p.0, 1) != 0 }
}
