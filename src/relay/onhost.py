# awsvpc relay, on-host part -- where AWS cannot mirror an ENI, the relay runs on
# the ENI's own instance. awsvpc sends this file followed by relay.py as one
# source ("python3 - ARGS" over SSH, or the Session Manager listener); relay.py's
# main() uses these functions with --on-host. Not part of a launched collector's
# user data (which holds relay.py alone, under EC2's 16 KB).
#
# On-host (--on-host MAC, where AWS cannot mirror): instead of the UDP socket,
#         a packet socket on the device whose address is MAC, opened as root
#         (CAP_NET_RAW), the capture filter awsvpc compiled (--bpf, classic BPF
#         as `tcpdump -ddd` prints it, joined by commas) attached in the kernel,
#         then --drop-to USER at once. Each frame becomes a datagram record
#         from --src-ip: an 8-byte VXLAN header with --vni, then the frame as the
#         kernel saw it (cut to --snaplen), with the kernel's receive time and
#         the socket's drop counter (PACKET_STATISTICS); awsvpc decapsulates it
#         as it does a mirrored one. The TCP connections of the relay's own
#         transport are left out (--exclude "IP PORT IP PORT": SSH's, from
#         $SSH_CONNECTION; --exclude-agent: the SSM agent's, from /proc), so a
#         capture never captures itself.
#
# Runs as root only while opening the packet socket and attaching the filter
# (CAP_NET_RAW), then as --drop-to (nobody); ends as relay.py does: when its
# stdout closes (awsvpc or its transport gone), SIGTERM/SIGHUP, or a write
# blocked for --stall-exit seconds.
# Uses names relay.py defines (fail, tune, REC, SOL, NS, BATCH, MAPPED, drops, ...),
# resolved when called, after both files are loaded.
import errno
import os
import socket
import struct
import time

ETH_P_ALL, SOL_PACKET, PACKET_STATISTICS, SO_ATTACH_FILTER = 3, 263, 6, 26
VXLAN_FLAGS = b"\x08\0\0\0"
AGENTS = ("amazon-ssm-agen", "ssm-agent-worke", "ssm-session-wor",
          "ssm-document-wo")  # /proc/PID/comm keeps 15 characters


def device_of(mac):
    # The network device whose hardware address is MAC (the ENI's).
    mac = mac.lower()
    for dev in sorted(os.listdir("/sys/class/net")):
        try:
            with open("/sys/class/net/%s/address" % dev) as f:
                if f.read().strip().lower() == mac:
                    return dev
        except OSError:
            pass
    fail("no network device of this instance has the ENI's MAC %s; is the"
         " ENI attached to it?" % mac)


def bpf_program(spec):
    # "n,code jt jf k,..." (tcpdump -ddd) -> struct sock_filter[n] bytes.
    parts = [p for p in spec.split(",") if p.strip()]
    try:
        n = int(parts[0])
        insns = [tuple(int(x) for x in p.split()) for p in parts[1:]]
    except (ValueError, IndexError):
        fail("the capture filter program is malformed.")
    if n != len(insns) or not 0 < n <= 4096 or any(len(i) != 4 for i in insns):
        fail("the capture filter program is malformed.")
    return b"".join(struct.pack("=HBBI", *i) for i in insns), n


def open_packet(a):
    dev = device_of(a.on_host)
    try:
        # Protocol 0: nothing is received until bind() names the device and the
        # protocol, after the filter is attached (as libpcap does); created with
        # ETH_P_ALL, the socket would queue every interface's frames unfiltered meanwhile.
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES):
            fail("capturing on %s needs root (or CAP_NET_RAW) on the"
                 " instance." % dev)
        raise
    if a.bpf:
        import ctypes
        prog, n = bpf_program(a.bpf)
        buf = ctypes.create_string_buffer(prog)
        fprog = struct.pack("HL", n, ctypes.addressof(buf))
        s.setsockopt(SOL, SO_ATTACH_FILTER, fprog)  # the kernel copies it
    s.bind((dev, ETH_P_ALL))
    tune(s, a)  # relay.py's, as for its UDP socket
    if a.drop_to and os.getuid() == 0:
        import pwd
        u = pwd.getpwnam(a.drop_to)
        os.setgroups([])
        os.setgid(u.pw_gid)
        os.setuid(u.pw_uid)
    return s, dev


def agent_connections():
    # The TCP connections (local, remote) of the SSM agent's processes.
    inodes = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % pid) as f:
                if not f.read().strip().startswith(AGENTS):
                    continue
            for fd in os.listdir("/proc/%s/fd" % pid):
                link = os.readlink("/proc/%s/fd/%s" % (pid, fd))
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass
    out = set()
    for name, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    w = line.split()
                    if len(w) > 9 and w[9] in inodes:
                        out.add(conn_key(proc_addr(w[1], size),
                                         proc_addr(w[2], size)))
        except (OSError, StopIteration, ValueError):
            pass
    return out


def proc_addr(field, size):
    # "0100007F:0016" (host-order 32-bit words) -> (address bytes, port)
    h, p = field.split(":")
    raw = bytes.fromhex(h)
    ip = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if size == 16 and ip[:12] == MAPPED:
        ip = ip[12:]
    return ip, int(p, 16)


def ip_bytes(text):
    ip = socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET,
                          text)
    return ip[12:] if ip[:12] == MAPPED else ip


def conn_key(x, y):
    return tuple(sorted((x, y)))


def frame_conn(f):
    # (src, dst) of a TCP/IPv4 or TCP/IPv6 Ethernet frame, else None.
    o = 12
    et = f[o:o + 2]
    while et in (b"\x81\x00", b"\x88\xa8") and len(f) >= o + 6:
        o += 4
        et = f[o:o + 2]
    o += 2
    if et == b"\x08\x00" and len(f) >= o + 20 and f[o + 9] == 6:
        ihl = (f[o] & 15) * 4
        src, dst, t = f[o + 12:o + 16], f[o + 16:o + 20], o + ihl
    elif et == b"\x86\xdd" and len(f) >= o + 40 and f[o + 6] == 6:
        src, dst, t = f[o + 8:o + 24], f[o + 24:o + 40], o + 40
    else:
        return None
    if len(f) < t + 4:
        return None
    sp, dp = struct.unpack("!HH", f[t:t + 4])
    return conn_key((src, sp), (dst, dp))


def packet_rx(s, snap, a):
    # One recvmsg() per frame, up to BATCH per call; each a datagram record.
    ts_fmt = struct.Struct("@ll")
    hdr = VXLAN_FLAGS + struct.pack("!I", a.vni << 8)
    src = socket.inet_pton(socket.AF_INET, a.src_ip)
    fixed = set()
    for e in a.exclude:
        w = e.split()
        try:
            ends = [(ip_bytes(w[i]), int(w[i + 1])) for i in (0, 2)]
        except (OSError, ValueError, IndexError):
            continue  # no connection to leave out ("", or sshd's "UNKNOWN 65535 …")
        fixed.add(conn_key(*ends))
    state = {"skip": set(fixed), "at": 0.0}
    stats = struct.Struct("=II")  # struct tpacket_stats: packets, drops

    def rx():
        global drops
        t = time.time()
        if a.exclude_agent and t - state["at"] >= 5:
            state["skip"] = fixed | agent_connections()
            state["at"] = t
        parts = []
        flags = 0
        while len(parts) < BATCH:
            try:
                d, anc, _, _ = s.recvmsg(snap, 256, flags)
            except (BlockingIOError, InterruptedError, socket.timeout):
                break
            flags = socket.MSG_DONTWAIT
            if state["skip"] and frame_conn(d) in state["skip"]:
                continue
            ts = 0
            for lvl, typ, c in anc:
                if lvl == SOL and typ == SO_TIMESTAMPNS:
                    sec, nsec = ts_fmt.unpack(c[:ts_fmt.size])
                    ts = sec * NS + nsec
            parts.append(REC.pack(1, 4, len(d) + 8, drops, ts or now_ns(),
                                  b"\x12\xb5", 0, src) + hdr + d)
        # Reading the counter resets it in the kernel: keep the sum.
        try:
            drops += stats.unpack(s.getsockopt(SOL_PACKET, PACKET_STATISTICS,
                                               stats.size))[1]
        except OSError:
            pass
        return len(parts), parts
    return rx
