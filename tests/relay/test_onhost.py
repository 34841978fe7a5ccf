"""The relay's on-host mode (--on-host MAC): a packet socket on the ENI's device, the
capture filter attached in the kernel, privileges dropped, frames wrapped in VXLAN records.

Two network namespaces of this test's own joined by a veth pair play the instance (A,
whose device has the "ENI's" MAC) and a peer (B). Needs root, ip(8) and tcpdump (which
compiles the filters, as libpcap does for awsvpc); skipped otherwise.
"""
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import unittest

from test_relay import DATAGRAM, MAGIC, RELAY, Relay, TIMEOUT

ONHOST = os.path.join(os.path.dirname(RELAY), "onhost.py")

MAC = "02:00:c0:00:09:01"
A_IP, B_IP = "192.0.2.11", "192.0.2.12"
VNI = 77
SRC = "10.0.0.5"


def usable():
    return (os.geteuid() == 0 and shutil.which("ip") and shutil.which("tcpdump")
            and os.path.isdir("/sys/class/net"))


def sh(*cmd):
    subprocess.run(cmd, check=True, timeout=TIMEOUT, stdout=subprocess.DEVNULL)


@unittest.skipUnless(usable(), "needs root, ip and tcpdump")
class OnHostTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # What awsvpc sends for an on-host capture: onhost.py, then relay.py.
        cls.tmp = tempfile.TemporaryDirectory()
        cls.source = os.path.join(cls.tmp.name, "relay-on-host.py")
        with open(cls.source, "w") as out:
            for part in (ONHOST, RELAY):
                with open(part) as f:
                    out.write(f.read() + "\n")
        tag = "rly%d" % (os.getpid() % 100000)
        cls.a, cls.b = tag + "a", tag + "b"
        for ns in (cls.a, cls.b):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "va", "netns", cls.a, "type", "veth", "peer",
           "name", "vb", "netns", cls.b)
        sh("ip", "-n", cls.a, "link", "set", "va", "address", MAC)
        for ns, dev, ip in ((cls.a, "va", A_IP), (cls.b, "vb", B_IP)):
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    @classmethod
    def tearDownClass(cls):
        for ns in (cls.a, cls.b):
            subprocess.run(["ip", "netns", "del", ns])
        cls.tmp.cleanup()

    def setUp(self):
        self.relays = []
        self.procs = []

    def tearDown(self):
        for r in self.relays:
            r.close()
        for p in self.procs:
            p.kill()
            p.wait()

    def relay(self, *args):
        r = Relay("--on-host", MAC, "--vni", str(VNI), "--src-ip", SRC,
                  "--heartbeat", "0.2", *args,
                  prefix=["ip", "netns", "exec", self.a], path=self.source)
        self.relays.append(r)
        self.assertEqual(r.header(), MAGIC)
        return r

    def in_b(self, code):
        """Runs Python `code` in namespace B to completion."""
        subprocess.run(["ip", "netns", "exec", self.b, "python3", "-c", code],
                       check=True, timeout=TIMEOUT)

    def send_udp(self, port, payloads, sport=0):
        self.in_b("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                  "s.bind(('%s',%d))\n" % (B_IP, sport) +
                  "".join("s.sendto(%r,('%s',%d))\n" % (p, A_IP, port)
                          for p in payloads))

    def frames_until(self, r, marker):
        """The inner frames of the datagram records, up to one containing `marker`."""
        out = []
        while True:
            rec = r.datagram()
            self.assertEqual(rec.kind, DATAGRAM)
            body = rec.payload
            self.assertEqual(body[:8], b"\x08\0\0\0" + struct.pack("!I", VNI << 8))
            self.assertEqual(rec.src_addr[:4], socket.inet_aton(SRC))
            self.assertEqual(rec.src_port, 4789)
            out.append(body[8:])
            if marker in body:
                return out

    def test_frames_both_ways_as_the_kernel_saw_them_and_root_dropped(self):
        r = self.relay("--drop-to", "nobody")
        with open("/proc/%d/status" % self.child_pid(r)) as f:
            uid = [l for l in f if l.startswith("Uid:")][0].split()[1:]
        self.assertEqual(set(uid), {"65534"}, "the relay runs as nobody")
        # Port 5000 is closed on A: each datagram gets an ICMP port unreachable back.
        self.send_udp(5000, [b"onhost-%d" % i for i in range(3)] + [b"end-1"])
        frames = self.frames_until(r, b"end-1")
        mac = bytes.fromhex(MAC.replace(":", ""))
        inbound = [f for f in frames if f[:6] == mac and b"onhost-" in f]
        outbound = [f for f in frames if f[6:12] == mac and f[23] == 1]
        self.assertEqual(len(inbound), 3, frames)
        self.assertGreaterEqual(len(outbound), 1, "ICMP unreachable, outgoing")

    def child_pid(self, r):
        # `ip netns exec` execs the relay: the process is the relay itself.
        return r.proc.pid

    def program(self, expr):
        p = subprocess.run(["ip", "netns", "exec", self.a, "tcpdump", "-ddd",
                            "-i", "va", expr], check=True, timeout=TIMEOUT,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return ",".join(p.stdout.decode().split("\n")).strip(",")

    def test_the_kernel_filter_lets_only_matching_frames_out(self):
        r = self.relay("--bpf", self.program("udp dst port 5000"))
        self.send_udp(5000, [b"keep-%d" % i for i in range(3)])
        self.send_udp(5001, [b"drop-%d" % i for i in range(3)])
        self.send_udp(5000, [b"end-2"])
        frames = self.frames_until(r, b"end-2")
        self.assertEqual(len(frames), 4, "3 kept and the marker, nothing else")
        self.assertTrue(all(b"keep-" in f or b"end-2" in f for f in frames))

    def test_no_frame_passes_before_the_filter_is_attached(self):
        # Frames flood A's device, none of them matching, while the relay starts: a packet
        # socket that receives from its creation queues them unfiltered until the filter
        # is attached (a start-up race that let a few foreign frames through).
        flood = subprocess.Popen(
            ["ip", "netns", "exec", self.b, "python3", "-c",
             "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             "s.sendto(b'flood',('%s',5001))\nprint('go',flush=True)\n"
             "while True:\n s.sendto(b'flood',('%s',5001))\n" % (A_IP, A_IP)],
            stdout=subprocess.PIPE)
        self.procs.append(flood)
        self.assertEqual(flood.stdout.readline(), b"go\n")
        for _ in range(3):
            r = self.relay("--bpf", self.program("udp dst port 5000"))
            self.send_udp(5000, [b"end-3"])
            frames = self.frames_until(r, b"end-3")
            self.assertEqual([b"end-3" in f for f in frames], [True], frames[:3])
            r.close()
            self.relays.remove(r)

    def test_its_own_transport_connection_is_left_out(self):
        # A TCP connection B:40001 -> A:5001, named as SSH_CONNECTION names its own.
        srv = subprocess.Popen(
            ["ip", "netns", "exec", self.a, "python3", "-c",
             "import socket\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,"
             "socket.SO_REUSEADDR,1)\nl.bind(('%s',5001))\nl.listen(1)\n"
             "print('up',flush=True)\nc,_=l.accept()\n"
             "while c.recv(65536):\n    pass\n" % A_IP],
            stdout=subprocess.PIPE)
        self.procs.append(srv)
        self.assertEqual(srv.stdout.readline().strip(), b"up")
        r = self.relay("--exclude", "%s 40001 %s 5001" % (B_IP, A_IP))
        self.in_b("import socket\nc=socket.socket()\nc.bind(('%s',40001))\n"
                  "c.connect(('%s',5001))\nc.sendall(b'transport'*1000)\nc.close()\n"
                  % (B_IP, A_IP))
        self.send_udp(5000, [b"end-3"])
        frames = self.frames_until(r, b"end-3")
        tcp = [f for f in frames if len(f) > 23 and f[12:14] == b"\x08\x00"
               and f[23] == 6]
        self.assertEqual(tcp, [], "no frame of the excluded connection")
        self.assertGreaterEqual(len(frames), 1)

    def test_relay_py_alone_refuses_on_host(self):
        r = Relay("--on-host", MAC, "--vni", "1",
                  prefix=["ip", "netns", "exec", self.a])
        self.relays.append(r)
        self.assertIn(b"sent without its on-host part", r.read_all())

    def test_a_missing_device_is_one_sentence(self):
        r = Relay("--on-host", "02:00:00:00:00:99", "--vni", "1",
                  prefix=["ip", "netns", "exec", self.a], path=self.source)
        self.relays.append(r)
        out = r.read_all()
        self.assertIn(b"no network device of this instance has the ENI's MAC"
                      b" 02:00:00:00:00:99", out)


class FrameParserTest(unittest.TestCase):
    """onhost.py's frame_conn reads frames off the wire: it must never raise."""

    def test_never_raises_on_any_frame(self):
        import random
        ns = {}
        with open(ONHOST) as f:
            exec(compile(f.read(), ONHOST, "exec"), ns)
        frame_conn = ns["frame_conn"]
        rng = random.Random(15)
        seeds = [bytes(14), b"\0" * 12 + b"\x08\x00" + bytes([0x45]) + bytes(40),
                 b"\0" * 12 + b"\x86\xdd" + bytes(60),
                 b"\0" * 12 + b"\x81\x00\0\0\x08\x00" + bytes(44)]
        n = int(os.environ.get("ONHOST_FUZZ_RUNS", "200000"))
        for _ in range(n):
            f = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(4)):
                if f and rng.random() < 0.7:
                    f[rng.randrange(len(f))] = rng.randrange(256)
                else:
                    del f[rng.randrange(len(f) + 1):]
            frame_conn(bytes(f))


if __name__ == "__main__":
    unittest.main()
