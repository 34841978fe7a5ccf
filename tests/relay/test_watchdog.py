"""The collector watchdog (src/relay/watchdog.sh), as the collector's user data runs it: it
must power the instance off once no relay has held the mirror port for a while, and never
while one does. `shutdown` is a fake on PATH that records its arguments."""
import os
import select
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WATCHDOG = os.path.join(HERE, "..", "..", "src", "relay", "watchdog.sh")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Watchdog(unittest.TestCase):
    def start(self, port, grace, idle):
        d = tempfile.mkdtemp()
        self.marker = os.path.join(d, "shutdown-args")
        fake = os.path.join(d, "shutdown")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\necho "$@" > %s\n' % self.marker)
        os.chmod(fake, 0o755)
        env = dict(os.environ, PATH=d + os.pathsep + os.environ["PATH"],
                   AWSVPC_PORT=str(port), AWSVPC_GRACE=str(grace),
                   AWSVPC_IDLE=str(idle), AWSVPC_STEP="0.1")
        self.p = subprocess.Popen(["sh", WATCHDOG], env=env,
                                  stdout=subprocess.PIPE, text=True)
        self.addCleanup(self.p.stdout.close)
        self.addCleanup(self.p.wait)
        self.addCleanup(self.p.kill)

    def line(self, timeout):
        """The watchdog's next line, or "" if it says nothing for `timeout` s."""
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        return self.p.stdout.readline() if r else ""

    def powered_off(self):
        self.assertIn("powering off", self.line(10))
        self.assertEqual(self.p.wait(5), 0)
        with open(self.marker) as f:
            self.assertEqual(f.read().split(), ["-h", "now"])

    def test_powers_off_after_the_grace_period_without_a_relay(self):
        started = time.monotonic()
        self.start(free_port(), grace=1, idle=60)
        self.powered_off()
        self.assertGreaterEqual(time.monotonic() - started, 1.0)

    def held_then_released(self, family, addr):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((addr, 0))
        self.start(s.getsockname()[1], grace=1, idle=1)
        self.assertIn("relay running", self.line(10))
        # Three idle periods and more with the port held: no power-off, nothing said.
        self.assertEqual(self.line(3.5), "")
        self.assertFalse(os.path.exists(self.marker))
        s.close()
        self.assertIn("relay stopped", self.line(10))
        self.powered_off()

    def test_never_while_an_ipv4_relay_holds_the_port(self):
        self.held_then_released(socket.AF_INET, "0.0.0.0")

    def test_never_while_an_ipv6_relay_holds_the_port(self):
        self.held_then_released(socket.AF_INET6, "::")


if __name__ == "__main__":
    unittest.main()
