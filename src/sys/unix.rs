//! Wireshark's pipes on Unix, which are fifos: `stat`/`fstat` for the kind check,
//! `O_NONBLOCK` opens, `poll` for room and for a reader that closed its end, `fcntl` for
//! the pipe size and the blocking mode.

use super::NotAPipe;
use std::fs::{File, FileType, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// The pipe capacity asked for (Linux's default `pipe-max-size`, allowed without privilege).
#[cfg(target_os = "linux")]
const PIPE_SIZE: i32 = 1 << 20;

/// Why `path` cannot be one of Wireshark's pipes, or `None` when it is a fifo. Looked at
/// before opening, so that nothing else is ever opened, let alone created or truncated.
pub fn not_a_pipe(path: &Path) -> Option<NotAPipe> {
    match std::fs::metadata(path) {
        Ok(m) => kind_problem(m.file_type()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(NotAPipe::Missing),
        Err(e) => Some(NotAPipe::Unexaminable(e)),
    }
}

/// The same check on an opened file (`fstat`): the path may have been replaced between the
/// check and the open.
pub fn opened_not_a_pipe(f: &File) -> Option<NotAPipe> {
    match f.metadata() {
        Ok(m) => kind_problem(m.file_type()),
        Err(e) => Some(NotAPipe::Unexaminable(e)),
    }
}

/// What a Unix pipe is called in sentences.
pub const PIPE_KIND: &str = "a fifo";

/// The signals that stop a capture: Wireshark's SIGTERM, a terminal's Ctrl-C and hang-up.
pub const STOP_SIGNALS: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn kind_problem(t: FileType) -> Option<NotAPipe> {
    use super::fs::FileKind;
    // The pipe sentences have words of their own for each kind.
    let kind = match super::fs::kind(&t) {
        FileKind::Fifo => return None,
        FileKind::File => "a regular file",
        FileKind::Folder => "a directory",
        FileKind::CharDevice => "a character device",
        FileKind::BlockDevice => "a block device",
        FileKind::Socket => "a socket",
        FileKind::Special => "a file of another kind",
    };
    Some(NotAPipe::Other(kind))
}

/// Opens `path` for reading, waiting until a writer has it open (a fifo's open blocks
/// until then; the caller runs this on a thread of its own).
pub fn open_read_waiting(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Opens `path` for writing without blocking, without `O_CREAT` or `O_TRUNC`. `Ok(None)`
/// while nobody has the read end open (`ENXIO`). The descriptor stays non-blocking.
pub fn open_write_nonblocking(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes writes to `f` block again (for a writer that may wait without harm).
pub fn set_blocking(f: &File) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` owns; no memory is passed.
    let r = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK)
        }
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits at most `limit` until `fd` takes more bytes or its reader has gone (either way the
/// next write says which). Returns early on a signal.
pub fn wait_writable(p: &impl AsFd, limit: Duration) {
    let mut p = libc::pollfd {
        fd: p.as_fd().as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe {
        libc::poll(&mut p, 1, limit.as_millis().min(i32::MAX as u128) as i32);
    }
}

/// Whether the reader of the pipe `fd` writes to has closed its end: on Linux, `poll` on a
/// pipe's write end reports `POLLERR` then (and a terminal that hung up `POLLHUP`). Does not
/// wait; false for anything that is not a pipe.
pub fn reader_gone(p: &impl AsFd) -> bool {
    let mut p = libc::pollfd {
        fd: p.as_fd().as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Grows a pipe from Linux's default 64 KiB (1.5 ms at 40k full-size frames/s) to 1 MiB, so
/// that a reader's short pause (Wireshark redrawing, a scheduler hiccup) is absorbed instead
/// of stalling the chain back to the collector's socket, where it becomes loss. Best effort:
/// not a pipe, or a limit, leaves it as it is.
pub fn widen_pipe(p: &impl AsFd) {
    // macOS has no way to resize a pipe; its fifos grow to 64 KiB on their own.
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on a descriptor the caller owns; no memory is passed.
    unsafe {
        libc::fcntl(p.as_fd().as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = p;
}

/// A child's output read with a deadline straight from its pipe, so that no thread stands
/// between the pipe and its reader: the descriptor is made non-blocking, and `poll` waits
/// only when nothing is there. (An OS that cannot wait on a pipe gives it back from
/// [`TimedPipe::new`]; the caller then reads it on a thread.)
pub struct TimedPipe(std::process::ChildStdout);

impl TimedPipe {
    pub fn new(p: std::process::ChildStdout) -> Result<TimedPipe, std::process::ChildStdout> {
        let fd = p.as_raw_fd();
        // SAFETY: fcntl on a descriptor `p` owns; no memory is passed.
        let ok = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) >= 0
        };
        if ok {
            Ok(TimedPipe(p))
        } else {
            Err(p)
        }
    }

    /// Reads what is there into `buf`, waiting at most `wait` for the first byte.
    /// `Ok(None)`: nothing came; `Ok(Some(0))`: the writer closed its end.
    pub fn read(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<Option<usize>> {
        use std::io::Read;
        let mut waited = false;
        loop {
            match self.0.read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if waited {
                return Ok(None);
            }
            let mut p = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd. A signal ends the wait early, as a timeout does.
            unsafe {
                libc::poll(&mut p, 1, wait.as_millis().min(i32::MAX as u128) as i32);
            }
            waited = true;
        }
    }
}

/// Starts `c` in a session of its own, so that a signal to Wireshark's process group or to
/// awsvpc does not reach it.
pub fn spawn_detached(c: &mut std::process::Command) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and changes only the child.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn()
}

/// On Unix a child that must not outlive awsvpc is ended at exit (`end_children`) and, if
/// awsvpc is killed, by the guardian; nothing to do at spawn.
pub fn bind_child(_child: &std::process::Child) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("fifo");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        p
    }

    #[test]
    fn a_timed_pipe_waits_delivers_then_ends() {
        let mut child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut pipe = TimedPipe::new(child.stdout.take().unwrap()).ok().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            pipe.read(&mut buf, Duration::from_millis(20)).unwrap(),
            None
        );
        stdin.write_all(b"abc").unwrap();
        let n = pipe.read(&mut buf, Duration::from_secs(10)).unwrap();
        assert_eq!(n, Some(3));
        assert_eq!(&buf[..3], b"abc");
        drop(stdin);
        assert_eq!(
            pipe.read(&mut buf, Duration::from_secs(10)).unwrap(),
            Some(0)
        );
        child.wait().unwrap();
    }

    #[test]
    fn only_a_fifo_is_a_pipe_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep").unwrap();
        let missing = dir.path().join("missing");
        let why = |p: &Path| not_a_pipe(p).map(|w| w.to_string());
        assert_eq!(why(&file).as_deref(), Some("is a regular file, not a fifo"));
        assert_eq!(
            why(dir.path()).as_deref(),
            Some("is a directory, not a fifo")
        );
        assert_eq!(why(&missing).as_deref(), Some("does not exist"));
        assert!(why(&fifo(dir.path())).is_none());
        // The open itself never creates or truncates either.
        assert!(open_write_nonblocking(&missing).is_err());
        assert!(!missing.exists());
        let f = open_write_nonblocking(&file).unwrap().unwrap();
        assert!(opened_not_a_pipe(&f).is_some());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }

    #[test]
    fn a_fifo_without_reader_does_not_block_and_a_closed_reader_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let p = fifo(dir.path());
        assert!(open_write_nonblocking(&p).unwrap().is_none(), "ENXIO");
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .unwrap();
        let mut w = open_write_nonblocking(&p).unwrap().unwrap();
        assert!(opened_not_a_pipe(&w).is_none());
        assert!(!reader_gone(&w));
        // Full: a write would block, and waiting is bounded.
        let chunk = [0u8; 65536];
        let full = loop {
            if let Err(e) = w.write(&chunk) {
                break e;
            }
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
        let t = Instant::now();
        wait_writable(&w, Duration::from_millis(50));
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(reader);
        assert!(reader_gone(&w));
        wait_writable(&w, Duration::from_secs(30));
        assert_eq!(
            w.write(&chunk).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
