//! Linux's receive path for the local collector: `recvmmsg` fills a whole batch per call,
//! with the kernel's receive timestamp (`SO_TIMESTAMPNS`) and the socket's drop counter
//! (`SO_RXQ_OVFL`) in each datagram's control messages.

use crate::batch::{Batch, BATCH, SLOT};
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CMSG_SPACE: usize = 128;
/// Linux stamps every datagram in the kernel and counts the socket's drops.
pub const KERNEL_TIMESTAMPS: bool = true;
pub const DROP_COUNTER: bool = true;

pub struct UdpReceiver {
    sock: UdpSocket,
    drops: u32,
}

impl UdpReceiver {
    /// Prepares `sock` for mirror traffic: a receive buffer of up to `want_rcvbuf` bytes
    /// (forced past `net.core.rmem_max` when awsvpc may), kernel timestamps, the drop
    /// counter. Returns the receiver and the buffer the kernel granted.
    pub fn new(sock: UdpSocket, want_rcvbuf: usize) -> Result<(Self, usize), String> {
        let fd = sock.as_raw_fd();
        let want = want_rcvbuf.min(i32::MAX as usize) as libc::c_int;
        // Best effort: a bigger buffer absorbs bursts; the drop counter reports the rest.
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_err() {
            let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, want);
        }
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
            .map_err(|e| format!("Cannot enable kernel timestamps on the UDP socket: {e}."))?;
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
            .map_err(|e| format!("Cannot enable the socket drop counter: {e}."))?;
        let rcvbuf = getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0) as usize;
        Ok((UdpReceiver { sock, drops: 0 }, rcvbuf))
    }

    /// Datagrams the kernel dropped because the socket buffer was full, since bind.
    pub fn drops(&self) -> u64 {
        u64::from(self.drops)
    }

    /// Receives up to a batch; waits at most the socket's read timeout for the first
    /// datagram. Returns the number received (0 on timeout or interruption).
    pub fn recv(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let s = batch.slots_mut();
        // SAFETY: zeroed C structs are valid initial values; every pointer set below refers
        // to storage (the batch's slots, `names`, `cmsgs`, `iovs`) that outlives the call.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { mem::zeroed() };
        let mut cmsgs = [[0u8; CMSG_SPACE]; BATCH];
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let base = s.data.as_mut_ptr();
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
            s.lens[i] = (hdrs[i].msg_len as usize).min(SLOT);
            s.truncated[i] = h.msg_flags & libc::MSG_TRUNC != 0;
            s.srcs[i] = sockaddr_ip(&names[i]);
            let (ts, drops) = unsafe { read_cmsgs(h) };
            s.stamps[i] = ts.unwrap_or_else(now);
            if let Some(d) = drops {
                // Cumulative per socket; take the newest.
                self.drops = self.drops.max(d);
            }
        }
        batch.set_filled(n);
        Ok(n)
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
