//! The local collector: an unprivileged UDP socket that receives mirror datagrams in
//! batches (`recvmmsg`), with the kernel's receive timestamp (`SO_TIMESTAMPNS`) and the
//! socket's drop counter (`SO_RXQ_OVFL`) for each batch.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest datagram kept whole. AWS targets have a 9001-byte MTU; longer datagrams are
/// kept truncated (their inner IP header still gives the original length).
pub const SLOT: usize = 9216;
/// Datagrams per `recvmmsg` call.
pub const BATCH: usize = 64;
/// Receive buffer asked for; the kernel caps it at `net.core.rmem_max` unless awsvpc may
/// force it (CAP_NET_ADMIN).
const WANT_RCVBUF: libc::c_int = 64 << 20;
/// How often a blocked receive returns so that a stop request is noticed.
pub const POLL: Duration = Duration::from_millis(100);
const CMSG_SPACE: usize = 128;

/// Preallocated storage for one batch of datagrams.
pub struct Batch {
    data: Vec<u8>,
    lens: [usize; BATCH],
    truncated: [bool; BATCH],
    srcs: [IpAddr; BATCH],
    stamps: [Duration; BATCH],
    count: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            data: vec![0u8; SLOT * BATCH],
            lens: [0; BATCH],
            truncated: [false; BATCH],
            srcs: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); BATCH],
            stamps: [Duration::ZERO; BATCH],
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i`: payload, sender address, kernel receive time since the Unix epoch, and
    /// whether it was longer than a slot.
    #[inline]
    pub fn get(&self, i: usize) -> (&[u8], IpAddr, Duration, bool) {
        let off = i * SLOT;
        (
            &self.data[off..off + self.lens[i]],
            self.srcs[i],
            self.stamps[i],
            self.truncated[i],
        )
    }

    pub fn clear(&mut self) {
        self.count = 0;
    }

    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Appends one datagram (kept truncated to a slot); false when the batch is full.
    pub fn push(&mut self, d: &[u8], src: IpAddr, ts: Duration) -> bool {
        if self.count == BATCH {
            return false;
        }
        let n = d.len().min(SLOT);
        let off = self.count * SLOT;
        self.data[off..off + n].copy_from_slice(&d[..n]);
        self.lens[self.count] = n;
        self.truncated[self.count] = d.len() > SLOT;
        self.srcs[self.count] = src;
        self.stamps[self.count] = ts;
        self.count += 1;
        true
    }

    /// Fills the batch from byte slices (benchmarks and tests, without a socket).
    pub fn fill_from<'a>(&mut self, items: impl IntoIterator<Item = (&'a [u8], IpAddr, Duration)>) {
        self.count = 0;
        for (d, src, ts) in items.into_iter().take(BATCH) {
            self.push(d, src, ts);
        }
    }
}

pub struct UdpCollector {
    sock: UdpSocket,
    rcvbuf: usize,
    drops: u32,
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
        let fd = sock.as_raw_fd();
        // Best effort: a bigger buffer absorbs bursts; the drop counter reports the rest.
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, WANT_RCVBUF).is_err() {
            let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, WANT_RCVBUF);
        }
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
            .map_err(|e| format!("Cannot enable kernel timestamps on the UDP socket: {e}."))?;
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
            .map_err(|e| format!("Cannot enable the socket drop counter: {e}."))?;
        sock.set_read_timeout(Some(POLL))
            .map_err(|e| format!("Cannot set the socket timeout: {e}."))?;
        let rcvbuf = getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0) as usize;
        let local = sock.local_addr().unwrap_or(sa);
        Ok(UdpCollector {
            sock,
            rcvbuf,
            drops: 0,
            local,
        })
    }

    /// Bytes of receive buffer the kernel granted.
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams the kernel dropped because the socket buffer was full, since bind.
    pub fn drops(&self) -> u64 {
        u64::from(self.drops)
    }

    /// Receives up to a batch; waits at most [`POLL`] for the first datagram. Returns the
    /// number received (0 on timeout or interruption).
    pub fn recv_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        self.recv(batch)
    }

    fn recv(&mut self, batch: &mut Batch) -> io::Result<usize> {
        batch.count = 0;
        // SAFETY: zeroed C structs are valid initial values; every pointer set below refers
        // to storage (`batch.data`, `names`, `cmsgs`, `iovs`) that outlives the call.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { mem::zeroed() };
        let mut cmsgs = [[0u8; CMSG_SPACE]; BATCH];
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let base = batch.data.as_mut_ptr();
        for i in 0..BATCH {
            iovs[i] = libc::iovec {
                iov_base: unsafe { base.add(i * SLOT) } as *mut libc::c_void,
                iov_len: SLOT,
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = cmsgs[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = CMSG_SPACE as _;
        }
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            let h = &hdrs[i].msg_hdr;
            batch.lens[i] = (hdrs[i].msg_len as usize).min(SLOT);
            batch.truncated[i] = h.msg_flags & libc::MSG_TRUNC != 0;
            batch.srcs[i] = sockaddr_ip(&names[i]);
            let (ts, drops) = unsafe { read_cmsgs(h) };
            batch.stamps[i] = ts.unwrap_or_else(now);
            if let Some(d) = drops {
                // Cumulative per socket; take the newest.
                self.drops = self.drops.max(d);
            }
        }
        batch.count = n;
        Ok(n)
    }
}

impl super::DatagramSource for UdpCollector {
    fn recv_batch(&mut self, batch: &mut Batch, _status: &dyn Fn(&str)) -> io::Result<usize> {
        self.recv(batch)
    }

    fn drops(&self) -> u64 {
        u64::from(self.drops)
    }

    fn describe(&self) -> String {
        format!(
            "Listening on UDP {} (receive buffer {})",
            self.local,
            crate::pipeline::human_bytes(self.rcvbuf as u64)
        )
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// # Safety
/// `h` must be a header filled by a successful `recvmsg`/`recvmmsg`.
unsafe fn read_cmsgs(h: &libc::msghdr) -> (Option<Duration>, Option<u32>) {
    let mut ts = None;
    let mut drops = None;
    let mut c = libc::CMSG_FIRSTHDR(h);
    while !c.is_null() {
        let hdr = &*c;
        let data = libc::CMSG_DATA(c);
        if hdr.cmsg_level == libc::SOL_SOCKET {
            if hdr.cmsg_type == libc::SO_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(data as *const libc::timespec);
                ts = Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32));
            } else if hdr.cmsg_type == libc::SO_RXQ_OVFL {
                drops = Some(std::ptr::read_unaligned(data as *const u32));
            }
        }
        c = libc::CMSG_NXTHDR(h, c);
    }
    (ts, drops)
}

fn sockaddr_ip(s: &libc::sockaddr_storage) -> IpAddr {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            // A dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d.
            Ipv6Addr::from(a.sin6_addr.s6_addr).to_canonical()
        }
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

fn setsockopt(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a valid pointer to a c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt(fd: libc::c_int, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a valid pointer to a c_int and its size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r == 0 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
