//! The local collector: an unprivileged UDP socket that receives mirror datagrams in
//! batches. How a batch is received differs by OS (`crate::sys::UdpReceiver`): on Linux
//! `recvmmsg` with the kernel's receive timestamp (`SO_TIMESTAMPNS`) and the socket's drop
//! counter (`SO_RXQ_OVFL`); elsewhere one datagram at a time, stamped on receipt.

pub use crate::batch::{Batch, BATCH, SLOT};
use crate::sys::{self, UdpReceiver};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Receive buffer asked for; Linux caps it at `net.core.rmem_max` unless awsvpc may force
/// it (CAP_NET_ADMIN).
const WANT_RCVBUF: usize = 64 << 20;
/// How often a blocked receive returns so that a stop request is noticed.
pub const POLL: Duration = Duration::from_millis(100);

pub struct UdpCollector {
    rx: UdpReceiver,
    rcvbuf: usize,
    local: SocketAddr,
}

impl UdpCollector {
    /// Binds `addr:port`. Errors are sentences a user can act on.
    pub fn bind(addr: IpAddr, port: u16) -> Result<Self, String> {
        let sa = SocketAddr::new(addr, port);
        let sock = UdpSocket::bind(sa).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => format!(
                "UDP port {port} on {addr} is already in use (another capture, a VXLAN interface or a collector is bound to it); stop it or choose another --listen-port."
            ),
            io::ErrorKind::PermissionDenied => format!(
                "Binding UDP port {port} needs privileges; choose a port above 1023 with --listen-port."
            ),
            io::ErrorKind::AddrNotAvailable => format!(
                "Address {addr} is not on this machine; set --listen-addr to one of its addresses or to 0.0.0.0."
            ),
            _ => format!("Cannot listen on UDP {sa}: {e}."),
        })?;
        sock.set_read_timeout(Some(POLL))
            .map_err(|e| format!("Cannot set the socket timeout: {e}."))?;
        let local = sock.local_addr().unwrap_or(sa);
        let (rx, rcvbuf) = UdpReceiver::new(sock, WANT_RCVBUF)?;
        Ok(UdpCollector { rx, rcvbuf, local })
    }

    /// Bytes of receive buffer the kernel granted.
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams the kernel dropped because the socket buffer was full, since bind (0
    /// where the OS does not say).
    pub fn drops(&self) -> u64 {
        self.rx.drops()
    }

    /// Receives up to a batch; waits at most [`POLL`] for the first datagram. Returns the
    /// number received (0 on timeout or interruption).
    pub fn recv_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        self.rx.recv(batch)
    }
}

impl crate::source::DatagramSource for UdpCollector {
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        _status: &dyn Fn(&str),
    ) -> Result<usize, crate::source::SourceError> {
        Ok(self.rx.recv(batch)?)
    }

    fn drops(&self) -> u64 {
        self.rx.drops()
    }

    fn describe(&self) -> String {
        let mut d = format!(
            "Listening on UDP {} (receive buffer {}",
            self.local,
            crate::pipeline::human_bytes(self.rcvbuf as u64)
        );
        if !sys::udp::KERNEL_TIMESTAMPS {
            d.push_str("; times taken on receipt, not by the kernel");
        }
        if !sys::udp::DROP_COUNTER {
            d.push_str("; this OS does not count socket drops");
        }
        d.push(')');
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn now() -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    #[test]
    fn receives_batches_with_kernel_timestamps() {
        let mut c = UdpCollector::bind(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).unwrap();
        let port = c.local_addr().port();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = now();
        for i in 0..5u8 {
            tx.send_to(&[i; 100], ("127.0.0.1", port)).unwrap();
        }
        let mut b = Batch::new();
        let mut got = 0;
        while got < 5 {
            let n = c.recv_batch(&mut b).unwrap();
            assert!(n > 0, "datagrams sent to loopback must arrive");
            for i in 0..n {
                let (d, src, ts, trunc) = b.get(i);
                assert_eq!(d, &[(got + i) as u8; 100][..]);
                assert_eq!(src, IpAddr::V4(Ipv4Addr::LOCALHOST));
                assert!(ts >= before && ts <= now() + Duration::from_secs(1));
                assert!(!trunc);
            }
            got += n;
        }
        assert!(c.rcvbuf() > 0);
    }

    #[test]
    fn port_in_use_is_explained() {
        let a = UdpCollector::bind(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).unwrap();
        let e = UdpCollector::bind(IpAddr::V4(Ipv4Addr::LOCALHOST), a.local_addr().port())
            .err()
            .unwrap();
        assert!(
            e.contains("already in use") && e.contains("--listen-port"),
            "{e}"
        );
    }
}
