#!/usr/bin/env python3
"""Builds seed corpora for the fuzz targets from ../shared/testdata (read, never copied into
the repository), from a capture of the namespace testbed when there is one, and from
known-good protocol examples. Usage: seeds.py OUTDIR [TESTBED_DIR]

TESTBED_DIR holds what tests/testbed/selftest.sh keeps: mirror.pcap (the VXLAN datagrams, VNI
4242, the decap target's mirror source) and direct.pcap (the same frames taken on the ENI)."""
import os, struct, sys, zlib

out = sys.argv[1]
testbed = sys.argv[2] if len(sys.argv) > 2 else None
testdata = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "testdata")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pcap_packets(data):
    """(linktype, frames) of a little- or big-endian classic pcap."""
    magic = data[:4]
    e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link = struct.unpack(e + "I", data[20:24])[0]
    off, frames = 24, []
    while off + 16 <= len(data):
        incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return link, frames


def udp_payload(frame):
    if len(frame) < 14 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != 17:
        return None
    udp = ip[ihl:]
    return struct.unpack(">H", udp[2:4])[0], udp[8:]


def pcapng(link, frames, tsresol, endian):
    """The frames as a pcapng section: SHB, one IDB with if_tsresol, EPBs, a last SPB."""
    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        n = struct.pack(endian + "I", 12 + len(body))
        return struct.pack(endian + "I", kind) + n + body + n

    shb = block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack(endian + "HHI", link, 0, 65535)
                + struct.pack(endian + "HHB3x", 9, 1, tsresol) + struct.pack(endian + "HH", 0, 0))
    ts = 1_700_000_000 * 10 ** (tsresol & 0x7F) if tsresol < 0x80 else 1_700_000_000 << (tsresol & 0x7F)
    epbs = b"".join(block(6, struct.pack(endian + "IIIII", 0, (ts + i) >> 32, (ts + i) & 0xFFFFFFFF,
                                          len(f), len(f)) + f)
                    for i, f in enumerate(frames[:-1]))
    spb = block(3, struct.pack(endian + "I", len(frames[-1])) + frames[-1]) if frames else b""
    return shb + idb + epbs + spb


pcaps = [(name, open(os.path.join(testdata, name), "rb").read())
         for name in sorted(os.listdir(testdata)) if name.endswith(".pcap")]
inner_frames = []
if testbed and os.path.isfile(os.path.join(testbed, "mirror.pcap")):
    pcaps.append(("testbed-mirror.pcap", open(os.path.join(testbed, "mirror.pcap"), "rb").read()))
    inner_frames = pcap_packets(open(os.path.join(testbed, "direct.pcap"), "rb").read())[1]

for name, data in pcaps:
    put("capture_file", name, data)
    link, frames = pcap_packets(data)
    # pcapng (pcap-file's reader): microseconds little-endian, nanoseconds big-endian.
    put("capture_file", name + "ng", pcapng(link, frames[:12], 6, "<"))
    put("capture_file", name + "ng-be-ns", pcapng(link, frames[:12], 9, ">"))
    datagrams = []
    for i, f in enumerate(frames[:20] if name != "testbed-mirror.pcap" else frames):
        p = udp_payload(f)
        if p:
            port, payload = p
            # First byte selects the mode: bit 0 = GENEVE.
            put("decap", f"{name}-{i}", bytes([1 if port == 6081 else 0]) + payload)
            if port != 6081 and b"\xff" not in payload:
                datagrams.append(payload)
    if datagrams:
        # Bit 7: a batch of datagrams split at 0xff; bit 6: the source table limited to VNI
        # 4242; bit 5: a snaplen of the low five bits.
        put("decap", f"{name}-batch", bytes([0xC0]) + b"\xff".join(datagrams[:8]))
        put("decap", f"{name}-snaplen", bytes([0x3C]) + datagrams[0])

argvs = [
    ["--extcap-interfaces", "--extcap-version=4.0"],
    ["--extcap-config", "--extcap-interface", "awsvpc", "--extcap-reload-option", "eni", "--amazon-dns", "false"],
    ["--capture", "--extcap-interface", "awsvpc", "--fifo", "/tmp/x", "--collector", "local",
     "--listen-port", "4789", "--source", "5569041=eni-0abc,02:85:69:c2:ab:02", "--vni", "5569041",
     "--snaplen", "128", "--log-level", "debug"],
    ["--extcap-capture-filter", "tcp port 22", "--extcap-interface", "awsvpc"],
]
for i, a in enumerate(argvs):
    put("extcap_args", f"argv-{i}", b"\0".join(x.encode() for x in a))

put("control_frames", "initialized", b"T\x00\x00\x02\x00\x00")
put("control_frames", "set-and-log", b"T\x00\x00\x04\x02\x01ok" + b"T\x00\x00\x0e\x00\x02second line\n")

# Relay streams: the decap seeds' datagrams as the relay frames them, plus a heartbeat and
# an error record.
def record(kind, payload, family=4, addr=b"\x0a\x00\x00\x07" + b"\0" * 12):
    return struct.pack("!BBHIQHH16s", kind, family, len(payload), 3, 1_700_000_000_000_000_000,
                       4789, 0, addr) + payload

stream = b"AWSVPCR\x01" + record(2, b"", 0, b"\0" * 16)
decap_dir = os.path.join(out, "decap")
names = sorted(os.listdir(decap_dir)) if os.path.isdir(decap_dir) else []
for name in names[:10] + [n for n in names if n.startswith("testbed-")][:10]:
    stream += record(1, open(os.path.join(decap_dir, name), "rb").read()[1:])
put("relay_stream", "stream", bytes([5]) + stream)
# The same records as relay.py --zlib writes them, for the fuzzer to mutate the zlib itself.
z = zlib.compressobj(6)
wire = b"AWSVPCZ\x01"
for i in range(0, len(stream) - 8, 700):
    wire += z.compress(stream[8:][i:i + 700]) + z.flush(zlib.Z_SYNC_FLUSH)
put("relay_stream", "zlib-raw", bytes([9]) + wire)
# Batches (kind 4) as relay.py's recvmmsg path writes them: lengths, Linux sockaddrs,
# control messages (SCM_TIMESTAMPNS, then SO_RXQ_OVFL on some), datagrams; on an IPv4
# and on an IPv6 socket (an IPv4-mapped and an IPv6 source).
def batch(datagrams, family=4):
    k, out = len(datagrams), b""
    names, ctls = b"", b""
    for i, d in enumerate(datagrams):
        if family == 4:
            names += struct.pack("<H", 2) + struct.pack("!H", 4789) + b"\x0a\x00\x00\x07" + b"\0" * 8
        else:
            addr = b"\0" * 10 + b"\xff\xff\x0a\x00\x00\x07" if i % 2 else b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x09"
            names += struct.pack("<H", 10) + struct.pack("!H", 4789) + b"\0" * 4 + addr + b"\0" * 4
        c = struct.pack("<Qiiqq", 32, 1, 35, 1_700_000_000, i)
        if i % 3 == 2:
            c += struct.pack("<QiiI4x", 20, 1, 40, i)
        ctls += c.ljust(56, b"\0")
    head = struct.pack("!BBHIQHH16s", 4, family, k, 0, 1_700_000_000_000_000_000, 0, 0, b"")
    out = head + struct.pack("<%dI" % k, *map(len, datagrams)) + names + ctls
    return out + b"".join(datagrams)

grams = [open(os.path.join(decap_dir, n), "rb").read()[1:] for n in names[:12]] or [b"\0" * 60] * 6
half = max(1, len(grams) // 2)
put("relay_stream", "batch", bytes([5]) + b"AWSVPCR\x01" + batch(grams[:half]) + record(2, b"", 0, b"\0" * 16)
    + batch(grams[half:] or grams, 6))
z = zlib.compressobj(6)
put("relay_stream", "batch-zlib", bytes([9]) + b"AWSVPCZ\x01" + z.compress(batch(grams)) + z.flush(zlib.Z_SYNC_FLUSH))
# A login banner longer than the decoder searches for the stream header, in 7-byte reads.
put("relay_stream", "banner", bytes([1]) + b"Last login: Mon Dec  1 15:20:49 2026 from 192.0.2.7\n" * 1300)
put("relay_stream", "error", bytes([1]) + b"AWSVPCR\x01" + record(3, b"UDP port 4789 is already in use.", 0, b"\0" * 16))

# Capture filters, as typed in Wireshark, for the narrowing into mirror rules.
filters = [
    "tcp port 443", "host 10.0.0.1 and (udp portrange 5000-5100 or icmp)", "not port 22",
    "src net 10.0.0.0/8 and dst port 53", "ip6 and tcp[tcpflags] & tcp-syn != 0",
    "vlan and host 192.0.2.1", "icmp6 or (ip proto 47)", "greater 1000 and udp",
    "net 2001:db8::/32 or host 198.51.100.7", "(tcp or udp) and not (port 80 or port 8080)",
]
# The first byte is the rule budget per direction (mod 12); after a NUL, a frame for the
# evaluator: the testbed's frames taken on the ENI (ARP, ND, ICMP, TCP, UDP over v4 and v6).
for i, f in enumerate(filters):
    frame = b"\0" + inner_frames[i * 4 % len(inner_frames)] if inner_frames else b""
    put("filter_narrow", f"filter-{i}", bytes([10 - i % 9]) + f.encode() + frame)
