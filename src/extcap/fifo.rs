//! Wireshark's capture fifo. dumpcap waits without a timeout for the first bytes, so every
//! exit path must have opened it: a failure opens and closes it so tshark reports the error
//! instead of hanging.
//!
//! Only a fifo is accepted (and `-`, stdout, for manual runs): any other path is refused
//! before it is opened, and nothing is ever created or truncated. No wait for Wireshark
//! outlasts a stop: the open waits for a reader in slices that look at the stop flag, and
//! the writer's descriptor is non-blocking, so a reader that stops reading holds the exit
//! for at most [`STOP_GRACE`]. The same opens serve the control pipes.

use crate::capture::{Output, WriteAbandoned};
use crate::sys::{self, NotAPipe};
use crate::{log_info, log_msg};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::sys::widen_pipe;

/// Big enough for a batch of jumbo frames; flushed after every batch.
const BUFFER: usize = 1 << 20;
/// How often a wait for Wireshark's end of a pipe looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);
/// A write to a full pipe waits in slices of this, looking at the stop flag in between.
const WRITE_SLICE: Duration = Duration::from_millis(50);
/// After a stop, how long a write still waits for a reader that takes nothing (for the
/// drained batches and the final statistics) before what is left is dropped.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// What ends the sentence refusing `--fifo`.
const FIFO_FIX: &str =
    "pass the fifo Wireshark created (mkfifo one for a manual run, or use --fifo - for stdout).";

pub type FifoWriter = BufWriter<PipeOut>;

/// The capture pipe's writer, under the [`BufWriter`]: straight `write`s while the pipe
/// takes them; only when it is full, `poll` until it has room, the reader leaves, or a stop
/// has waited [`STOP_GRACE`].
pub struct PipeOut {
    out: Out,
    stop: Arc<AtomicBool>,
    give_up_at: Option<Instant>,
    abandoned: bool,
}

enum Out {
    /// `--fifo -`: left blocking, since the descriptor may be shared (a terminal).
    Stdout(io::Stdout),
    Fifo(File),
}

impl Write for PipeOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = match &mut self.out {
            Out::Stdout(s) => return s.write(buf),
            Out::Fifo(f) => f,
        };
        loop {
            if self.abandoned {
                return Err(io::Error::other(WriteAbandoned));
            }
            match f.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            if self.stop.load(Ordering::Relaxed) {
                let at = *self
                    .give_up_at
                    .get_or_insert_with(|| Instant::now() + STOP_GRACE);
                if Instant::now() >= at {
                    self.abandoned = true;
                    log_msg!(
                        "Wireshark did not read the capture pipe for {} s after the stop; what was not written yet is dropped, the final statistics with it",
                        STOP_GRACE.as_secs()
                    );
                    continue;
                }
            }
            sys::wait_writable(f, WRITE_SLICE);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::Stdout(s) => s.flush(),
            Out::Fifo(_) => Ok(()),
        }
    }
}

impl Output for FifoWriter {
    fn reader_gone(&self) -> bool {
        match &self.get_ref().out {
            Out::Stdout(s) => sys::reader_gone(s),
            Out::Fifo(f) => sys::reader_gone(f),
        }
    }
}

/// The sentence refusing `path`, given as `option`, because of `why`.
fn refusal(option: &str, path: &Path, why: NotAPipe, fix: &str) -> String {
    let shown = path.display();
    match why {
        NotAPipe::Other(_) => format!("{option} {shown} {why}, so awsvpc left it untouched; {fix}"),
        _ => format!("{option} {shown} {why}; {fix}"),
    }
}

fn checked(option: &str, path: &Path, f: File, fix: &str) -> Result<File, String> {
    match sys::opened_not_a_pipe(&f) {
        None => Ok(f),
        Some(why) => Err(refusal(option, path, why, fix)),
    }
}

/// The sentence for an open that failed: a pipe that is not there (a Windows named pipe is
/// found missing only by connecting to it) is refused like any missing path.
fn open_failed(option: &str, path: &Path, e: io::Error, fix: &str) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        return refusal(option, path, NotAPipe::Missing, fix);
    }
    format!("Cannot open {option} {}: {e}.", path.display())
}

/// Opens the pipe `path` (given as `option`) for writing once a reader has it open, waiting
/// for one until `stop` is set (`Ok(None)`). The descriptor is non-blocking. Anything but a
/// fifo is refused with the sentence ending in `fix`.
pub fn open_writer(
    option: &str,
    path: &Path,
    fix: &str,
    stop: &AtomicBool,
) -> Result<Option<File>, String> {
    let shown = path.display();
    if let Some(why) = sys::not_a_pipe(path) {
        return Err(refusal(option, path, why, fix));
    }
    let mut told = false;
    loop {
        match sys::open_write_nonblocking(path) {
            Ok(Some(f)) => return checked(option, path, f, fix).map(Some),
            Ok(None) => {}
            Err(e) => return Err(open_failed(option, path, e, fix)),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if !told {
            told = true;
            log_info!("waiting for Wireshark to open {option} {shown} for reading");
        }
        std::thread::sleep(STOP_POLL);
    }
}

/// Opens the pipe `path` (given as `option`) for reading once a writer has it open, waiting
/// for one until `stop` is set (`Ok(None)`). The open blocks on a thread of its own: a
/// non-blocking one would succeed at once and read end-of-file before Wireshark connects.
pub fn open_reader(
    option: &str,
    path: &Path,
    fix: &str,
    stop: &AtomicBool,
) -> Result<Option<File>, String> {
    let shown = path.display();
    if let Some(why) = sys::not_a_pipe(path) {
        return Err(refusal(option, path, why, fix));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::Builder::new()
        .name("open-reader".into())
        .spawn(move || {
            let _ = tx.send(sys::open_read_waiting(&p));
        })
        .map_err(|e| format!("Cannot open {option} {shown}: {e}."))?;
    let mut told = false;
    loop {
        match rx.recv_timeout(STOP_POLL) {
            Ok(Ok(f)) => return checked(option, path, f, fix).map(Some),
            Ok(Err(e)) => return Err(open_failed(option, path, e, fix)),
            // Given up: the thread stays in open() until the process exits.
            Err(_) if stop.load(Ordering::Relaxed) => return Ok(None),
            Err(_) => {}
        }
        if !told {
            told = true;
            log_info!("waiting for Wireshark to open {option} {shown} for writing");
        }
    }
}

pub struct Fifo {
    /// A path, not a String: a fifo path that is not UTF-8 must still be opened and closed.
    path: Option<PathBuf>,
    writer: Option<FifoWriter>,
    opened: bool,
}

impl crate::capture::Pipe for Fifo {
    type Writer = FifoWriter;

    fn take_writer(&mut self) -> Option<FifoWriter> {
        self.writer.take()
    }
}

impl Fifo {
    pub fn new(path: Option<PathBuf>) -> Self {
        Fifo {
            path,
            writer: None,
            opened: false,
        }
    }

    /// Opens the fifo for writing (`-` is stdout, for manual runs) once Wireshark has the
    /// read end open, which it does before starting the extcap. False when `stop` was set
    /// while waiting for it.
    pub fn open(&mut self, stop: &Arc<AtomicBool>) -> Result<bool, String> {
        let Some(path) = &self.path else {
            return Ok(true);
        };
        let out = if path.as_os_str() == "-" {
            let out = io::stdout();
            widen_pipe(&out);
            Out::Stdout(out)
        } else {
            match open_writer("--fifo", path, FIFO_FIX, stop)? {
                Some(f) => {
                    widen_pipe(&f);
                    Out::Fifo(f)
                }
                None => return Ok(false),
            }
        };
        let out = PipeOut {
            out,
            stop: stop.clone(),
            give_up_at: None,
            abandoned: false,
        };
        self.writer = Some(BufWriter::with_capacity(BUFFER, out));
        self.opened = true;
        Ok(true)
    }

    /// After a fatal error: make sure the fifo was opened once, then close it. The open is
    /// bounded so that a reader that went away cannot hang the exit.
    pub fn close_after_error(&mut self) {
        if let Some(mut w) = self.writer.take() {
            let _ = w.flush();
            return;
        }
        self.touch(Duration::from_secs(5));
    }

    /// After a stop before the fifo was opened: open and close it if a reader is there
    /// already, so that it sees the end, without waiting for one.
    pub fn close_after_stop(&mut self) {
        self.touch(Duration::ZERO);
    }

    /// Opens the fifo and closes it at once, waiting at most `limit` for a reader. Anything
    /// that is not a fifo is left alone: never created, truncated or opened.
    fn touch(&mut self, limit: Duration) {
        if self.opened {
            return;
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        if path.as_os_str() == "-" || sys::not_a_pipe(&path).is_some() {
            return;
        }
        let deadline = Instant::now() + limit;
        loop {
            match sys::open_write_nonblocking(&path) {
                Ok(Some(f)) => {
                    drop(f);
                    return;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(STOP_POLL),
                _ => return,
            }
        }
    }
}
