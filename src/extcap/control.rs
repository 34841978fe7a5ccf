//! The control pipes. Every message is a sync-pipe frame: an indicator byte, a 24-bit
//! big-endian length, then that many payload bytes. `'T'` frames (toolbar) carry the control
//! number, the command, and the control's payload (length = payload + 2). `'Q'` is the quit
//! message Wireshark's development branch (toward 5.0) writes to `--extcap-control-in`
//! instead of SIGTERM when the interface advertises `{control=2}` or `{control=3}`; its
//! payload, if any, means nothing. Read in wireshark/wireshark's `extcap.c`
//! (`extcap_request_stop`: `{ SP_QUIT, 0, 0, 0 }`) as mirrored in dreibh/wireshark at
//! ccf46bb120320c616e2b353f099d089d42066647, `capture/sync_pipe.h` (`SP_QUIT 'Q'`,
//! wireshark/wireshark ca57c2ad7b2767c0fab3f1098edb0a0936932047) and the WSDG's "Control
//! Protocol" (`doc/wsdg_src/wsdg_capture.adoc`, 9a2fe96cfdc24d19f7e9aa9e1f58278c7e8836a7).

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

pub const SYNC: u8 = b'T';
/// The quit indicator (`SP_QUIT` in Wireshark's `capture/sync_pipe.h`).
pub const QUIT: u8 = b'Q';
/// Wireshark's limit for one payload.
pub const MAX_PAYLOAD: usize = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    Initialized = 0,
    Set = 1,
    Add = 2,
    Remove = 3,
    Enable = 4,
    Disable = 5,
    Statusbar = 6,
    InfoDialog = 7,
    WarningDialog = 8,
    ErrorDialog = 9,
}

impl Command {
    pub fn from_u8(b: u8) -> Option<Self> {
        use Command::*;
        Some(match b {
            0 => Initialized,
            1 => Set,
            2 => Add,
            3 => Remove,
            4 => Enable,
            5 => Disable,
            6 => Statusbar,
            7 => InfoDialog,
            8 => WarningDialog,
            9 => ErrorDialog,
            _ => return None,
        })
    }
}

/// Encodes one frame; a payload over Wireshark's limit is cut at a character boundary.
pub fn encode(control: u8, command: Command, payload: &[u8]) -> Vec<u8> {
    let mut end = payload.len().min(MAX_PAYLOAD);
    while end < payload.len() && end > 0 && (payload[end] & 0xc0) == 0x80 {
        end -= 1;
    }
    let payload = &payload[..end];
    let len = (payload.len() + 2) as u32;
    let mut f = Vec::with_capacity(6 + payload.len());
    f.push(SYNC);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(control);
    f.push(command as u8);
    f.extend_from_slice(payload);
    f
}

/// A toolbar frame received from Wireshark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub control: u8,
    /// Raw command byte: unknown commands are skipped by the caller, as the WSDG asks.
    pub command: u8,
    pub payload: Vec<u8>,
}

/// A message received on `--extcap-control-in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Toolbar(Frame),
    /// Stop the capture as SIGTERM does.
    Quit,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("control pipe closed")]
    Closed,
    #[error("control frame length {0} is out of range")]
    BadLength(u32),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn closed(e: io::Error) -> ReadError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ReadError::Closed
    } else {
        ReadError::Io(e)
    }
}

/// Reads one message. Frames with another indicator are consumed and skipped, like
/// Wireshark does; a length Wireshark could never send ends the stream rather than being
/// trusted (its extcap messages stop at 65 537 bytes).
pub fn read_message<R: Read>(r: &mut R) -> Result<Incoming, ReadError> {
    loop {
        let mut h = [0u8; 4];
        r.read_exact(&mut h).map_err(closed)?;
        let len = u32::from_be_bytes([0, h[1], h[2], h[3]]);
        if len > MAX_PAYLOAD as u32 + 2 || (h[0] == SYNC && len < 2) {
            return Err(ReadError::BadLength(len));
        }
        let mut body = vec![0u8; len as usize];
        r.read_exact(&mut body).map_err(closed)?;
        match h[0] {
            SYNC => {
                return Ok(Incoming::Toolbar(Frame {
                    control: body[0],
                    command: body[1],
                    payload: body.split_off(2),
                }))
            }
            QUIT => return Ok(Incoming::Quit),
            _ => continue,
        }
    }
}

/// Reads the next toolbar frame, skipping any other message.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Frame, ReadError> {
    loop {
        if let Incoming::Toolbar(f) = read_message(r)? {
            return Ok(f);
        }
    }
}

/// Sends frames to Wireshark from a thread of its own, through a bounded queue: a GUI that
/// stops reading must never stall the capture, so excess messages are dropped.
#[derive(Clone)]
pub struct ControlSender {
    tx: SyncSender<Message>,
}

enum Message {
    Frame(Vec<u8>),
    /// Answered once every frame queued before it has been written.
    Flush(std::sync::mpsc::Sender<()>),
}

impl ControlSender {
    pub fn spawn<W: Write + Send + 'static>(mut out: W) -> Self {
        let (tx, rx) = sync_channel::<Message>(256);
        std::thread::Builder::new()
            .name("control-out".into())
            .spawn(move || {
                for m in rx {
                    match m {
                        Message::Frame(frame) => {
                            if out.write_all(&frame).and_then(|_| out.flush()).is_err() {
                                break;
                            }
                        }
                        Message::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .ok();
        ControlSender { tx }
    }

    /// Queues a frame; false when the queue is full or the writer is gone.
    pub fn send(&self, control: u8, command: Command, payload: &[u8]) -> bool {
        match self
            .tx
            .try_send(Message::Frame(encode(control, command, payload)))
        {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Waits, at most `limit`, until everything queued so far is written: the last status and
    /// log lines must reach Wireshark before the process exits.
    pub fn flush(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut m = Message::Flush(done_tx);
        loop {
            match self.tx.try_send(m) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    m = back;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_wireshark() {
        // E10 in the extcap reference: statusbar text, control 0.
        let f = encode(0, Command::Statusbar, b"statusbar text from probe");
        assert_eq!(&f[..6], &[0x54, 0x00, 0x00, 0x1b, 0x00, 0x06]);
        let f = encode(0, Command::Add, b"second line\n");
        assert_eq!(&f[..6], &[0x54, 0x00, 0x00, 0x0e, 0x00, 0x02]);
    }

    #[test]
    fn long_payload_is_cut_on_a_char_boundary() {
        let s = "é".repeat(40_000);
        let f = encode(1, Command::Add, s.as_bytes());
        assert!(f.len() - 6 <= MAX_PAYLOAD);
        assert!(std::str::from_utf8(&f[6..]).is_ok());
    }

    /// Found by the GUI test: frames queued just before exit were sometimes lost.
    #[test]
    fn flush_waits_for_queued_frames() {
        struct Slow(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Slow {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(2));
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = ControlSender::spawn(Slow(out.clone()));
        for i in 0..50u8 {
            assert!(s.send(0, Command::Add, &[i]));
        }
        assert!(s.flush(std::time::Duration::from_secs(10)));
        assert_eq!(out.lock().unwrap().len(), 50 * 7);
    }

    #[test]
    fn reads_frames_and_skips_bad_sync() {
        let mut bytes = vec![b'X', 0, 0, 3, 0, 1, 9];
        bytes.extend_from_slice(&[0x54, 0x00, 0x00, 0x03, 0x02, 0x01, 0x07]);
        let mut r = &bytes[..];
        let Incoming::Toolbar(f) = read_message(&mut r).unwrap() else {
            panic!("a toolbar frame")
        };
        assert_eq!((f.control, f.command, f.payload), (2, 1, vec![7]));
        assert!(matches!(read_message(&mut r), Err(ReadError::Closed)));
        let mut huge: &[u8] = &[b'T', 0xff, 0xff, 0xff, 0, 1];
        assert!(matches!(
            read_message(&mut huge),
            Err(ReadError::BadLength(_))
        ));
        let mut short: &[u8] = &[b'T', 0, 0, 1, 0];
        assert!(matches!(
            read_message(&mut short),
            Err(ReadError::BadLength(1))
        ));
    }

    /// Wireshark's `extcap_request_stop` pushes exactly `{ SP_QUIT, 0, 0, 0 }`; the WSDG
    /// allows an optional payload to be ignored. Neither may swallow the next frame.
    #[test]
    fn reads_the_quit_message_with_or_without_payload() {
        let mut bytes = vec![b'Q', 0, 0, 0];
        bytes.extend_from_slice(&[b'Q', 0, 0, 5, b'Q', b'U', b'I', b'T', 0]);
        bytes.extend_from_slice(&[b'T', 0, 0, 2, 0, 0]);
        let mut r = &bytes[..];
        assert_eq!(read_message(&mut r).unwrap(), Incoming::Quit);
        assert_eq!(read_message(&mut r).unwrap(), Incoming::Quit);
        assert!(matches!(
            read_message(&mut r).unwrap(),
            Incoming::Toolbar(Frame {
                control: 0,
                command: 0,
                ..
            })
        ));
        assert!(matches!(read_message(&mut r), Err(ReadError::Closed)));
    }
}
