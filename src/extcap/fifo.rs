//! Wireshark's capture fifo. dumpcap waits without a timeout for the first bytes, so every
//! exit path must have opened it: a failure opens and closes it so tshark reports the error
//! instead of hanging.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Big enough for a batch of jumbo frames; flushed after every batch.
const BUFFER: usize = 1 << 20;
/// The pipe capacity asked for (Linux's default `pipe-max-size`, allowed without privilege).
const PIPE_SIZE: i32 = 1 << 20;

/// Grows a pipe from Linux's default 64 KiB (1.5 ms at 40k full-size frames/s) to 1 MiB, so
/// that a reader's short pause (Wireshark redrawing, a scheduler hiccup) is absorbed instead
/// of stalling the chain back to the collector's socket, where it becomes loss. Best effort:
/// not a pipe, or a limit, leaves it as it is.
pub fn widen_pipe(fd: std::os::unix::io::RawFd) {
    // SAFETY: fcntl on a descriptor the caller owns; no memory is passed.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
}

pub type FifoWriter = BufWriter<Box<dyn Write + Send>>;

pub struct Fifo {
    /// A path, not a String: a fifo path that is not UTF-8 must still be opened and closed.
    path: Option<PathBuf>,
    writer: Option<FifoWriter>,
    opened: bool,
}

impl Fifo {
    pub fn new(path: Option<PathBuf>) -> Self {
        Fifo {
            path,
            writer: None,
            opened: false,
        }
    }

    /// Opens the fifo for writing (`-` is stdout, for manual runs). Blocks until Wireshark
    /// has the read end open, which it does before starting the extcap.
    pub fn open(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let w: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            widen_pipe(1);
            Box::new(io::stdout())
        } else {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?;
            widen_pipe(std::os::unix::io::AsRawFd::as_raw_fd(&f));
            Box::new(f)
        };
        self.writer = Some(BufWriter::with_capacity(BUFFER, w));
        self.opened = true;
        Ok(())
    }

    pub fn take_writer(&mut self) -> Option<FifoWriter> {
        self.writer.take()
    }

    /// After a fatal error: make sure the fifo was opened once, then close it. The open is
    /// bounded so that a reader that went away cannot hang the exit.
    pub fn close_after_error(&mut self) {
        if let Some(mut w) = self.writer.take() {
            let _ = w.flush();
            return;
        }
        if self.opened {
            return;
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        if path.as_os_str() == "-" {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(f) => {
                    drop::<File>(f);
                    return;
                }
                // ENXIO: no reader yet.
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return,
            }
        }
    }
}
