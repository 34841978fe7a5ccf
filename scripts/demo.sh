#!/usr/bin/env bash
# The main job on an embedded default, no AWS account needed: build awsvpc, install it as a
# Wireshark extcap (in a temporary HOME, so your own Wireshark profile is untouched), mirror
# real traffic in network namespaces with tc + kernel VXLAN exactly as AWS Traffic Mirroring
# sends it, and capture it live through tshark -i awsvpc. Run as root (namespaces).
#   bash scripts/demo.sh                 # ~1 minute on a built tree; asks sudo if not root
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/as-root.sh
as_root "the demo (it creates network namespaces)" "$@"
bash scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/awsvpc-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/awsvpc"

work=$(mktemp -d)
export TESTBED_PREFIX=awsdemo
tb=tests/testbed/netns.sh
cleanup() { bash "$tb" down >/dev/null 2>&1 || true; kill "${ts:-}" "${td:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

HOME="$work" "$bin" install --symlink
bash "$tb" up
mac=$(bash "$tb" mac)
echo "tshark -D: $(HOME="$work" tshark -D 2>/dev/null | grep awsvpc)"

# tshark in the collector namespace, where the kernel VXLAN mirror arrives on UDP 4789.
HOME="$work" ip netns exec "$TESTBED_PREFIX-col" tshark -i awsvpc -l \
  -o extcap.awsvpc.collector:local \
  -o "extcap.awsvpc.source:4242=eni-demo,$mac" \
  -o extcap.awsvpc.loglevel:debug -o "extcap.awsvpc.logfile:$work/awsvpc.log" \
  -w "$work/awsvpc.pcapng" -P \
  -T fields -E separator=' ' -e frame.number -e frame.interface_name \
  -e frame.packet_flags_direction -e _ws.col.Protocol -e _ws.col.Info 2>"$work/tshark.err" &
ts=$!
until grep -qs 'listening on' "$work/awsvpc.log"; do kill -0 $ts || { cat "$work/tshark.err"; exit 1; }; sleep 0.1; done
# The oracle: tcpdump directly on the mirrored veth.
ip netns exec "$TESTBED_PREFIX-src" tcpdump -U --immediate-mode -n -i vs -w "$work/direct.pcap" 2>"$work/tcpdump.err" &
td=$!
until grep -qs 'listening on' "$work/tcpdump.err"; do sleep 0.1; done

bash "$tb" traffic
kill -INT $td; wait $td || true
want=$(tshark -r "$work/direct.pcap" 2>/dev/null | wc -l)
until [[ $(grep -o '[0-9]* packets,' "$work/awsvpc.log" | tail -1 | cut -d' ' -f1) -ge $want ]]; do sleep 0.1; done
kill -INT $ts; wait $ts || true

echo
echo "flags: 0x1 = inbound to the mirrored ENI, 0x2 = outbound"
# One line of hex per frame; sorted, because frames crossing on the wire in opposite
# directions may reach the mirror in either order.
hexes() {
  tshark -r "$1" -x -o tcp.desegment_tcp_streams:FALSE -o ip.defragment:FALSE 2>/dev/null |
    awk 'BEGIN{RS="";ORS="\n"}{gsub(/\n/," ");print}' | sort
}
same=$(cmp -s <(hexes "$work/awsvpc.pcapng") <(hexes "$work/direct.pcap") && echo yes || echo NO)
echo "awsvpc delivered $(tshark -r "$work/awsvpc.pcapng" 2>/dev/null | wc -l) frames; tcpdump on the mirrored veth saw $want; the same frames, byte for byte: $same"
