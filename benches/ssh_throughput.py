#!/usr/bin/env python3
"""Helper of benches/ssh_throughput.sh (issue 4): SSH transport throughput on loopback.

Not a test and not meant to be run alone: ssh_throughput.sh starts the sshd and calls

  ssh_throughput.py run  --awsvpc BIN --work DIR --ssh-port P --key K --known-hosts KH
                         --ssh-config CFG --sshd-pid PID [--sizes 128,1500] [--reps 3]
                         [--paths awsvpc,tcpdump+tshark,tcpdump] [--step-seconds 2.5]

which measures, for each path and inner frame size, the lossless rate (the highest offered
rate at which every datagram sent was delivered: doubling, then bisection) and the flat-out
delivery rate, plus the raw SSH channel's byte rate, and prints a markdown table.

Paths (only 127.0.0.1 is used; nothing leaves the machine):
  awsvpc          awsvpc --collector host --connect ssh, its fifo read by `count`
  tcpdump+tshark  ssh ... 'tcpdump -U -w - -i lo udp port U' | tshark -r - -T fields
                  -e frame.number | count --lines  (the manual baseline)
  tcpdump         the same without tshark: ssh ... tcpdump | count (transport only)

The other sub-commands are the processes it starts:
  blast PORT SIZE COUNT RATE   VXLAN sender (sendmmsg via ctypes; RATE 0 = flat out)
  count IN OUT [--lines]       fast consumer: reads IN ('-' = stdin) in 1 MiB reads, keeps
                               (time, bytes, lines) per read, progress in OUT.progress
"""
import array
import ctypes
import errno
import json
import os
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

ME = os.path.abspath(__file__)
PY = sys.executable
VNI = 4242
# Relay stream bytes per datagram in a batch record (length, sockaddr_in, control area:
# src/relay/stream.rs; the 36-byte batch header is shared by up to 64) + VXLAN header.
RELAY_OVERHEAD = 4 + 16 + 56 + 8
# pcap record header + outer Ethernet/IPv4/UDP/VXLAN, per datagram, in tcpdump's stream.
PCAP_OVERHEAD = 16 + 14 + 20 + 8 + 8


# ---------------------------------------------------------------------------- blast
def inner_frame(size):
    """An Ethernet/IPv4/UDP frame of exactly `size` bytes (checksummed IPv4 header)."""
    assert size >= 42
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - 14, 0, 0x4000, 64, 17, 0,
                               bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])))
    c = sum(struct.unpack("!10H", ip))
    while c >> 16:
        c = (c & 0xFFFF) + (c >> 16)
    struct.pack_into("!H", ip, 10, ~c & 0xFFFF)
    udp = struct.pack("!HHHH", 40000, 9, size - 34, 0)
    payload = bytes((i * 7) & 0xFF for i in range(size - 42))
    eth = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00])
    return eth + bytes(ip) + udp + payload


def vxlan_datagram(size):
    return struct.pack("!BBBBI", 0x08, 0, 0, 0, VNI << 8) + inner_frame(size)


def blast(port, size, count, rate):
    """Sends `count` VXLAN datagrams to 127.0.0.1:port at `rate` per second (0: as fast as
    possible), sendmmsg batches paced per batch. Prints JSON."""
    dgram = vxlan_datagram(size)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.connect(("127.0.0.1", port))
    libc = ctypes.CDLL(None, use_errno=True)
    sendmmsg = libc.sendmmsg
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    # Batches of about 0.5 ms at the offered rate (the burst the receiver sees), 256 flat out.
    B = 256 if rate <= 0 else max(8, min(256, int(rate / 2000)))
    buf = ctypes.create_string_buffer(dgram, len(dgram))
    iov = ctypes.create_string_buffer(16)
    struct.pack_into("=QQ", iov, 0, ctypes.addressof(buf), len(dgram))
    hdr = ctypes.create_string_buffer(64 * B)
    for i in range(B):  # every message is the same datagram: no per-packet Python work
        struct.pack_into("=QI4xQQQQi4xI4x", hdr, 64 * i, 0, 0, ctypes.addressof(iov), 1,
                         0, 0, 0, 0)
    fd = s.fileno()
    sent = errors = 0
    t0 = time.time()
    c0 = os.times()
    while sent < count:
        r = sendmmsg(fd, hdr, min(B, count - sent), 0)
        if r < 0:
            e = ctypes.get_errno()
            if e in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR, errno.ECONNREFUSED):
                errors += 1
                continue
            raise OSError(e, os.strerror(e))
        sent += r
        if rate > 0:
            ahead = t0 + sent / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
    t1 = time.time()
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    print(json.dumps({"sent": sent, "t0": t0, "t1": t1, "cpu": cpu, "errors": errors,
                      "batch": B}))


# ---------------------------------------------------------------------------- count
def count(src, out, lines_mode):
    fd = 0 if src == "-" else os.open(src, os.O_RDONLY)
    total = lines = 0
    log = array.array("d")
    prog = os.open(out + ".progress", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    last_write = 0.0
    t_last = 0.0

    def progress(done=False):
        os.pwrite(prog, b"%20d %20d %20.6f %d\n" % (total, lines, t_last, done), 0)

    while True:
        r, _, _ = select.select([fd], [], [], 0.1)
        now = time.time()
        if r:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            total += len(b)
            if lines_mode:
                lines += b.count(b"\n")
            t_last = now
            log.extend((now, total, lines))
        if not r or now - last_write >= 0.1:
            progress()
            last_write = now
    with open(out, "wb") as f:
        log.tofile(f)
    progress(True)


def read_count_log(out):
    a = array.array("d")
    with open(out, "rb") as f:
        a.frombytes(f.read())
    return [(a[i], int(a[i + 1]), int(a[i + 2])) for i in range(0, len(a), 3)]


def read_progress(out):
    try:
        with open(out + ".progress") as f:
            w = f.read().split()
        return int(w[0]), int(w[1]), float(w[2]), w[3] == "1"
    except (OSError, IndexError, ValueError):
        return 0, 0, 0.0, False


# ---------------------------------------------------------------------------- /proc
def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid):
    kids, out, todo = children_map(), [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            w = f.read().rsplit(")", 1)[1].split()
        return int(w[11]) + int(w[12])
    except (OSError, ValueError, IndexError):
        return None


def sample(groups):
    return {name: {p: cpu_ticks(p) for p in pids} for name, pids in groups.items()}


def cpu_percent(s0, s1, seconds):
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for name in s0:
        t = 0
        for p, a in s0[name].items():
            b = s1.get(name, {}).get(p)
            if a is not None and b is not None:
                t += b - a
        out[name] = 100.0 * t / hz / max(seconds, 1e-3)
    return out


def proc_stat():
    with open("/proc/stat") as f:
        w = [int(x) for x in f.readline().split()[1:]]
    idle = w[3] + w[4]
    return sum(w[:8]), idle, w[6], w[1]  # total, idle+iowait, softirq, nice


def system_busy(a, b):
    """Busy %, softirq % and nice % of all CPUs between two proc_stat samples (100 % =
    every core busy). Nice time is other people's niced work (fuzzers): ours runs at 0."""
    total = max(b[0] - a[0], 1)
    return (100.0 * (total - (b[1] - a[1])) / total, 100.0 * (b[2] - a[2]) / total,
            100.0 * (b[3] - a[3]) / total)


def add_system(cpu, p0, p1):
    """Adds to the per-process CPU % (100 % = one core): softirq (the loopback UDP path,
    not charged to any process), the work of other people's processes in the same window
    (busy - ours - softirq; 'niced' is the part of it at nice > 0), and the total."""
    n = os.cpu_count()
    busy, softirq, nice = (x * n for x in system_busy(p0, p1))
    ours = sum(cpu.values())
    cpu["softirq"] = softirq
    cpu["other work"] = max(0.0, busy - ours - softirq)
    cpu["of it niced"] = nice
    cpu["ALL CPUs busy"] = busy


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def background():
    """Load average, and the busy % of the CPUs over 1 s while nothing of ours runs."""
    a = proc_stat()
    time.sleep(1.0)
    busy, _, nice = system_busy(a, proc_stat())
    return {"load": loadavg(), "bg_busy": busy, "bg_nice": nice}


# ---------------------------------------------------------------------------- driver
class Bench:
    def __init__(self, a):
        self.a = a
        self.ssh_base = ["ssh", "-F", a.ssh_config, "-T", "-x", "-o", "BatchMode=yes",
                         "-o", "StrictHostKeyChecking=yes",
                         "-o", "UserKnownHostsFile=" + a.known_hosts,
                         "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                         "-p", str(a.ssh_port), "-l", "root", "-i", a.key,
                         "-o", "IdentitiesOnly=yes", "127.0.0.1"]
        self.n = 0
        self.started = []  # every Popen, killed by pid at the end if still running

    # -- process helpers
    def popen(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.started.append(p)
        return p

    def reap(self):
        for p in self.started:
            if p.poll() is None:
                try:
                    p.kill()
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        self.started = [p for p in self.started if p.poll() is None]

    def stepdir(self, tag):
        self.n += 1
        d = os.path.join(self.a.work, "%03d-%s" % (self.n, tag))
        os.makedirs(d)
        return d

    @staticmethod
    def wait_for(what, cond, timeout, proc=None):
        until = time.time() + timeout
        while time.time() < until:
            v = cond()
            if v:
                return v
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("%s: the process exited (%s) first" % (what, proc.returncode))
            time.sleep(0.05)
        raise RuntimeError("timed out after %d s waiting for %s" % (timeout, what))

    def sshd_session_pids(self):
        return [p for p in descendants(self.a.sshd_pid) if comm(p) == "sshd"]

    def wait_quiet(self, out, sent_bytes_hint=None, quiet=1.0, limit=90):
        """Waits until the consumer's byte count has not grown for `quiet` seconds."""
        until = time.time() + limit
        last, since = -1, time.time()
        while time.time() < until:
            b, _, _, done = read_progress(out)
            if done:
                return
            if b != last:
                last, since = b, time.time()
            elif time.time() - since >= quiet:
                return
            time.sleep(0.05)
        raise RuntimeError("delivery did not settle within %d s" % limit)

    def run_blaster(self, port, size, count, rate, groups):
        s0, p0 = sample(groups), proc_stat()
        bl = self.popen([PY, ME, "blast", str(port), str(size), str(count), str(rate)],
                        stdout=subprocess.PIPE)
        limit = 60 + (2 * count / rate if rate > 0 else 120)
        o, _ = bl.communicate(timeout=limit)
        s1, p1 = sample(groups), proc_stat()
        r = json.loads(o)
        secs = r["t1"] - r["t0"]
        cpu = cpu_percent(s0, s1, secs)
        cpu["blaster"] = 100.0 * r["cpu"] / max(secs, 1e-3)
        add_system(cpu, p0, p1)
        r["cpu_pct"] = cpu
        r["send_pps"] = r["sent"] / max(secs, 1e-6)
        return r

    @staticmethod
    def span(log, t0, t_stop):
        """First and last read carrying data between the blast start and the stop."""
        first = last = None
        prev = None
        for t, b, _ in log:
            if t < t0:
                prev = b
                continue
            if t >= t_stop:
                break
            if first is None:
                first = t
            if b != prev:
                last = t
            prev = b
        if first is None or last is None or last <= first:
            return None
        return last - first

    # -- one step of the awsvpc path
    def step_awsvpc(self, size, count, rate):
        d = self.stepdir("awsvpc-%d-%d" % (size, rate))
        port = free_udp_port()
        fifo, out, log = (os.path.join(d, x) for x in ("fifo", "count", "awsvpc.log"))
        os.mkfifo(fifo)
        cons = self.popen([PY, ME, "count", fifo, out])
        env = dict(os.environ, AWSVPC_SSH_CONFIG=self.a.ssh_config)
        err = open(os.path.join(d, "awsvpc.stderr"), "wb")
        aw = self.popen([self.a.awsvpc, "--capture", "--extcap-interface", "awsvpc",
                         "--fifo", fifo, "--collector", "host", "--connect", "ssh",
                         "--ssh-host", "127.0.0.1", "--ssh-port", str(self.a.ssh_port),
                         "--ssh-user", "root", "--ssh-key", self.a.key,
                         "--ssh-known-hosts", self.a.known_hosts,
                         "--listen-addr", "127.0.0.1", "--listen-port", str(port),
                         "--log-file", log, "--log-level", "info"],
                        env=env, stdout=subprocess.DEVNULL, stderr=err)
        relay = None
        try:
            self.wait_for("the relay to start", lambda: "relay running on" in readf(log),
                          40, aw)
            relay = [p for p in descendants(self.a.sshd_pid)
                     if "--port %d " % port in cmdline(p) + " "]
            ssh = [p for p in descendants(aw.pid) if comm(p) == "ssh"]
            groups = {"relay (python)": relay, "sshd": self.sshd_session_pids(),
                      "ssh client": ssh, "awsvpc": [aw.pid], "fifo reader": [cons.pid]}
            r = self.run_blaster(port, size, count, rate, groups)
            self.wait_quiet(out)
            t_stop = time.time()
        finally:
            if aw.poll() is None:
                aw.send_signal(signal.SIGTERM)
            try:
                aw.wait(timeout=20)
            except subprocess.TimeoutExpired:
                aw.kill()
                aw.wait(timeout=5)
            try:
                cons.wait(timeout=20)
            except subprocess.TimeoutExpired:
                cons.kill()
            err.close()
        text = readf(log)
        m = re.search(r"capture ended \((\w+)\): (\d+) datagrams received; (\d+) packets "
                      r"\((\d+) bytes\) written; (\d+) malformed; (\d+) from unexpected "
                      r"sources; (\d+) not matching the capture filter; (\d+) dropped by the "
                      r"kernel socket; (\d+) dropped because", text)
        if not m:
            raise RuntimeError("no final statistics in %s:\n%s" % (log, text[-2000:]))
        r["delivered"] = int(m.group(3))
        r["kernel_drops"] = int(m.group(8))
        r["queue_drops"] = int(m.group(9))
        r["malformed"] = int(m.group(5)) + int(m.group(6))
        sp = self.span(read_count_log(out), r["t0"], t_stop)
        r["span"] = sp
        r["pps"] = r["delivered"] / sp if sp else 0.0
        r["stream_bytes"] = r["delivered"] * (size + RELAY_OVERHEAD)
        r["lossless"] = (r["delivered"] == r["sent"] and r["kernel_drops"] == 0
                         and r["queue_drops"] == 0)
        r["dir"] = d
        # The relay of this step must be gone before the next one (CPU, and its port).
        for p in relay or []:
            self.wait_for("relay %d to exit" % p, lambda: cpu_ticks(p) is None, 20)
        return r

    # -- one step of a tcpdump baseline
    def step_tcpdump(self, size, count, rate, tshark):
        d = self.stepdir("%s-%d-%d" % ("tshark" if tshark else "tcpdump", size, rate))
        port = free_udp_port()
        # Something listens on the port, as the relay does on the awsvpc path (no ICMP
        # port unreachable); it never reads, so it costs one enqueue or drop per datagram.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sink.bind(("127.0.0.1", port))
        out, errf = os.path.join(d, "count"), os.path.join(d, "ssh.stderr")
        err = open(errf, "wb")
        remote = "echo pid=$$ >&2; exec tcpdump -U -B %d -s 0 -w - -i lo udp port %d" % (
            self.a.tcpdump_buffer, port)
        ssh = self.popen(self.ssh_base + [remote], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=err)
        ts = None
        if tshark:
            tserr = open(os.path.join(d, "tshark.stderr"), "wb")
            ts = self.popen(["tshark", "-r", "-", "-T", "fields", "-e", "frame.number"],
                            stdin=ssh.stdout, stdout=subprocess.PIPE, stderr=tserr)
            tserr.close()
            cons = self.popen([PY, ME, "count", "-", out, "--lines"], stdin=ts.stdout)
            ts.stdout.close()
        else:
            cons = self.popen([PY, ME, "count", "-", out], stdin=ssh.stdout)
        ssh.stdout.close()
        tcpdump_pid = None
        try:
            self.wait_for("tcpdump to listen", lambda: "listening on lo" in readf(errf),
                          30, ssh)
            tcpdump_pid = int(re.search(r"pid=(\d+)", readf(errf)).group(1))
            if ts is not None:  # tshark's start-up (dissector registration) must be over
                self.wait_idle(ts.pid, 30)
            groups = {"tcpdump": [tcpdump_pid], "sshd": self.sshd_session_pids(),
                      "ssh client": [ssh.pid], "reader (count)": [cons.pid]}
            if ts is not None:
                groups["tshark"] = [ts.pid]
            r = self.run_blaster(port, size, count, rate, groups)
            self.wait_quiet(out, quiet=1.5 if tshark else 1.0)
            t_stop = time.time()
        finally:
            if tcpdump_pid and cpu_ticks(tcpdump_pid) is not None:
                os.kill(tcpdump_pid, signal.SIGINT)  # tcpdump flushes and prints its counts
            for p in (ssh, ts, cons):
                if p is None:
                    continue
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
            err.close()
            sink.close()
        text = readf(errf)
        cap = re.search(r"(\d+) packets? captured", text)
        drop = re.search(r"(\d+) packets? dropped by kernel", text)
        if not cap or not drop:
            raise RuntimeError("tcpdump printed no statistics:\n" + text[-2000:])
        log = read_count_log(out)
        total_bytes = log[-1][1] if log else 0
        if tshark:
            r["delivered"] = log[-1][2] if log else 0
        else:
            r["delivered"] = max(0, total_bytes - 24) // (size + PCAP_OVERHEAD)
        r["captured"] = int(cap.group(1))
        # libpcap counts the kernel drops of both copies of a loopback packet (outgoing and
        # incoming; it discards the outgoing copy itself), so this is about twice the loss.
        r["kernel_drops"] = int(drop.group(1))
        r["queue_drops"] = 0
        sp = self.span(log, r["t0"], t_stop)
        r["span"] = sp
        # tshark's last (block-buffered) output arrives at EOF, after the stop: the rate is
        # over what arrived before it.
        before = [x for x in log if x[0] < t_stop]
        n_before = (before[-1][2] if tshark else
                    max(0, before[-1][1] - 24) // (size + PCAP_OVERHEAD)) if before else 0
        r["pps"] = n_before / sp if sp else 0.0
        r["stream_bytes"] = r["delivered"] * (size + PCAP_OVERHEAD)
        r["lossless"] = r["delivered"] == r["sent"] and r["kernel_drops"] == 0
        r["dir"] = d
        return r

    def wait_idle(self, pid, limit):
        until = time.time() + limit
        prev = cpu_ticks(pid)
        time.sleep(0.3)
        while time.time() < until:
            now = cpu_ticks(pid)
            if now is None or now == prev:
                return
            prev = now
            time.sleep(0.3)

    def step(self, path, size, count, rate):
        for attempt in (1, 2):  # one retry: a step that breaks (not one that loses) is noise
            try:
                if path == "awsvpc":
                    r = self.step_awsvpc(size, count, rate)
                else:
                    r = self.step_tcpdump(size, count, rate, tshark=(path == "tcpdump+tshark"))
                break
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
                self.reap()
                print("  step %s %d B at %s failed (attempt %d): %s" % (
                    path, size, rate or "flat-out", attempt, e), flush=True)
                if attempt == 2:
                    raise
        r.update(path=path, size=size, rate=rate)
        r["sender_limited"] = rate > 0 and r["send_pps"] < 0.95 * rate
        log_step(r)
        self.reap()
        return r

    # -- the rate search for one path and size
    def search(self, path, size, rep):
        bg = background()
        print("\n### %s, %d-byte frames, repetition %d (load %s; before it, other work kept "
              "%.0f %% of the CPUs busy, %.0f %% at nice > 0)" % (
                  path, size, rep, bg["load"], bg["bg_busy"], bg["bg_nice"]), flush=True)
        flat = self.step(path, size, self.a.flat_count_128 if size <= 256 else
                         self.a.flat_count_big, 0)
        secs = self.a.step_seconds

        def trial(rate):
            rate = int(round(rate / 500.0) * 500) or 500
            n = max(5000, int(rate * secs))
            return rate, self.step(path, size, n, rate)

        steps = []
        good = bad = None
        good_step = None
        r0 = max(5000, flat["pps"] / 4)
        rate = r0
        # Doubling (or halving, when the first rate already loses).
        for _ in range(8):
            rate, res = trial(rate)
            steps.append(res)
            if res["lossless"]:
                good, good_step = rate, res
                if res["sender_limited"] or bad is not None:
                    break
                rate *= 2
            else:
                bad = rate
                if good is not None:
                    break
                rate /= 2
        # Bisection.
        if good is not None and bad is not None:
            for _ in range(self.a.bisect):
                mid = (good + bad) / 2
                if bad - good <= max(1000, 0.03 * good):
                    break
                mid, res = trial(mid)
                steps.append(res)
                if res["lossless"]:
                    good, good_step = mid, res
                else:
                    bad = mid
        return {"path": path, "size": size, "rep": rep, "bg": bg, "flat": flat,
                "lossless_pps": good or 0, "lossless_step": good_step,
                "first_loss_pps": bad, "steps": steps}

    def raw_ssh(self, rep):
        d = self.stepdir("raw-ssh")
        out = os.path.join(d, "count")
        n = self.a.raw_bytes
        bg = background()
        ssh = self.popen(self.ssh_base + ["exec head -c %d /dev/zero" % n],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        cons = self.popen([PY, ME, "count", "-", out], stdin=ssh.stdout)
        ssh.stdout.close()
        groups = {"sshd": [], "ssh client": [ssh.pid], "reader (count)": [cons.pid]}
        self.wait_for("the first bytes", lambda: read_progress(out)[0] > 0, 30, None)
        groups["sshd"] = self.sshd_session_pids()
        groups["head"] = [p for p in descendants(self.a.sshd_pid) if comm(p) == "head"]
        s0, p0, t0 = sample(groups), proc_stat(), time.time()
        # The session's processes exit with the transfer: keep the last sample taken while
        # they were all alive.
        last = (s0, p0, t0)
        until = time.time() + 300
        while not read_progress(out)[3]:
            if time.time() > until:
                raise RuntimeError("the raw transfer did not end within 300 s")
            s = sample(groups)
            if all(v is not None for g in s.values() for v in g.values()):
                last = (s, proc_stat(), time.time())
            time.sleep(0.2)
        s1, p1, t1 = last
        ssh.wait(timeout=20)
        log = read_count_log(out)
        t_first, b_first = log[0][0], log[0][1]
        t_last, b_last = log[-1][0], log[-1][1]
        cpu = cpu_percent(s0, s1, t1 - t0)
        add_system(cpu, p0, p1)
        r = {"bytes": b_last, "rate": (b_last - b_first) / max(t_last - t_first, 1e-6),
             "bg": bg, "rep": rep, "cpu_pct": cpu}
        print("raw SSH channel, repetition %d: %d bytes at %.1f MB/s (load · busy before: %s);"
              " CPU %s" % (rep, b_last, r["rate"] / 1e6, fmt_bg(bg), fmt_cpu(cpu)), flush=True)
        self.reap()
        return r


def fmt_bg(bg):
    return "%s · %.0f %% (%.0f %% niced)" % (bg["load"].split()[0], bg["bg_busy"], bg["bg_nice"])


def fmt_cpu(c):
    return ", ".join("%s %.0f%%" % (k, v) for k, v in c.items())


def log_step(r):
    ok = "lossless" if r["lossless"] else "LOSS %d" % (r["sent"] - r["delivered"])
    print("  %-14s %5d B  offered %8s  sent %8d at %7.0f pps%s  delivered %8d  "
          "kdrops %d qdrops %d  -> %7.0f pps  %s" % (
              r["path"], r["size"], "flat-out" if r["rate"] == 0 else "%d" % r["rate"],
              r["sent"], r["send_pps"], " (sender-limited)" if r["sender_limited"] else "",
              r["delivered"], r["kernel_drops"], r["queue_drops"], r["pps"], ok), flush=True)
    print("      CPU (100 %% = one core): %s" % fmt_cpu(r["cpu_pct"]), flush=True)


def readf(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def med(v):
    return statistics.median(v) if v else 0


def report(results, raws, a, header):
    raw_rates = [r["rate"] for r in raws]
    raw_best, raw_med = (max(raw_rates), med(raw_rates)) if raws else (0, 0)
    print("\n## Results\n")
    print(header)
    print()
    print("Best / median of %d repetitions. Lossless: the highest offered rate whose %.1f s "
          "of traffic arrived complete (no kernel, tcpdump or awsvpc drop). Flat out: the "
          "blaster as fast as it can (on these shared cores it then takes CPU from the "
          "path it measures). Best delivered: the highest delivery rate of any step, "
          "lossless, lossy or flat out; pps = frames delivered / delivery time. MB/s: inner "
          "frame bytes at the best delivered rate, and in brackets the bytes through the SSH "
          "channel (awsvpc: frame + %d B per datagram in a batch record; tcpdump: pcap "
          "record = frame + %d B). %% of raw SSH: those channel bytes/s over the raw "
          "channel's median. Load: 1-min load average before each repetition; busy: other "
          "work's share of all CPUs before it. tcpdump's 'dropped by kernel' counts both "
          "copies of a loopback packet (about twice the loss); lossless means delivered = "
          "sent.\n" % (a.reps, a.step_seconds, RELAY_OVERHEAD, PCAP_OVERHEAD))
    print("| path | frame | lossless pps (best / median) | flat-out pps (best / median) "
          "| best delivered pps (best / median) | MB/s inner (channel), median "
          "| % of raw SSH | load avg · busy before |")
    print("|---|---|---|---|---|---|---|---|")
    for path in a.paths.split(","):
        for size in [int(x) for x in a.sizes.split(",")]:
            rs = [r for r in results if r["path"] == path and r["size"] == size]
            if not rs:
                continue
            ll = [r["lossless_pps"] for r in rs]
            fo = [r["flat"]["pps"] for r in rs]
            bd = [max([s["pps"] for s in r["steps"]] + [r["flat"]["pps"]]) for r in rs]
            mbs = med(bd) * size / 1e6
            chan = med(bd) * (size + (RELAY_OVERHEAD if path == "awsvpc" else PCAP_OVERHEAD))
            lim = any(r["lossless_step"] and r["lossless_step"]["sender_limited"]
                      for r in rs)
            loads = "; ".join(fmt_bg(r["bg"]) for r in rs)
            name = {"awsvpc": a.label,
                    "tcpdump+tshark": "baseline: ssh tcpdump -U -w - \\| tshark -r -",
                    "tcpdump": "ssh tcpdump -U -w - \\| cat (no tshark)"}.get(path, path)
            print("| %s | %d B | %s%d / %d | %d / %d | %d / %d | %.1f (%.1f) | %s | %s |" % (
                name, size, "≥ " if lim else "", max(ll), med(ll), max(fo), med(fo), max(bd),
                med(bd), mbs, chan / 1e6,
                "%.0f %%" % (100.0 * chan / raw_med) if raw_med else "-", loads))
    if raws:
        loads = "; ".join(fmt_bg(r["bg"]) for r in raws)
        print("| raw SSH channel (`head -c %d /dev/zero`) | - | - | - | - | %.1f best, %.1f median "
              "| 100 %% | %s |" % (a.raw_bytes, raw_best / 1e6, raw_med / 1e6, loads))
    print("\n## CPU profile (median repetition; 100 % = one core of " + str(os.cpu_count()) +
          ")\n")
    print("| path | frame | step | delivered pps | CPU by process |")
    print("|---|---|---|---|---|")
    for path in a.paths.split(","):
        for size in [int(x) for x in a.sizes.split(",")]:
            rs = sorted([r for r in results if r["path"] == path and r["size"] == size],
                        key=lambda r: r["lossless_pps"])
            if not rs:
                continue
            r = rs[len(rs) // 2]
            for label, st in (("highest lossless", r["lossless_step"]),
                              ("first loss", next((s for s in r["steps"]
                                                   if s["rate"] == r["first_loss_pps"]),
                                                  None)),
                              ("flat out", r["flat"])):
                if st:
                    print("| %s | %d | %s (offered %s) | %.0f | %s |" % (
                        path, size, label, st["rate"] or "max", st["pps"],
                        fmt_cpu(st["cpu_pct"])))
    if raws:
        print("| raw SSH | - | %d bytes | %.1f MB/s | %s |" % (
            a.raw_bytes, raws[len(raws) // 2]["rate"] / 1e6, fmt_cpu(raws[len(raws) // 2]["cpu_pct"])))


def run(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--awsvpc", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--ssh-port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--known-hosts", required=True)
    ap.add_argument("--ssh-config", required=True)
    ap.add_argument("--sshd-pid", type=int, required=True)
    ap.add_argument("--sizes", default="128,1500")
    ap.add_argument("--paths", default="awsvpc,tcpdump+tshark,tcpdump")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--step-seconds", type=float, default=2.5)
    ap.add_argument("--bisect", type=int, default=4)
    ap.add_argument("--flat-count-128", type=int, default=1000000)
    ap.add_argument("--flat-count-big", type=int, default=400000)
    ap.add_argument("--raw-bytes", type=int, default=1 << 30)
    ap.add_argument("--tcpdump-buffer", type=int, default=8192, help="tcpdump -B, KiB")
    ap.add_argument("--header", default="")
    ap.add_argument("--label", default="awsvpc (relay → ssh → awsvpc → fifo)",
                    help="name of the awsvpc row")
    a = ap.parse_args(argv)
    b = Bench(a)
    results, raws = [], []
    started = time.time()

    def on_term(*_):
        b.reap()
        sys.exit(1)
    signal.signal(signal.SIGTERM, on_term)
    try:
        for rep in range(1, a.reps + 1):
            raws.append(b.raw_ssh(rep))
            for size in [int(x) for x in a.sizes.split(",")]:
                for path in a.paths.split(","):
                    results.append(b.search(path, size, rep))
            with open(os.path.join(a.work, "results.json"), "w") as f:
                json.dump({"results": results, "raw": raws}, f, indent=1, default=str)
    finally:
        b.reap()
    report(results, raws, a, a.header)
    print("\n(measured in %.0f s)" % (time.time() - started))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "blast":
        blast(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "count":
        count(sys.argv[2], sys.argv[3], "--lines" in sys.argv[4:])
    elif cmd == "run":
        run(sys.argv[2:])
    else:
        sys.exit(__doc__)
