#!/usr/bin/env bash
# End-to-end check of the testbed itself (not of the extcap): bring it up, capture directly on vs
# and the VXLAN mirror on uc, run `netns.sh traffic`, and require every directly captured frame to
# arrive, byte for byte and in the same order, as the inner frame of a mirrored VXLAN packet.
#
# Usage: selftest.sh [OUTDIR]   (default OUTDIR: a new temp dir; pcaps are kept there)
# Uses its own prefix (TESTBED_PREFIX, default awsvpcst) so it does not disturb a running testbed.
# Needs root, tcpdump, and what netns.sh needs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export TESTBED_PREFIX=${TESTBED_PREFIX:-awsvpcst}
export TESTBED_STATE=${TESTBED_STATE:-/tmp/${TESTBED_PREFIX}-testbed}
PORT=${TESTBED_PORT:-4789}
VNI=${TESTBED_VNI:-4242}
OUT=${1:-$(mktemp -d /tmp/awsvpc-selftest.XXXXXX)}
mkdir -p "$OUT"
TB="$HERE/netns.sh"
P=$TESTBED_PREFIX

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    "$TB" down || true
}
trap cleanup EXIT

"$TB" up >"$OUT/up.txt"
cat "$OUT/up.txt"

# --immediate-mode: without it tcpdump (TPACKET_V3) only hands packets over when a ring block
# retires (up to 1 s later), and frames still in the ring when SIGINT arrives are lost.
ip netns exec "$P-col" tcpdump -U --immediate-mode -n -i uc -w "$OUT/mirror.pcap" "udp port $PORT" 2>"$OUT/mirror.err" &
pids+=($!)
ip netns exec "$P-src" tcpdump -U --immediate-mode -n -i vs -w "$OUT/direct.pcap" 2>"$OUT/direct.err" &
pids+=($!)
for f in "$OUT/mirror.err" "$OUT/direct.err"; do
    for ((i = 0; i < 100; i++)); do grep -q 'listening on' "$f" && break; sleep 0.05; done
    grep -q 'listening on' "$f" || { echo "selftest: tcpdump did not start: $(cat "$f")" >&2; exit 1; }
done

"$TB" traffic

# Settle: both pcaps unchanged for 0.3 s (at most 4 s).
last= stable=0
for ((i = 0; i < 40 && stable < 3; i++)); do
    cur=$(stat -c %s "$OUT/mirror.pcap" "$OUT/direct.pcap" | tr '\n' ' ')
    if [[ $cur == "$last" ]]; then ((++stable)); else stable=0 last=$cur; fi
    sleep 0.1
done
for p in "${pids[@]}"; do kill -INT "$p"; done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()

python3 - "$OUT/direct.pcap" "$OUT/mirror.pcap" "$VNI" <<'EOF'
import struct, sys

def frames(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        sys.exit("%s: not a little-endian pcap file" % path)
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, caplen, origlen = struct.unpack("<IIII", data[off:off + 16])
        out.append((data[off + 16:off + 16 + caplen], origlen))
        off += 16 + caplen
    return out

direct = frames(sys.argv[1])
mirror = frames(sys.argv[2])
vni_want = int(sys.argv[3])
inner = []
for f, _ in mirror:
    ihl = (f[14] & 0x0F) * 4
    udp = 14 + ihl
    vx = f[udp + 8:udp + 16]
    if vx[0] != 0x08 or int.from_bytes(vx[4:7], "big") != vni_want:
        sys.exit("unexpected VXLAN header %s" % vx.hex())
    inner.append(f[udp + 16:])
d = [f for f, _ in direct]
trunc = sum(1 for f, o in direct if len(f) != o)
print("direct frames: %d, mirrored frames: %d, largest: %d bytes" % (len(d), len(inner), max(map(len, d), default=0)))
if trunc:
    sys.exit("%d direct frames truncated" % trunc)
if d == inner:
    print("OK: identical bytes, same order")
    sys.exit(0)
missing = [i for i, f in enumerate(d) if f not in inner]
extra = [i for i, f in enumerate(inner) if f not in d]
print("MISMATCH: direct-only frames %s, mirror-only frames %s, same multiset: %s"
      % (missing, extra, sorted(d) == sorted(inner)))
sys.exit(1)
EOF
echo "pcaps kept in $OUT"
