//! Wireshark's pipes on Windows, which are named pipes (`\\.\pipe\wireshark_extcap_…`)
//! that Wireshark creates and awsvpc connects to as a client (extcap.c, ws_pipe.c).
//!
//! - A connect is `CreateFile` with `SECURITY_IDENTIFICATION`: without the flag a client
//!   of a pipe created by a less privileged Wireshark is refused (r-extcap's fix, see
//!   `../shared/reference/extcap-contract.md`, "Creation and opening").
//! - A path under `\\.\pipe\` is never examined by opening it: that would take the pipe's
//!   one instance from Wireshark. Anything else is refused by its metadata, as on Unix.
//! - Writes stay blocking: Windows has no portable non-blocking mode for a synchronous pipe
//!   handle, and Wireshark for Windows ends an extcap with `TerminateProcess` rather than
//!   waiting for it, so a blocked write never holds a stop up.

use super::NotAPipe;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsHandle, AsRawHandle};
use std::path::Path;
use std::time::Duration;
use windows_sys::Win32::Foundation::{ERROR_PIPE_BUSY, HANDLE};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileType, FILE_TYPE_CHAR, FILE_TYPE_DISK, FILE_TYPE_PIPE,
};
use windows_sys::Win32::System::Pipes::WaitNamedPipeW;

/// `SecurityIdentification << 16` (winbase.h); std adds `SECURITY_SQOS_PRESENT`.
const SECURITY_IDENTIFICATION: u32 = 1 << 16;

/// What a Windows pipe is called in sentences.
pub const PIPE_KIND: &str = "a named pipe";

/// The signals that stop a capture: Ctrl-C and Ctrl-Break in a console arrive as SIGINT
/// (and SIGBREAK, which the C runtime maps to SIGINT's handler here); Wireshark itself
/// sends none (it calls `TerminateProcess`; the guardian covers that).
pub const STOP_SIGNALS: &[i32] = &[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

fn is_pipe_path(path: &Path) -> bool {
    let p = path.as_os_str().to_string_lossy().to_ascii_lowercase();
    p.starts_with(r"\\.\pipe\") || p.starts_with(r"\\?\pipe\")
}

/// Why `path` cannot be one of Wireshark's pipes, or `None` when it may be one.
pub fn not_a_pipe(path: &Path) -> Option<NotAPipe> {
    if is_pipe_path(path) {
        // Existence is learnt from the connect itself (see the module's comment).
        return None;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Some(NotAPipe::Other("a directory")),
        Ok(_) => Some(NotAPipe::Other("a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(NotAPipe::Missing),
        Err(e) => Some(NotAPipe::Unexaminable(e)),
    }
}

/// The same check on an opened handle (`GetFileType`).
pub fn opened_not_a_pipe(f: &File) -> Option<NotAPipe> {
    // SAFETY: a valid handle `f` owns.
    let t = unsafe { GetFileType(f.as_raw_handle() as HANDLE) };
    match t {
        FILE_TYPE_PIPE => None,
        FILE_TYPE_DISK => Some(NotAPipe::Other("a regular file")),
        FILE_TYPE_CHAR => Some(NotAPipe::Other("a character device")),
        _ => Some(NotAPipe::Other("a file of another kind")),
    }
}

fn connect(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .security_qos_flags(SECURITY_IDENTIFICATION)
        .open(path)
}

/// Connects to the pipe `path` for writing. `Ok(None)` while its one instance is taken
/// (`ERROR_PIPE_BUSY`), so the caller retries as it does for a fifo without a reader.
pub fn open_write_nonblocking(path: &Path) -> io::Result<Option<File>> {
    match connect(path, true) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Connects to the pipe `path` for reading, waiting while its instance is busy.
pub fn open_read_waiting(path: &Path) -> io::Result<File> {
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
    loop {
        match connect(path, false) {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                // SAFETY: a NUL-terminated UTF-16 name that outlives the call.
                unsafe { WaitNamedPipeW(wide.as_ptr(), 1000) };
            }
            r => return r,
        }
    }
}

/// Writes already block (see the module's comment).
pub fn set_blocking(_f: &File) -> io::Result<()> {
    Ok(())
}

/// Not reached: a write to a blocking pipe handle never reports `WouldBlock`.
pub fn wait_writable(_p: &impl AsHandle, limit: Duration) {
    std::thread::sleep(limit.min(Duration::from_millis(50)));
}

/// Windows tells a pipe client that its server left only when it writes
/// (`ERROR_NO_DATA`, a broken pipe); Wireshark ends the extcap before that matters.
pub fn reader_gone(_p: &impl AsHandle) -> bool {
    false
}

/// A named pipe's buffer is set by its creator (Wireshark), not by the client.
pub fn widen_pipe(_p: &impl AsHandle) {}

/// An anonymous pipe's handle cannot be waited on with a deadline: [`TimedPipe::new`] gives
/// every pipe back, and the caller reads it on a thread.
pub struct TimedPipe(std::convert::Infallible);

impl TimedPipe {
    pub fn new(p: std::process::ChildStdout) -> Result<TimedPipe, std::process::ChildStdout> {
        Err(p)
    }

    pub fn read(&mut self, _buf: &mut [u8], _wait: Duration) -> io::Result<Option<usize>> {
        match self.0 {}
    }
}

/// CreateProcess flags (winbase.h): no console, its own Ctrl-C group, out of the job.
const DETACHED_PROCESS: u32 = 0x0000_0008;
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
const CREATE_BREAKAWAY_FROM_JOB: u32 = 0x0100_0000;

/// Starts `c` detached from this process, so that what ends awsvpc does not end it: no
/// console, its own process group, out of the job object when the job allows breakaway (a
/// job that does not refuses the flag with "access denied"; the child then stays in it).
pub fn spawn_detached(c: &mut std::process::Command) -> io::Result<std::process::Child> {
    use std::os::windows::process::CommandExt;
    c.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_BREAKAWAY_FROM_JOB);
    match c.spawn() {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            c.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
            c.spawn()
        }
        r => r,
    }
}

/// Ties `child` to this process's life: `TerminateProcess` does not end a process's
/// children, but closing the last handle of a job with `KILL_ON_JOB_CLOSE` does, and the
/// job's one handle is this process's. Best effort (a job that forbids nesting refuses).
pub fn bind_child(child: &std::process::Child) {
    use std::sync::OnceLock;
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
        SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };
    // The handle as an integer: a HANDLE is a pointer, which a static cannot hold.
    static JOB: OnceLock<usize> = OnceLock::new();
    let job = *JOB.get_or_init(|| {
        // SAFETY: no security attributes, no name; the handle lives as long as the process.
        let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if job.is_null() {
            return 0;
        }
        // SAFETY: a zeroed limit structure is valid; only the flag is set.
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: a valid job handle and a structure of the size given.
        unsafe {
            SetInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                &info as *const _ as *const core::ffi::c_void,
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        job as usize
    });
    if job != 0 {
        // SAFETY: a valid job handle and the child's process handle.
        unsafe { AssignProcessToJobObject(job as HANDLE, child.as_raw_handle() as HANDLE) };
    }
}
