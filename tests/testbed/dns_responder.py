#!/usr/bin/env python3
"""Tiny authoritative-looking DNS responder for the awsvpc testbed (stdlib only).

Answers every standard query over UDP:
  * QTYPE A (or ANY), class IN  -> one A record, TTL 60, with --answer (default 192.0.2.53)
  * any other QTYPE             -> NOERROR with no answer (NODATA)
  * non-QUERY opcodes           -> NOTIMP
Malformed packets and responses are ignored. EDNS OPT records in the query are
dropped from the reply (ARCOUNT 0), which every client accepts.

Usage: dns_responder.py [--bind 192.0.2.2] [--port 53] [--answer 192.0.2.53] [--ready-file PATH]
"""
import argparse
import os
import signal
import socket
import struct
import sys


def parse_question(msg):
    """Return (end_offset_of_question, qtype, qclass) or None if malformed."""
    off = 12
    while True:
        if off >= len(msg):
            return None
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0:  # compression pointers never appear in a query's QNAME
            return None
        off += 1 + n
    if off + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    return off + 4, qtype, qclass


def build_reply(msg, answer_ip):
    if len(msg) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
    if flags & 0x8000:  # a response, not a query
        return None
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100
    rflags = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080  # QR AA RD(copied) RA
    if opcode != 0 or qdcount != 1:
        rcode = 4 if opcode != 0 else 1  # NOTIMP / FORMERR
        return struct.pack("!HHHHHH", qid, rflags | rcode, 0, 0, 0, 0)
    q = parse_question(msg)
    if q is None:
        return struct.pack("!HHHHHH", qid, rflags | 1, 0, 0, 0, 0)
    qend, qtype, qclass = q
    question = msg[12:qend]
    answers = b""
    ancount = 0
    if qtype in (1, 255) and qclass in (1, 255):
        answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(answer_ip)
        ancount = 1
    header = struct.pack("!HHHHHH", qid, rflags, 1, ancount, 0, 0)
    return header + question + answers


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="192.0.2.2")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--answer", default="192.0.2.53")
    ap.add_argument("--ready-file")
    args = ap.parse_args()
    socket.inet_aton(args.answer)  # validate early

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(tmp, args.ready_file)
    while True:
        try:
            msg, peer = sock.recvfrom(4096)
        except InterruptedError:
            continue
        try:
            reply = build_reply(msg, args.answer)
        except Exception:  # never die on a weird packet
            reply = None
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
