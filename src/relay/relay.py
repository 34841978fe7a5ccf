#!/usr/bin/env python3
# awsvpc relay -- runs on the mirror-target collector, started over SSH as
# "python3 - ARGS" (source on stdin) or "python3 relay.py ARGS".
# Python 3.6+ on Linux, standard library only, no root needed.
#
# Binds:  one UDP socket on --addr:--port (default 0.0.0.0:4789), receive only.
# Reads:  its own socket's drop counter from /proc/net/udp (or udp6).
# Writes: a binary stream to stdout; at most one line to stderr.
#         Creates no files, runs no programs, never sends anything to the network.
# Stream: b"AWSVPCR\x01", then records: 36-byte header struct "!BBHIQHH16s"
#         (kind 1=datagram 2=heartbeat 3=error, family 4/6 (0 if not a datagram),
#         payload length, kernel drop counter (SO_RXQ_OVFL), receive time in ns
#         since the epoch, source port, 0, source address) + payload bytes;
#         kind 4 = a batch from recvmmsg in the kernel's layout (see mmsg_rx).
#         A heartbeat is written after --heartbeat seconds without datagrams.
#         After a batch that was not full the relay waits --gather seconds
#         (default 1 ms) so the next one gathers more: fewer, larger writes
#         cost the SSH channel less per byte; times are the kernel's anyway.
#         With --zlib LEVEL (for Session Manager's ~1 MB/s): b"AWSVPCZ\x01", then
#         the same records as one zlib stream, sync-flushed after every write.
# On-host: --on-host MAC etc. need onhost.py's functions before this file
#         (awsvpc sends both as one source); see there.
# Exit:   0 = stdout closed, SIGTERM/SIGINT/SIGHUP, --idle-exit, or stdout
#             blocked for --stall-exit seconds (the reader is gone but the
#             SSH connection has not noticed yet; this frees the port);
#         3 = an error record (one UTF-8 sentence) was written.
import argparse
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

MAGIC = b"AWSVPCR\x01"
MAGIC_Z = b"AWSVPCZ\x01"
# Same bytes as "!BBHIQHH16s"; the port is kept as the 2 network-order bytes
# of the sockaddr, and "16s" zero-pads a 4-byte IPv4 address.
REC = struct.Struct("!BBHIQ2sH16s")
SO_RCVBUFFORCE, SO_TIMESTAMPNS, SO_RXQ_OVFL = 33, 35, 40  # Linux values
SOL = socket.SOL_SOCKET
MAPPED = b"\0" * 10 + b"\xff\xff"  # ::ffff:a.b.c.d
NS = 1000000000
BATCH = 64
started = False  # stream header written?
drops = 0  # latest cumulative SO_RXQ_OVFL counter
Z = None  # zlib compressor of the records, with --zlib


def stalled(*_):
    os._exit(0)


def watch(on):
    # A write blocked for --stall-exit seconds ends the relay (see Exit).
    if STALL[0] > 0:
        signal.setitimer(signal.ITIMER_REAL, STALL[0] if on else 0)


STALL = [10.0]


def put(data):
    if Z is not None:
        data = Z.compress(data) + Z.flush(2)  # zlib.Z_SYNC_FLUSH
    watch(True)
    v = memoryview(data)
    while v:
        try:
            v = v[os.write(1, v):]
        except BlockingIOError:  # stdout is non-blocking: wait until writable
            select.select([], [1], [])
    watch(False)


def now_ns():
    return int(time.time() * NS)


def fail(msg):
    # Header (if not yet written), error record, one line on stderr, exit 3.
    global started
    m = msg.encode("utf-8")[:65535]
    rec = REC.pack(3, 0, len(m), drops, now_ns(), b"\0\0", 0, b"") + m
    put(rec if started else MAGIC + rec)
    started = True
    sys.stderr.write("awsvpc relay: %s\n" % msg)
    sys.exit(3)


def tune(s, a):
    # The receive buffer (forced past rmem_max where allowed), kernel receive
    # times, and SO_RCVTIMEO so that recv gives EAGAIN after --heartbeat idle.
    for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            s.setsockopt(SOL, opt, a.rcvbuf)
            break
        except OSError:
            pass
    s.setsockopt(SOL, SO_TIMESTAMPNS, 1)
    t = max(a.heartbeat, 0.001)
    s.setsockopt(SOL, socket.SO_RCVTIMEO,
                 struct.pack("@ll", int(t), int(t % 1 * 1e6)))


def open_socket(a):
    fam = socket.AF_INET6 if ":" in a.addr else socket.AF_INET
    where = "UDP port %d on %s" % (a.port, a.addr)
    if not 0 <= a.port <= 65535:
        fail("%d is not a UDP port number (0-65535)." % a.port)
    try:
        # Numeric addresses only: a host name would need a DNS query.
        socket.inet_pton(fam, a.addr.split("%")[0])
    except (OSError, ValueError):
        fail("%s is not a numeric IP address; use 0.0.0.0, :: or an address"
             " of the collector." % a.addr)
    try:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        tune(s, a)
        s.setsockopt(SOL, SO_RXQ_OVFL, 1)
        # A relay of a lost connection may hold the port until its write
        # watchdog fires: wait for it rather than fail a reconnect.
        until = time.time() + a.bind_wait
        while True:
            try:
                s.bind((a.addr, a.port))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE or time.time() >= until:
                    raise
                time.sleep(0.25)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            fail("%s is already in use on the collector (another relay or a"
                 " VXLAN device); stop it or use another --listen-port." % where)
        if e.errno == errno.EACCES:
            fail("%s needs root on the collector (ports below 1024 are"
                 " privileged); use a port of 1024 or above." % where)
        if e.errno == errno.EADDRNOTAVAIL:
            fail("%s is not an address of the collector; use 0.0.0.0 or one of"
                 " its own addresses." % a.addr)
        fail("cannot open %s: %s." % (where, e.strerror or e))
    return s


def put_all(parts):
    # Write a list of buffers with one writev(2) when possible.
    if Z is not None:
        return put(b"".join(parts))
    watch(True)
    try:
        n = os.writev(1, parts)
    except BlockingIOError:
        n = 0
    if n < sum(map(len, parts)):
        put(b"".join(parts)[n:])
    watch(False)


def plain_rx(s, snap):
    # Fallback: one recvmsg() per datagram, up to BATCH per call.
    ts_fmt = struct.Struct("@ll")  # struct timespec

    def rx():
        global drops
        parts = []
        flags = 0
        while len(parts) < BATCH:
            try:
                d, anc, _, src = s.recvmsg(snap, 256, flags)
            except (BlockingIOError, InterruptedError, socket.timeout):
                break
            flags = socket.MSG_DONTWAIT
            ts = 0
            for lvl, typ, c in anc:
                if lvl == SOL and typ == SO_TIMESTAMPNS:
                    sec, nsec = ts_fmt.unpack(c[:ts_fmt.size])
                    ts = sec * NS + nsec
                elif lvl == SOL and typ == SO_RXQ_OVFL:
                    drops = struct.unpack("=I", c[:4])[0]
            ip = socket.inet_pton(s.family, src[0].split("%")[0])
            if ip[:12] == MAPPED:
                ip = ip[12:]
            parts.append(REC.pack(1, 4 if len(ip) == 4 else 6, len(d), drops,
                                  ts or now_ns(), struct.pack("!H", src[1]),
                                  0, ip) + d)
        return len(parts), parts
    return rx


def mmsg_rx(s, snap):
    # Fast path: recvmmsg(2) through ctypes, and one batch record (kind 4) per
    # call made of the bytes the kernel wrote, so no Python runs per datagram:
    # the lengths, then the sockaddrs, the control areas and the datagrams, each
    # a slice of a preallocated buffer (awsvpc parses them; see its stream.rs).
    # Layouts are those of 64-bit little-endian Linux (x86_64, aarch64):
    #   struct mmsghdr { struct msghdr (56 bytes); unsigned msg_len; } = 64
    #   struct iovec { void *base; size_t len; } = 16
    import ctypes
    if (ctypes.sizeof(ctypes.c_void_p) != 8 or sys.byteorder != "little"
            or not sys.platform.startswith("linux")):
        raise OSError("not 64-bit little-endian Linux")
    libc = ctypes.CDLL(None, use_errno=True)
    recvmmsg = libc.recvmmsg
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint,
                         ctypes.c_int, ctypes.c_void_p]
    recvmmsg.restype = ctypes.c_int
    MSG_WAITFORONE = 0x10000
    v6 = s.family == socket.AF_INET6
    nl, cl = 28 if v6 else 16, 56  # sockaddr_in6 or _in; SCM_TIMESTAMPNS+RXQ_OVFL
    buf = ctypes.create_string_buffer
    hdrs, names, ctl = buf(64 * BATCH), buf(nl * BATCH), buf(cl * BATCH)
    iov, data = buf(16 * BATCH), buf(snap * BATCH)
    N, C, I, D = [ctypes.addressof(x) for x in (names, ctl, iov, data)]
    for i in range(BATCH):
        struct.pack_into("=QQ", iov, 16 * i, D + snap * i, snap)
        struct.pack_into("=QI4xQQQQi4xI4x", hdrs, 64 * i, N + nl * i, nl,
                         I + 16 * i, 1, C + cl * i, cl, 0, 0)
    template = hdrs.raw  # the kernel overwrites namelen/controllen/msg_len
    lens = memoryview(hdrs).cast("B").cast("I")[14::16]  # each msg_len
    nv, cv, dv = memoryview(names), memoryview(ctl), memoryview(data)
    slots = [dv[snap * i:snap * (i + 1)] for i in range(BATCH)]
    cut = memoryview.__getitem__
    fam, fd = 6 if v6 else 4, s.fileno()

    def rx():
        while True:
            ctypes.memmove(hdrs, template, 64 * BATCH)
            ctypes.memset(ctl, 0, cl * BATCH)  # the parser stops at a zero cmsg
            k = recvmmsg(fd, hdrs, BATCH, MSG_WAITFORONE, None)
            if k > 0:
                break
            e = ctypes.get_errno() if k < 0 else errno.EAGAIN
            if e == errno.EAGAIN:  # --heartbeat seconds without a datagram
                return 0, []
            if e != errno.EINTR:
                raise OSError(e, os.strerror(e))
        n = lens[:k]
        parts = [REC.pack(4, fam, k, 0, now_ns(), b"\0\0", 0, b""),
                 n.tobytes(), nv[:nl * k], cv[:cl * k]]
        parts.extend(map(cut, slots, map(slice, n)))
        return k, parts
    rx.buffers = (hdrs, names, ctl, iov, data)  # what the kernel writes into
    return rx


def proc_drops(s):
    # The socket's drop counter from /proc/net/udp{,6} (same value as
    # SO_RXQ_OVFL, which only arrives with a datagram), or None.
    ino = str(os.fstat(s.fileno()).st_ino)
    try:
        with open("/proc/net/udp6" if s.family == socket.AF_INET6
                  else "/proc/net/udp") as f:
            for line in f:
                w = line.split()
                if len(w) > 12 and w[9] == ino:
                    return int(w[12])
    except (OSError, ValueError):
        pass
    return None


def main():
    global started, drops, Z
    p = argparse.ArgumentParser(add_help=False)  # stdout is for the stream only
    p.error = lambda m: fail("relay arguments: %s." % m)
    p.add_argument("--port", type=int, default=4789)
    p.add_argument("--addr", default="0.0.0.0")
    p.add_argument("--rcvbuf", type=int, default=8388608)
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--gather", type=float, default=0.001)
    p.add_argument("--snaplen", type=int, default=0)
    p.add_argument("--idle-exit", type=float, default=0.0)
    p.add_argument("--stall-exit", type=float, default=10.0)
    p.add_argument("--bind-wait", type=float, default=0.0)
    p.add_argument("--zlib", type=int, default=0, choices=range(10))
    p.add_argument("--no-mmsg", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--on-host", default="")
    p.add_argument("--vni", type=int, default=0)
    p.add_argument("--src-ip", default="0.0.0.0")
    p.add_argument("--bpf", default="")
    p.add_argument("--exclude", action="append", default=[])
    p.add_argument("--exclude-agent", action="store_true")
    p.add_argument("--drop-to", default="")
    a = p.parse_args()
    snap = a.snaplen if 0 < a.snaplen < 65535 else 65535
    STALL[0] = a.stall_exit
    if a.on_host:
        if "open_packet" not in globals():
            fail("this relay was sent without its on-host part (onhost.py).")
        if not 0 <= a.vni < 1 << 24:
            fail("--vni must be from 0 to 16777215.")
        s, _ = open_packet(a)
        # --snaplen counts the record's payload, the VXLAN header included.
        snap = min(snap, 65535) - 8
    else:
        s = open_socket(a)
    try:  # a 1 MiB pipe to sshd (Linux's default 64 KiB is 40 full frames)
        import fcntl
        fcntl.fcntl(1, 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass
    if a.zlib:
        import zlib  # only here: the SSH path runs without it
        put(MAGIC_Z)
        Z = zlib.compressobj(a.zlib)
    else:
        put(MAGIC)
    started = True
    rx = packet_rx(s, snap, a) if a.on_host else None
    if rx is None and not a.no_mmsg:
        try:
            rx = mmsg_rx(s, snap)
        except Exception as e:
            sys.stderr.write("awsvpc relay: recvmmsg unavailable (%s), using"
                             " recvmsg\n" % e)
    rx = rx or plain_rx(s, snap)
    last = time.time()
    while True:
        # (datagrams, buffers to write): up to BATCH, or none after --heartbeat idle
        n, parts = rx()
        if parts:
            put_all(parts)
            last = time.time()
            if n < BATCH and a.gather > 0:
                time.sleep(a.gather)
            continue
        t = time.time()
        if a.idle_exit > 0 and t - last >= a.idle_exit:
            return 0
        d = None if a.on_host else proc_drops(s)
        if d is not None:
            drops = d
        put(REC.pack(2, 0, 0, drops, int(t * NS), b"\0\0", 0, b""))


def stop(*_):
    sys.exit(0)


if __name__ == "__main__":
    if sys.version_info < (3, 6):
        fail("the relay needs Python 3.6 or newer on the collector, found"
             " %d.%d." % sys.version_info[:2])
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(signal.SIGALRM, stalled)
    try:
        sys.exit(main())
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)
    except Exception as e:
        try:
            fail("relay failed: %s: %s" % (type(e).__name__, e))
        except BrokenPipeError:
            sys.exit(0)
