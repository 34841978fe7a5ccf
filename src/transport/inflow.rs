//! A connection's bytes handed from the thread that receives them to the capture's receive
//! thread, which waits for them with a deadline: std channels only, so that no transport
//! polls a descriptor and each builds on any OS. A child's pipe ([`Incoming`]) is read
//! straight where [`crate::sys::TimedPipe`] can wait on it, and through a thread elsewhere.
//!
//! The bound is a number of pieces in flight: a producer that finds them all taken waits
//! (a pipe reader stops reading, so the pipe fills and its writer waits; a channel task
//! stops taking channel data), and the pressure reaches the collector as it did when the
//! receive thread read the pipe itself.

use crate::relay::stream::{Decoder, MAX_RECORD};
use crate::sys::TimedPipe;
use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::Duration;

/// Room a reader thread leaves before what it reads into a piece: the most a decoder can
/// hold unfinished when it asks for more (one record), so that it can decode on from the
/// piece itself ([`Decoder::adopt`]) instead of copying the piece into its own buffer.
pub(crate) const ROOM: usize = MAX_RECORD;

/// What a producer hands over.
pub(crate) enum Piece {
    /// `buf[at..at + len]` arrived; what is before `at` is room.
    Data { buf: Vec<u8>, at: usize, len: usize },
    /// The connection ended: `None` at its end of file, or how reading it failed.
    End(Option<String>),
}

/// How the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    Eof,
    Failed(String),
}

/// The receiving end: copies pieces into the caller's buffer.
pub(crate) struct Inflow {
    rx: Receiver<Piece>,
    /// The piece being copied out: buffer, next byte, end.
    held: Option<(Vec<u8>, usize, usize)>,
    ended: Option<Ended>,
    /// Called with each emptied buffer (recycles it, or tells the producer there is room).
    give_back: Box<dyn FnMut(Vec<u8>) + Send>,
}

impl Inflow {
    /// A stream of at most `pieces` queued pieces, fed through the returned sender by a
    /// producer of the caller's (`Piece::End` or dropping the sender ends it).
    pub(crate) fn channel(
        pieces: usize,
        give_back: impl FnMut(Vec<u8>) + Send + 'static,
    ) -> (SyncSender<Piece>, Inflow) {
        let (tx, rx) = mpsc::sync_channel(pieces);
        let inflow = Inflow {
            rx,
            held: None,
            ended: None,
            give_back: Box::new(give_back),
        };
        (tx, inflow)
    }

    /// Reads `source` on a thread of its own into `pieces` buffers of `size` bytes taken
    /// in turn (each with [`ROOM`] before them): at most `pieces × size` bytes wait here,
    /// beside what `source` buffers itself. A buffer a decoder adopts is replaced in the
    /// turn by the one it gave back. After a read that filled less than a quarter of its
    /// piece, the thread waits `gather` before reading again, so that a busy stream comes in fewer, fuller pieces
    /// (a wake of two threads costs more than the bytes of a small write it carries); the
    /// first bytes after a pause are not delayed. The thread ends at `source`'s end of
    /// file or error, or once the inflow is dropped and it wants a buffer.
    pub(crate) fn read_on_thread<R: Read + Send + 'static>(
        name: &str,
        mut source: R,
        pieces: usize,
        size: usize,
        gather: Duration,
    ) -> io::Result<Inflow> {
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..pieces {
            let _ = free_tx.send(vec![0; ROOM + size]);
        }
        let (tx, inflow) = Inflow::channel(pieces, move |buf| {
            let _ = free_tx.send(buf);
        });
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(mut buf) = free_rx.recv() {
                    // A buffer given back by a decoder may be larger: read at most `size`.
                    let at = ROOM.min(buf.len());
                    let until = buf.len().min(ROOM + size);
                    let piece = loop {
                        match source.read(&mut buf[at..until]) {
                            Ok(0) => break Piece::End(None),
                            Ok(len) => break Piece::Data { buf, at, len },
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Piece::End(Some(e.to_string())),
                        }
                    };
                    let small = match &piece {
                        Piece::Data { len, .. } => *len < size / 4,
                        Piece::End(_) => {
                            let _ = tx.send(piece);
                            return;
                        }
                    };
                    if tx.send(piece).is_err() {
                        return;
                    }
                    if small && !gather.is_zero() {
                        std::thread::sleep(gather);
                    }
                }
            })?;
        Ok(inflow)
    }

    /// Copies what arrived into `into`, waiting at most `wait` for the first piece, then
    /// taking whatever else is already queued. `Ok(0)`: nothing within `wait`. The end
    /// comes after every byte before it, and again on every later call.
    pub(crate) fn read(&mut self, into: &mut [u8], wait: Duration) -> Result<usize, Ended> {
        let mut n = 0;
        while n < into.len() {
            if self.held.is_none() {
                if let Some(e) = &self.ended {
                    return if n > 0 { Ok(n) } else { Err(e.clone()) };
                }
                let piece = if n == 0 {
                    match self.rx.recv_timeout(wait) {
                        Ok(p) => p,
                        Err(RecvTimeoutError::Timeout) => return Ok(0),
                        Err(RecvTimeoutError::Disconnected) => Piece::End(None),
                    }
                } else {
                    match self.rx.try_recv() {
                        Ok(p) => p,
                        Err(TryRecvError::Empty) => return Ok(n),
                        Err(TryRecvError::Disconnected) => Piece::End(None),
                    }
                };
                match piece {
                    Piece::Data { buf, at, len } => self.held = Some((buf, at, at + len)),
                    Piece::End(why) => {
                        self.ended = Some(why.map_or(Ended::Eof, Ended::Failed));
                        continue;
                    }
                }
            }
            let Some((buf, at, end)) = self.held.as_mut() else {
                continue;
            };
            let k = (*end - *at).min(into.len() - n);
            into[n..n + k].copy_from_slice(&buf[*at..*at + k]);
            *at += k;
            n += k;
            if *at == *end {
                if let Some((buf, _, _)) = self.held.take() {
                    (self.give_back)(buf);
                }
            }
        }
        Ok(n)
    }

    /// Moves what arrived into `decoder`, waiting at most `wait` for it. A piece with room
    /// for the decoder's unfinished bytes becomes the decoder's buffer (no copy of the
    /// piece); any other is copied as [`Inflow::read`] does. `Ok(0)`: nothing within `wait`.
    pub(crate) fn read_into(
        &mut self,
        decoder: &mut Decoder,
        wait: Duration,
    ) -> Result<usize, Ended> {
        if self.held.is_none() && self.ended.is_none() {
            let piece = match self.rx.recv_timeout(wait) {
                Ok(p) => p,
                Err(RecvTimeoutError::Timeout) => return Ok(0),
                Err(RecvTimeoutError::Disconnected) => Piece::End(None),
            };
            match piece {
                Piece::Data { buf, at, len } => match decoder.adopt(buf, at, len) {
                    Ok(old) => {
                        (self.give_back)(old);
                        return Ok(len);
                    }
                    Err(buf) => self.held = Some((buf, at, at + len)),
                },
                Piece::End(why) => self.ended = Some(why.map_or(Ended::Eof, Ended::Failed)),
            }
        }
        let n = self.read(decoder.space(), wait)?;
        decoder.filled(n);
        Ok(n)
    }
}

/// A child's output (ssh's stdout) as the relay client reads it.
pub(crate) enum Incoming {
    /// Read by the receive thread itself: no hop between threads, no queue of pieces.
    Pipe {
        pipe: TimedPipe,
        /// What a read must reach not to be small (a quarter of the thread's piece).
        full: usize,
        gather: Duration,
        /// The last read was small: let more gather before the next.
        small: bool,
        ended: Option<Ended>,
    },
    /// Where the OS cannot wait on a pipe: read on a thread of its own.
    Thread(Inflow),
}

impl Incoming {
    /// Reads `stdout` in reads of up to `size` bytes (in `pieces` pieces on a thread, where
    /// it must be one), waiting `gather` after a read that filled less than a quarter of
    /// `size`, as [`Inflow::read_on_thread`] does.
    pub(crate) fn child(
        name: &str,
        stdout: std::process::ChildStdout,
        pieces: usize,
        size: usize,
        gather: Duration,
    ) -> io::Result<Incoming> {
        match TimedPipe::new(stdout) {
            Ok(pipe) => Ok(Incoming::Pipe {
                pipe,
                full: size / 4,
                gather,
                small: false,
                ended: None,
            }),
            Err(stdout) => {
                Inflow::read_on_thread(name, stdout, pieces, size, gather).map(Incoming::Thread)
            }
        }
    }

    /// Moves what arrived into `decoder`, waiting at most `wait` for it. `Ok(0)`: nothing
    /// within `wait`. The end comes after every byte before it, and again on every later call.
    pub(crate) fn read_into(
        &mut self,
        decoder: &mut Decoder,
        wait: Duration,
    ) -> Result<usize, Ended> {
        let (pipe, full, gather, small, ended) = match self {
            Incoming::Thread(inflow) => return inflow.read_into(decoder, wait),
            Incoming::Pipe {
                pipe,
                full,
                gather,
                small,
                ended,
            } => (pipe, *full, *gather, small, ended),
        };
        if let Some(e) = ended {
            return Err(e.clone());
        }
        if *small && !gather.is_zero() {
            std::thread::sleep(gather);
        }
        let space = decoder.space();
        if space.is_empty() {
            return Ok(0);
        }
        match pipe.read(space, wait) {
            Ok(None) => {
                *small = false;
                Ok(0)
            }
            Ok(Some(0)) => Err(ended.insert(Ended::Eof).clone()),
            Ok(Some(n)) => {
                decoder.filled(n);
                *small = n < full;
                Ok(n)
            }
            Err(e) => Err(ended.insert(Ended::Failed(e.to_string())).clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_then_the_end_every_time() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut inflow = Inflow::read_on_thread(
            "test-inflow",
            io::Cursor::new(data.clone()),
            3,
            4096,
            Duration::ZERO,
        )
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            match inflow.read(&mut buf, Duration::from_secs(10)) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(Ended::Eof) => break,
                Err(Ended::Failed(e)) => panic!("{e}"),
            }
        }
        assert_eq!(got, data);
        assert!(matches!(
            inflow.read(&mut buf, Duration::ZERO),
            Err(Ended::Eof)
        ));
    }

    #[test]
    fn a_decoder_reads_the_pieces_themselves() {
        use crate::relay::stream::{encode, MAGIC};
        let src = Some((std::net::IpAddr::from([10, 0, 0, 1]), 4789));
        let mut bytes = MAGIC.to_vec();
        for i in 0..3000u32 {
            let payload = vec![i as u8; (i as usize * 53) % 1500];
            bytes.extend_from_slice(&encode(1, src, 0, Duration::ZERO, &payload));
        }
        // ssh's pieces: records straddle them, and each is large enough to be adopted.
        let mut inflow = Inflow::read_on_thread(
            "test-inflow",
            io::Cursor::new(bytes),
            3,
            crate::transport::ssh::PIECE,
            Duration::ZERO,
        )
        .unwrap();
        let mut d = Decoder::new();
        let mut n = 0u32;
        loop {
            while let Some(r) = d.next_record().unwrap() {
                assert_eq!(r.payload(), &vec![n as u8; (n as usize * 53) % 1500][..]);
                n += 1;
            }
            match inflow.read_into(&mut d, Duration::from_secs(10)) {
                Ok(_) => {}
                Err(Ended::Eof) => break,
                Err(Ended::Failed(e)) => panic!("{e}"),
            }
        }
        assert_eq!(n, 3000);
    }

    #[test]
    fn a_full_queue_holds_the_producer_and_nothing_is_a_timeout() {
        let (tx, mut inflow) = Inflow::channel(2, |_| {});
        let piece = || Piece::Data {
            buf: vec![1; 10],
            at: 0,
            len: 10,
        };
        tx.try_send(piece()).unwrap();
        tx.try_send(piece()).unwrap();
        assert!(matches!(
            tx.try_send(piece()),
            Err(mpsc::TrySendError::Full(_))
        ));
        let mut buf = [0u8; 64];
        assert_eq!(inflow.read(&mut buf, Duration::ZERO), Ok(20));
        assert_eq!(inflow.read(&mut buf, Duration::ZERO), Ok(0));
        tx.send(Piece::End(Some("reset".into()))).unwrap();
        assert!(matches!(
            inflow.read(&mut buf, Duration::ZERO),
            Err(Ended::Failed(e)) if e == "reset"
        ));
    }
}
