"""Tests for src/relay/relay.py, the collector-side relay.

Run from the repository root:  python3 -m unittest discover -s tests/relay -v
RELAY_PYTHON=/path/to/python3.6 runs the relay under another interpreter.
Only loopback addresses are used.  Every wait has a deadline, so a broken
relay fails a test instead of hanging it.
"""
import ast
import glob
import os
import py_compile
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
RELAY = os.path.normpath(os.path.join(HERE, "..", "..", "src", "relay", "relay.py"))
MAGIC = b"AWSVPCR\x01"
MAGIC_Z = b"AWSVPCZ\x01"
REC = struct.Struct("!BBHIQHH16s")
DATAGRAM, HEARTBEAT, ERROR, BATCH = 1, 2, 3, 4
MAPPED = b"\0" * 10 + b"\xff\xff"
PATHS = ([], ["--no-mmsg"])  # recvmmsg fast path, plain recvmsg fallback
TIMEOUT = 10.0
PYTHON = os.environ.get("RELAY_PYTHON") or sys.executable


def free_port(family=socket.AF_INET, addr="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def unprivileged():
    """(prefix, python) that run the relay as uid/gid 65534 when we are root
    and setpriv(1) is present, ([], sys.executable) when not root, else None."""
    if os.geteuid() != 0:
        return [], PYTHON
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    for exe in (PYTHON, "/usr/bin/python3"):
        try:
            if subprocess.call(prefix + [exe, "-c", "open(%r).close()" % RELAY],
                               timeout=TIMEOUT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) == 0:
                return prefix, exe
        except OSError:
            pass
    return None


class Record(object):
    def __init__(self, head, payload):
        (self.kind, self.family, self.length, self.drops, self.time_ns,
         self.src_port, self.reserved, self.src_addr) = REC.unpack(head)
        self.payload = payload

    def key(self):
        """Everything but the receive time."""
        return (self.kind, self.family, self.length, self.drops,
                self.src_port, self.reserved, self.src_addr, self.payload)

    def __repr__(self):
        return "Record%r" % (self.key()[:7] + (len(self.payload),))


class Parser(object):
    """Records from the relay stream, a batch (kind 4) unfolded into the
    datagram records (kind 1) the plain path writes for the same datagrams.
    Written from the layout (Linux's sockaddr and cmsghdr, little-endian),
    independently of awsvpc's decoder."""

    def __init__(self):
        self.drops = 0
        self.batches = 0

    def parse(self, buf):
        """(records, bytes used) of the whole records at the start of buf."""
        out, at = [], 0
        while len(buf) - at >= REC.size:
            head = buf[at:at + REC.size]
            kind, family, length, drops, t = REC.unpack(head)[:5]
            if kind != BATCH:
                if len(buf) - at < REC.size + length:
                    break
                self.drops = drops
                out.append(Record(head, buf[at + REC.size:at + REC.size + length]))
                at += REC.size + length
                continue
            k, nl = length, (28 if family == 6 else 16)
            meta = k * (4 + nl + 56)
            if len(buf) - at < REC.size + meta:
                break
            m = at + REC.size
            lens = struct.unpack_from("<%dI" % k, buf, m)
            if len(buf) - at < REC.size + meta + sum(lens):
                break
            d = m + meta
            for i, n in enumerate(lens):
                sa = buf[m + 4 * k + nl * i:m + 4 * k + nl * (i + 1)]
                c = buf[m + (4 + nl) * k + 56 * i:m + (4 + nl) * k + 56 * (i + 1)]
                fam = struct.unpack_from("<H", sa)[0]
                addr = sa[4:8] if fam == socket.AF_INET else sa[8:24]
                if addr[:12] == MAPPED:
                    addr = addr[12:]
                ts, off = t, 0
                while off + 16 <= len(c):
                    ln, lvl, typ = struct.unpack_from("<Qii", c, off)
                    if ln < 16:
                        break
                    if (lvl, typ) == (socket.SOL_SOCKET, 35):  # SCM_TIMESTAMPNS
                        sec, nsec = struct.unpack_from("<qq", c, off + 16)
                        ts = sec * 10**9 + nsec
                    elif (lvl, typ) == (socket.SOL_SOCKET, 40):  # SO_RXQ_OVFL
                        self.drops = struct.unpack_from("<I", c, off + 16)[0]
                    off += (ln + 7) & ~7
                out.append(Record(
                    REC.pack(DATAGRAM, 4 if len(addr) == 4 else 6, n, self.drops,
                             ts, struct.unpack("!H", sa[2:4])[0], 0, addr),
                    buf[d:d + n]))
                d += n
            self.batches += 1
            at = d
        return out, at


class Relay(object):
    """The relay as a subprocess, with deadline-bounded reads of its stdout."""

    def __init__(self, *args, python=None, stdin_source=False, prefix=(),
                 env=None, path=RELAY):
        python = python or PYTHON
        if stdin_source:  # as over ssh: "python3 - ARGS", source on stdin
            cmd = [python, "-"] + list(args)
        else:
            cmd = [python, path] + list(args)
        cmd = list(prefix) + cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env)
        if stdin_source:
            with open(RELAY, "rb") as f:
                self.proc.stdin.write(f.read())
        self.proc.stdin.close()
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.parser = Parser()
        self.pending = []

    def read_exact(self, n, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while len(self.buf) < n:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("timed out waiting for relay output "
                                     "(have %d of %d bytes)" % (len(self.buf), n))
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    raise AssertionError("relay stdout ended (have %d of %d "
                                         "bytes); stderr: %r" % (
                                             len(self.buf), n, self.stderr()))
                self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_all(self, timeout=TIMEOUT):
        """Everything until the relay closes stdout."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("relay stdout still open")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    out, self.buf = self.buf, b""
                    return out
                self.buf += chunk

    def header(self):
        return self.read_exact(len(MAGIC))

    def record(self, timeout=TIMEOUT):
        while not self.pending:
            recs, used = self.parser.parse(self.buf)
            self.pending.extend(recs)
            if not recs:  # at least one more byte, with the deadline
                got = self.read_exact(len(self.buf) + 1, timeout)
                self.buf = got + self.buf
            else:
                self.buf = self.buf[used:]
        return self.pending.pop(0)

    def datagram(self, timeout=TIMEOUT):
        """Next datagram record, skipping heartbeats."""
        while True:
            r = self.record(timeout)
            if r.kind != HEARTBEAT:
                return r

    def stderr(self):
        if self.proc.poll() is None:
            return "(relay still running)"
        return self.proc.stderr.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        self.proc.stdout.close()
        self.proc.stderr.close()


class RelayTest(unittest.TestCase):
    def setUp(self):
        self.relays = []
        self.socks = []

    def tearDown(self):
        for r in self.relays:
            r.close()
        for s in self.socks:
            s.close()

    def start(self, *args, **kw):
        r = Relay(*[str(a) for a in args], **kw)
        self.relays.append(r)
        return r

    def started(self, *args, **kw):
        """Start a relay and wait for its stream header (= socket bound)."""
        r = self.start(*args, **kw)
        self.assertEqual(r.header(), MAGIC)
        return r

    def sender(self, family=socket.AF_INET, addr="127.0.0.1"):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((addr, 0))
        self.socks.append(s)
        return s

    # -- round trips -------------------------------------------------------

    def check_roundtrip(self, addr, family, sender_addr, want_family, path,
                        **kw):
        port = free_port(family, sender_addr)
        r = self.started("--addr", addr, "--port", port, "--heartbeat", 5,
                         *path, **kw)
        s = self.sender(family, sender_addr)
        payload = b"\x08\x00\x00\x00\x00\x00\x2a\x00" + b"inner frame" * 3
        before = time.time()
        s.sendto(payload, (sender_addr, port))
        rec = r.datagram()
        after = time.time()
        self.assertEqual(rec.kind, DATAGRAM)
        self.assertEqual(rec.family, want_family)
        self.assertEqual(rec.payload, payload)
        self.assertEqual(rec.length, len(payload))
        self.assertEqual(rec.drops, 0)
        self.assertEqual(rec.reserved, 0)
        self.assertEqual(rec.src_port, s.getsockname()[1])
        if want_family == 4:
            want = socket.inet_aton("127.0.0.1") + b"\0" * 12
        else:
            want = socket.inet_pton(socket.AF_INET6, sender_addr)
        self.assertEqual(rec.src_addr, want)
        # A kernel receive stamp: between our send and our read of it.
        self.assertGreaterEqual(rec.time_ns, int(before * 1e9) - 50000000)
        self.assertLessEqual(rec.time_ns, int(after * 1e9) + 50000000)
        # Written at once, not when a batch fills or a receive times out.
        self.assertLess(after - before, 2.5)

    def test_roundtrip_ipv4(self):
        for path in PATHS:
            with self.subTest(path=path):
                self.check_roundtrip("127.0.0.1", socket.AF_INET, "127.0.0.1",
                                     4, path)

    @unittest.skipUnless(have_ipv6(), "no IPv6 loopback")
    def test_roundtrip_ipv6(self):
        for path in PATHS:
            with self.subTest(path=path):
                self.check_roundtrip("::1", socket.AF_INET6, "::1", 6, path)

    @unittest.skipUnless(have_ipv6(), "no IPv6")
    def test_ipv4_mapped_sender_reported_as_ipv4(self):
        # An AF_INET6 socket on ::ffff:127.0.0.1 receives IPv4 datagrams
        # from ::ffff:127.0.0.1; the record must say family 4, 127.0.0.1.
        for path in PATHS:
            with self.subTest(path=path):
                self.check_roundtrip("::ffff:127.0.0.1", socket.AF_INET,
                                     "127.0.0.1", 4, path)

    def test_source_fed_on_stdin(self):
        # The way ssh starts it: "python3 - ARGS" with the source on stdin.
        self.check_roundtrip("127.0.0.1", socket.AF_INET, "127.0.0.1", 4, [],
                             stdin_source=True)

    def test_older_interpreters(self):
        # Python 3.6 .. 3.10 as on Amazon Linux 2, AL2023 and Ubuntu 22.04,
        # wherever this machine has them (PATH or pyenv).
        found = {}
        for minor in range(6, 11):
            cands = sorted(glob.glob(os.path.expanduser(
                "~/.pyenv/versions/3.%d.*/bin/python3" % minor)))
            cands.append(shutil.which("python3.%d" % minor))
            for exe in cands:
                if exe and subprocess.call(
                        [exe, "-c", "import ctypes"], timeout=TIMEOUT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL) == 0:
                    found["3.%d" % minor] = exe
                    break
        if not found:
            self.skipTest("no Python 3.6-3.10 interpreter here")
        for ver, exe in sorted(found.items()):
            for path in PATHS:
                with self.subTest(python=ver, path=path):
                    self.check_roundtrip("127.0.0.1", socket.AF_INET,
                                         "127.0.0.1", 4, path, python=exe)
                    self.assertEqual(self.relays[-1].proc.poll(), None)

    def test_python2_refused(self):
        # AL2's "python" is 2.7: it must get an error record, not a crash.
        cands = sorted(glob.glob(os.path.expanduser(
            "~/.pyenv/versions/2.*/bin/python"))) + [shutil.which("python2")]
        exe = next((c for c in cands if c and subprocess.call(
            [c, "-c", "pass"], timeout=TIMEOUT, stderr=subprocess.DEVNULL) == 0),
            None)
        if not exe:
            self.skipTest("no Python 2 here")
        r = self.start("--addr", "127.0.0.1", "--port", free_port(), python=exe)
        self.check_error(r, "Python 3.6 or newer", "found 2.")

    def test_without_ctypes_falls_back(self):
        # A Python without ctypes (a shadowing module that fails to import)
        # still relays, via recvmsg, and says so in one stderr line.
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "ctypes.py"), "w") as f:
                f.write("raise ImportError('no ctypes in this test')\n")
            env = dict(os.environ, PYTHONPATH=d)
            port = free_port()
            r = self.started("--addr", "127.0.0.1", "--port", port, env=env)
            self.sender().sendto(b"fallback", ("127.0.0.1", port))
            self.assertEqual(r.datagram().payload, b"fallback")
            r.proc.terminate()
            self.assertEqual(r.proc.wait(timeout=TIMEOUT), 0)
            err = r.proc.stderr.read().decode()
            self.assertEqual(err.count("\n"), 1, err)
            self.assertIn("using recvmsg", err)

    # -- snaplen, heartbeats, idle exit ------------------------------------

    def test_snaplen_truncates(self):
        for path in PATHS:
            with self.subTest(path=path):
                port = free_port()
                r = self.started("--addr", "127.0.0.1", "--port", port,
                                 "--snaplen", 20, *path)
                s = self.sender()
                big = bytes(range(200))
                s.sendto(big, ("127.0.0.1", port))
                s.sendto(b"short", ("127.0.0.1", port))
                rec = r.datagram()
                self.assertEqual(rec.length, 20)
                self.assertEqual(rec.payload, big[:20])
                rec = r.datagram()
                self.assertEqual((rec.length, rec.payload), (5, b"short"))

    def test_heartbeat_when_idle(self):
        for path in PATHS:
            with self.subTest(path=path):
                port = free_port()
                r = self.started("--addr", "127.0.0.1", "--port", port,
                                 "--heartbeat", 0.2, *path)
                t0 = time.time()
                hb = r.record(timeout=3)
                self.assertEqual(hb.kind, HEARTBEAT)
                self.assertEqual((hb.family, hb.length, hb.src_port,
                                  hb.reserved, hb.src_addr, hb.drops),
                                 (0, 0, 0, 0, b"\0" * 16, 0))
                self.assertLess(abs(hb.time_ns / 1e9 - time.time()), 2)
                # Not before --heartbeat seconds of silence.
                self.assertGreaterEqual(time.time() - t0, 0.15)
                # After a datagram, heartbeats resume.
                self.sender().sendto(b"x", ("127.0.0.1", port))
                self.assertEqual(r.record().kind, DATAGRAM)
                self.assertEqual(r.record(timeout=3).kind, HEARTBEAT)

    def test_idle_exit(self):
        port = free_port()
        r = self.started("--addr", "127.0.0.1", "--port", port,
                         "--heartbeat", 0.1, "--idle-exit", 0.5)
        self.sender().sendto(b"x", ("127.0.0.1", port))
        self.assertEqual(r.datagram().payload, b"x")
        self.assertEqual(r.proc.wait(timeout=TIMEOUT), 0)
        self.assertEqual(r.proc.stderr.read(), b"")

    def test_drops_counted(self):
        # Freeze the relay, overflow its (tiny) socket buffer, thaw it: every
        # datagram sent is either delivered or counted as dropped, and the
        # heartbeat after the backlog reports the final count.
        for path in PATHS:
            with self.subTest(path=path):
                port = free_port()
                r = self.started("--addr", "127.0.0.1", "--port", port,
                                 "--rcvbuf", 1, "--heartbeat", 0.2, *path)
                s = self.sender()
                sent = 300
                os.kill(r.proc.pid, signal.SIGSTOP)
                try:
                    for i in range(sent):
                        s.sendto(struct.pack("!I", i) + b"p" * 200,
                                 ("127.0.0.1", port))
                finally:
                    os.kill(r.proc.pid, signal.SIGCONT)
                got = []
                while True:
                    rec = r.record()
                    if rec.kind == HEARTBEAT and got:
                        break
                    if rec.kind == DATAGRAM:
                        got.append(rec)
                self.assertGreater(rec.drops, 0)
                self.assertEqual(len(got) + rec.drops, sent)
                seqs = [struct.unpack("!I", g.payload[:4])[0] for g in got]
                self.assertEqual(seqs, sorted(seqs))
                self.assertLessEqual(max(g.drops for g in got), rec.drops)
                # The next datagram carries the counter in its SO_RXQ_OVFL.
                s.sendto(b"after", ("127.0.0.1", port))
                nxt = r.datagram()
                self.assertEqual((nxt.payload, nxt.drops),
                                 (b"after", rec.drops))

    def stamping_on_arrival(self):
        """Linux turns receive timestamps on asynchronously (a workqueue) when
        the first socket asks, and stamps a datagram that arrived before that
        when it is read. Hold a socket that asks for the whole test, and wait
        until a probe shows stamps taken on arrival."""
        s = self.sender()
        s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            s.sendto(b"probe", s.getsockname())
            time.sleep(0.05)  # the gap being measured, not a sync
            _, anc, _, _ = s.recvmsg(16, 256)
            read = time.time()
            for lvl, typ, c in anc:
                if (lvl, typ) == (socket.SOL_SOCKET, 35):
                    sec, nsec = struct.unpack("@ll", c[:16])
                    if read - (sec + nsec / 1e9) >= 0.04:
                        return
        self.fail("the kernel never stamped a datagram on arrival")

    def test_time_is_kernel_arrival_time(self):
        # A datagram that waits in the socket while the relay is frozen
        # keeps the time it arrived, not the time the relay read it.
        self.stamping_on_arrival()
        for path in PATHS:
            with self.subTest(path=path):
                port = free_port()
                r = self.started("--addr", "127.0.0.1", "--port", port, *path)
                os.kill(r.proc.pid, signal.SIGSTOP)
                try:
                    sent = time.time()
                    self.sender().sendto(b"early", ("127.0.0.1", port))
                    time.sleep(0.5)  # the gap being measured, not a sync
                finally:
                    os.kill(r.proc.pid, signal.SIGCONT)
                rec = r.datagram()
                self.assertEqual(rec.payload, b"early")
                self.assertLess(abs(rec.time_ns / 1e9 - sent), 0.2)

    # -- errors and exits --------------------------------------------------

    def check_error(self, r, *words):
        out = r.read_all()
        self.assertEqual(r.proc.wait(timeout=TIMEOUT), 3)
        err = r.proc.stderr.read()
        self.assertEqual(out[:8], MAGIC)
        rec = Record(out[8:8 + REC.size], out[8 + REC.size:])
        self.assertEqual(rec.kind, ERROR)
        self.assertEqual(rec.family, 0)
        self.assertEqual(rec.length, len(rec.payload))
        msg = rec.payload.decode("utf-8")
        for w in words:
            self.assertIn(w, msg)
        self.assertTrue(msg.endswith("."), msg)
        self.assertEqual(err.decode().count("\n"), 1, err)
        return msg

    def test_port_in_use(self):
        for path in PATHS:
            with self.subTest(path=path):
                holder = self.sender()
                port = holder.getsockname()[1]
                r = self.start("--addr", "127.0.0.1", "--port", port, *path)
                self.check_error(r, str(port), "already in use")

    def test_address_not_on_collector(self):
        # 192.0.2.1 (TEST-NET-1) is not local: bind fails, nothing is sent.
        r = self.start("--addr", "192.0.2.1", "--port", free_port())
        self.check_error(r, "192.0.2.1", "not an address of the collector")

    def test_host_name_refused(self):
        r = self.start("--addr", "localhost", "--port", free_port())
        self.check_error(r, "localhost", "not a numeric IP address")

    def test_bad_argument_is_an_error_record(self):
        r = self.start("--port", "not-a-number")
        self.check_error(r, "not-a-number")

    def test_unprivileged(self):
        # As a plain user: SO_RCVBUFFORCE is refused (SO_RCVBUF is used),
        # a high port works, port 1 is an error record.
        u = unprivileged()
        if u is None:
            self.skipTest("root without setpriv")
        prefix, python = u
        for path in PATHS:
            with self.subTest(path=path):
                self.check_roundtrip("127.0.0.1", socket.AF_INET, "127.0.0.1",
                                     4, path, python=python, prefix=prefix)
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            if int(f.read()) <= 1:
                self.skipTest("port 1 is not privileged on this host")
        r = self.start("--addr", "127.0.0.1", "--port", 1, python=python,
                       prefix=prefix)
        self.check_error(r, "port 1 ", "1024")

    def test_stdout_closed_exits_quietly(self):
        for path in PATHS:
            with self.subTest(path=path):
                port = free_port()
                r = self.started("--addr", "127.0.0.1", "--port", port,
                                 "--heartbeat", 0.2, *path)
                r.proc.stdout.close()
                self.assertEqual(r.proc.wait(timeout=5), 0)
                self.assertEqual(r.proc.stderr.read(), b"")

    def test_stdout_closed_while_busy(self):
        port = free_port()
        r = self.started("--addr", "127.0.0.1", "--port", port,
                         "--heartbeat", 5)
        s = self.sender()
        s.sendto(b"a" * 1000, ("127.0.0.1", port))
        r.datagram()
        r.proc.stdout.close()
        deadline = time.time() + TIMEOUT
        while r.proc.poll() is None and time.time() < deadline:
            s.sendto(b"a" * 1000, ("127.0.0.1", port))
            time.sleep(0.01)
        self.assertEqual(r.proc.wait(timeout=1), 0)
        self.assertEqual(r.proc.stderr.read(), b"")

    def test_sigterm_exits_quietly(self):
        r = self.started("--addr", "127.0.0.1", "--port", free_port())
        r.proc.terminate()
        self.assertEqual(r.proc.wait(timeout=5), 0)
        self.assertEqual(r.proc.stderr.read(), b"")

    # -- the two receive paths agree ---------------------------------------

    def check_paths_identical(self, addr, family, sender_addr, extra=()):
        sizes = [0, 1, 8, 50, 128, 1400, 1500, 8950, 9001, 65507 - 40]
        p1, p2 = free_port(family, sender_addr), free_port(family, sender_addr)
        fast = self.started("--addr", addr, "--port", p1, *extra)
        slow = self.started("--addr", addr, "--port", p2, "--no-mmsg", *extra)
        s = self.sender(family, sender_addr)
        recs = {}
        for relay, port in ((fast, p1), (slow, p2)):
            for i, n in enumerate(sizes):
                s.sendto(bytes([i]) * n, (sender_addr, port))
            recs[port] = [relay.datagram() for _ in sizes]
        self.assertEqual([r.key() for r in recs[p1]],
                         [r.key() for r in recs[p2]])
        # The fast path wrote batches (kind 4), the fallback datagram records.
        self.assertGreater(fast.parser.batches, 0)
        self.assertEqual(slow.parser.batches, 0)
        snap = int(extra[1]) if extra else 65535
        self.assertEqual([r.length for r in recs[p1]],
                         [min(n, snap) for n in sizes])
        for recs_ in recs.values():
            stamps = [r.time_ns for r in recs_]
            self.assertEqual(stamps, sorted(stamps))

    def test_paths_identical_ipv4(self):
        self.check_paths_identical("127.0.0.1", socket.AF_INET, "127.0.0.1")

    def test_paths_identical_snaplen(self):
        self.check_paths_identical("127.0.0.1", socket.AF_INET, "127.0.0.1",
                                   ("--snaplen", "100"))

    @unittest.skipUnless(have_ipv6(), "no IPv6")
    def test_paths_identical_ipv6(self):
        self.check_paths_identical("::1", socket.AF_INET6, "::1")

    @unittest.skipUnless(have_ipv6(), "no IPv6")
    def test_paths_identical_mapped(self):
        self.check_paths_identical("::ffff:127.0.0.1", socket.AF_INET,
                                   "127.0.0.1")

    # -- many datagrams ----------------------------------------------------

    def test_many_datagrams_in_order(self):
        # 20000 datagrams of varying length, sent in windows of 500 that
        # the relay must have written out before the next window is sent,
        # so nothing may be dropped.
        total, window = 20000, 500
        for path in PATHS:
            with self.subTest(path=path):
                port = free_port()
                r = self.started("--addr", "127.0.0.1", "--port", port, *path)
                s = self.sender()
                seen = 0
                for start in range(0, total, window):
                    for i in range(start, start + window):
                        s.sendto(struct.pack("!I", i) + b"z" * (i % 97),
                                 ("127.0.0.1", port))
                    for i in range(start, start + window):
                        rec = r.datagram()
                        self.assertEqual(struct.unpack("!I", rec.payload[:4])[0], i)
                        self.assertEqual(rec.length, 4 + i % 97)
                        self.assertEqual(rec.drops, 0)
                        seen += 1
                self.assertEqual(seen, total)

    # -- compression (the Session Manager path) ------------------------------

    def test_zlib_stream_carries_the_same_records(self):
        # The same datagrams through a plain and a --zlib relay: after inflating, the
        # records are the same (but the receive times), in order; the compressed stream
        # is smaller; each write is flushed, so nothing waits in the compressor.
        datagrams = [b"\x08\x00\x00\x00\x00\x10\x92\x00" + bytes([i % 7]) * 60
                     + struct.pack("!I", i) for i in range(300)]
        got = {}
        s = self.sender()
        for mode in ([], ["--zlib", "6"]):
            with self.subTest(mode=mode):
                port = free_port()
                r = self.start("--addr", "127.0.0.1", "--port", port,
                               "--heartbeat", 5, *mode)
                self.assertEqual(r.header(), MAGIC_Z if mode else MAGIC)
                for d in datagrams:
                    s.sendto(d, ("127.0.0.1", port))
                z = zlib.decompressobj() if mode else None
                plain, wire = b"", 0
                records, parser = [], Parser()
                while len(records) < len(datagrams):
                    chunk = r.read_exact(1)
                    r.buf, chunk = b"", chunk + r.buf
                    wire += len(chunk)
                    plain += z.decompress(chunk) if z else chunk
                    recs, used = parser.parse(plain)
                    records += [x for x in recs if x.kind != HEARTBEAT]
                    plain = plain[used:]
                self.assertEqual([x.payload for x in records], datagrams)
                got[bool(mode)] = ([x.key() for x in records], wire)
        self.assertEqual(got[True][0], got[False][0])
        self.assertLess(got[True][1], got[False][1] / 2,
                        "repetitive records compress")

    def test_zlib_level_is_checked(self):
        r = self.start("--port", free_port(), "--zlib", "12")
        self.assertEqual(r.header(), MAGIC)
        rec = r.record()
        self.assertEqual(rec.kind, ERROR)
        self.assertIn(b"--zlib", rec.payload)

    # -- the file itself ---------------------------------------------------

    def test_file_small_and_compiles(self):
        size = os.path.getsize(RELAY)
        self.assertLess(size, 16384, "EC2 user data limit is 16 KB")
        with tempfile.TemporaryDirectory() as d:
            py_compile.compile(RELAY, cfile=os.path.join(d, "relay.pyc"),
                               doraise=True)

    def test_python36_syntax_and_stdlib_only(self):
        # relay.py, and the on-host part awsvpc sends before it (which also needs pwd).
        onhost = os.path.join(os.path.dirname(RELAY), "onhost.py")
        for path, extra in ((RELAY, set()), (onhost, {"pwd"})):
            with self.subTest(path=os.path.basename(path)):
                self.check_python36_stdlib(path, extra)

    def check_python36_stdlib(self, path, extra):
        with open(path) as f:
            src = f.read()
        # Rejects walrus, positional-only parameters, match, etc.
        tree = ast.parse(src, feature_version=(3, 6))
        mods = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                mods.add(node.module.split(".")[0])
        allowed = {"argparse", "ctypes", "errno", "fcntl", "os", "select", "signal",
                   "socket", "struct", "sys", "time", "zlib"} | extra
        self.assertLessEqual(mods, allowed)
        for newer in ("time_ns", "dataclasses", "capture_output",
                      "from __future__ import annotations"):
            self.assertNotIn(newer, src)


if __name__ == "__main__":
    unittest.main()
