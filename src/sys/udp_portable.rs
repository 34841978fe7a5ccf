//! The local collector's receive path where Linux's `recvmmsg` and control messages are not
//! available (macOS, Windows): one `recv_from` per datagram, the first waiting up to the
//! socket's read timeout and the rest of the batch taken without waiting. Receive times are
//! taken on receipt, not by the kernel, and the OS reports no drop count; the interface
//! description says both.

use crate::batch::{Batch, BATCH, SLOT};
use std::io;
use std::net::UdpSocket;
use std::time::{SystemTime, UNIX_EPOCH};

pub const KERNEL_TIMESTAMPS: bool = false;
pub const DROP_COUNTER: bool = false;

pub struct UdpReceiver {
    sock: UdpSocket,
    /// One datagram longer than a slot is received whole here, then kept truncated: a
    /// short buffer would make Windows fail the receive (WSAEMSGSIZE) instead.
    spill: Vec<u8>,
}

impl UdpReceiver {
    /// Prepares `sock` for mirror traffic with a receive buffer of up to `want_rcvbuf`
    /// bytes. Returns the receiver and the buffer the OS granted.
    pub fn new(sock: UdpSocket, want_rcvbuf: usize) -> Result<(Self, usize), String> {
        let s = socket2::SockRef::from(&sock);
        // Best effort, halving until the OS takes it (macOS caps it at kern.ipc.maxsockbuf).
        let mut want = want_rcvbuf;
        while want >= 1 << 16 && s.set_recv_buffer_size(want).is_err() {
            want /= 2;
        }
        let rcvbuf = s.recv_buffer_size().unwrap_or(0);
        let spill = vec![0u8; 65_536];
        Ok((UdpReceiver { sock, spill }, rcvbuf))
    }

    pub fn drops(&self) -> u64 {
        0
    }

    /// Receives up to a batch; waits at most the socket's read timeout for the first
    /// datagram. Returns the number received (0 on timeout or interruption).
    pub fn recv(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let s = batch.slots_mut();
        let mut n = 0;
        // The first receive waits (the read timeout); the rest take what is queued.
        let mut waiting = true;
        while n < BATCH {
            if n == 1 && waiting {
                self.sock.set_nonblocking(true)?;
                waiting = false;
            }
            match self.sock.recv_from(&mut self.spill) {
                Ok((len, from)) => {
                    let kept = len.min(SLOT).min(self.spill.len());
                    s.data[n * SLOT..n * SLOT + kept].copy_from_slice(&self.spill[..kept]);
                    s.lens[n] = kept;
                    s.truncated[n] = len > SLOT;
                    s.srcs[n] = from.ip().to_canonical();
                    s.stamps[n] = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    n += 1;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    break
                }
                // Windows reports an ICMP port unreachable for an earlier send as a receive
                // error (WSAECONNRESET); a collector never sends, but skip it all the same.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        if !waiting {
            self.sock.set_nonblocking(false)?;
        }
        batch.set_filled(n);
        Ok(n)
    }
}

// Built on Linux too, for this test: the portable path on this machine's loopback.
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn receives_a_batch_truncates_long_datagrams_and_times_out_empty() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let (mut rx, rcvbuf) = UdpReceiver::new(sock, 1 << 20).unwrap();
        assert!(rcvbuf > 0);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..3u8 {
            tx.send_to(&[i; 100], ("127.0.0.1", port)).unwrap();
        }
        tx.send_to(&[7u8; SLOT + 100], ("127.0.0.1", port)).unwrap();
        let mut b = Batch::new();
        let mut got = Vec::new();
        while got.len() < 4 {
            let n = rx.recv(&mut b).unwrap();
            assert!(n > 0, "datagrams sent to loopback must arrive");
            for i in 0..n {
                let (d, src, _, trunc) = b.get(i);
                got.push((d.to_vec(), src, trunc));
            }
        }
        for (i, g) in got.iter().take(3).enumerate() {
            assert_eq!(g.0, vec![i as u8; 100]);
            assert_eq!(g.1, std::net::IpAddr::from([127, 0, 0, 1]));
            assert!(!g.2);
        }
        assert_eq!(got[3].0.len(), SLOT);
        assert!(got[3].2, "longer than a slot: kept truncated and said so");
        // Nothing queued: the next receive waits the timeout and returns none, blocking
        // again afterwards (the batch's non-blocking tail was undone).
        assert_eq!(rx.recv(&mut b).unwrap(), 0);
        assert_eq!(rx.recv(&mut b).unwrap(), 0);
    }
}
