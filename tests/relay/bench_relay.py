#!/usr/bin/env python3
"""Loopback throughput benchmark for src/relay/relay.py (not a unit test).

Starts the relay on 127.0.0.1:<free port>, blasts datagrams at it from 1..N
sender processes (sendmmsg through ctypes, 256 per system call, each payload
carrying a sender id and sequence number), reads the relay's stdout through a
pipe like ssh would, and reports per path and size:

  sent        datagrams the senders handed to the kernel
  delivered   datagram records in the relay's stream (checked: lengths,
              per-sender order, no duplicates)
  drops       the relay's last reported SO_RXQ_OVFL counter
  pps         delivered / (last data read - first data read), i.e. the rate
              the relay emitted records (its maximum when it dropped);
              with --drain: delivered / (last data read - thaw)
  pps/cpu-s   delivered / CPU seconds the relay used (user + system)

Only 127.0.0.1 is used.  Usage:
  python3 tests/relay/bench_relay.py [--count N] [--sizes 128,1500]
      [--paths mmsg,plain] [--senders 1] [--rate PPS (0 = as fast as possible)]
      [--relay PATH (another relay.py to compare)] [--drain]
"""
import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RELAY = os.path.join(HERE, "..", "..", "src", "relay", "relay.py")
sys.path.insert(0, HERE)
from test_relay import REC, Parser  # noqa: E402  (the tests' independent parser)

SENDER = r"""
import ctypes, errno, socket, struct, sys, time
port, size, count, ident = [int(x) for x in sys.argv[1:5]]
rate = float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
s.connect(("127.0.0.1", port))
libc = ctypes.CDLL(None, use_errno=True)
sendmmsg = libc.sendmmsg
sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
B = 256
buf = ctypes.create_string_buffer(b"\x5a" * (size * B), size * B)
iov = ctypes.create_string_buffer(16 * B)
hdr = ctypes.create_string_buffer(64 * B)
for i in range(B):
    struct.pack_into("=QQ", iov, 16 * i, ctypes.addressof(buf) + size * i, size)
    struct.pack_into("=QI4xQQQQi4xI4x", hdr, 64 * i, 0, 0,
                     ctypes.addressof(iov) + 16 * i, 1, 0, 0, 0, 0)
seq = 0
fd = s.fileno()
t0 = time.time()
while seq < count:
    n = min(B, count - seq)
    for i in range(n):
        struct.pack_into("!Q", buf, size * i, (ident << 48) | (seq + i))
    r = sendmmsg(fd, hdr, n, 0)
    if r < 0:
        if ctypes.get_errno() in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR):
            continue
        raise OSError(ctypes.get_errno(), "sendmmsg")
    seq += r
    if rate:
        ahead = t0 + seq / rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
dt = time.time() - t0
sys.stdout.write("%d %f\n" % (seq, dt))
"""


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(relay_py, path, size, count, senders, rate, drain):
    port = free_port()
    args = [sys.executable, relay_py, "--addr", "127.0.0.1", "--port", str(port),
            "--heartbeat", "0.2"]
    if path == "plain":
        args.append("--no-mmsg")
    if drain:
        args += ["--rcvbuf", str(1 << 30)]
    relay = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fd = relay.stdout.fileno()
    head = os.read(fd, 8)
    assert head == b"AWSVPCR\x01", head
    out = tempfile.TemporaryFile()
    chunks = []  # (read time, offset, length)

    def reader():
        off = 0
        while True:
            b = os.read(fd, 4 << 20)
            if not b:
                return
            chunks.append((time.time(), off, len(b)))
            out.write(b)
            off += len(b)
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    cpu0 = cpu_seconds(relay.pid)
    if drain:
        os.kill(relay.pid, signal.SIGSTOP)
    per = count // senders
    procs = [subprocess.Popen([sys.executable, "-c", SENDER, str(port), str(size),
                               str(per), str(k), str(rate / senders)],
                              stdout=subprocess.PIPE) for k in range(senders)]
    sent, send_time = 0, 0.0
    for p in procs:
        o, _ = p.communicate(timeout=300)
        n, dt = o.split()
        sent += int(n)
        send_time = max(send_time, float(dt))
    t_sent = time.time()
    if drain:
        os.kill(relay.pid, signal.SIGCONT)
    # The relay writes a heartbeat once its socket queue stayed empty 0.2 s.
    deadline = time.time() + 60
    while time.time() < deadline:
        if any(t > t_sent and n == REC.size for t, _, n in chunks[-3:]):
            break
        time.sleep(0.05)
    cpu = cpu_seconds(relay.pid) - cpu0
    relay.terminate()
    relay.wait(timeout=10)
    th.join(timeout=10)
    out.seek(0)
    data = out.read()
    # Parse and check, noting when each datagram's last byte was read.
    delivered = drops = bad = 0
    last_seq = {}
    t_first = t_sent if drain else None
    t_last = None
    parser, buf = Parser(), b""
    for t, off, n in chunks:
        buf += data[off:off + n]
        recs, used = parser.parse(buf)
        buf = buf[used:]
        for r in recs:
            drops = max(drops, r.drops)
            if r.kind != 1:
                continue
            delivered += 1
            if r.length != size:
                bad += 1
            tag = struct.unpack_from("!Q", r.payload)[0]
            ident, seq = tag >> 48, tag & 0xFFFFFFFFFFFF
            if seq <= last_seq.get(ident, -1):
                bad += 1
            last_seq[ident] = seq
            if t_first is None:
                t_first = t
            t_last = t
    span = max(t_last - t_first, 1e-6)
    return {
        "path": path, "size": size, "senders": senders, "sent": sent,
        "send_pps": sent / send_time, "delivered": delivered, "drops": drops,
        "unaccounted": sent - delivered - drops, "bad": bad,
        "pps": delivered / span, "cpu": cpu,
        "pps_cpu": delivered / cpu if cpu else 0.0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000000)
    ap.add_argument("--sizes", default="128,1500")
    ap.add_argument("--paths", default="mmsg,plain")
    ap.add_argument("--senders", type=int, default=1)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--relay", default=RELAY, help="relay script to measure")
    ap.add_argument("--drain", action="store_true",
                    help="freeze the relay (SIGSTOP), queue --count datagrams "
                    "in a 1 GiB socket buffer (root: SO_RCVBUFFORCE), thaw it "
                    "and time the drain: the relay's rate without a sender "
                    "competing for the CPUs")
    a = ap.parse_args()
    print("%-6s %5s %3s %9s %10s %9s %9s %5s %4s %9s %6s %9s" % (
        "path", "size", "snd", "sent", "send pps", "delivered", "drops",
        "unacc", "bad", "pps", "cpu s", "pps/cpu-s"))
    for size in [int(x) for x in a.sizes.split(",")]:
        for path in a.paths.split(","):
            r = run(a.relay, path, size, a.count, a.senders, a.rate, a.drain)
            print("%-6s %5d %3d %9d %10.0f %9d %9d %5d %4d %9.0f %6.2f %9.0f" % (
                r["path"], r["size"], r["senders"], r["sent"], r["send_pps"],
                r["delivered"], r["drops"], r["unaccounted"], r["bad"],
                r["pps"], r["cpu"], r["pps_cpu"]))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
