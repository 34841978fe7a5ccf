#!/usr/bin/env python3
"""UDP echo server for the awsvpc testbed (stdlib only): sends every datagram back unchanged.

Usage: udp_echo.py [--bind 192.0.2.2] [--port 9999] [--ready-file PATH]
"""
import argparse
import os
import signal
import socket
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="192.0.2.2")
    ap.add_argument("--port", type=int, default=9999)
    ap.add_argument("--ready-file")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(tmp, args.ready_file)
    while True:
        try:
            msg, peer = sock.recvfrom(65535)
        except InterruptedError:
            continue
        sock.sendto(msg, peer)


if __name__ == "__main__":
    main()
