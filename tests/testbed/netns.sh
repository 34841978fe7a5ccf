#!/usr/bin/env bash
# awsvpc testbed: real traffic between two network namespaces, mirrored by tc into a kernel
# VXLAN device and delivered to a third "collector" namespace -- the same encapsulation AWS VPC
# Traffic Mirroring uses (VXLAN, flags 0x08, chosen VNI, UDP/4789).
#
#   netns.sh up        create namespaces, links, mirroring and servers (recreates if already up)
#   netns.sh mac       print the MAC address of vs (the mirrored "ENI")
#   netns.sh traffic   run a fixed, bounded mix of traffic from src to dst and wait for it to finish
#   netns.sh down      stop servers and delete the namespaces (idempotent)
#   netns.sh exec src|dst|col CMD...   run CMD inside one of the namespaces
#
# Environment: TESTBED_PREFIX (awsvpc), TESTBED_VNI (4242), TESTBED_PORT (4789),
#              TESTBED_STATE (/tmp/${TESTBED_PREFIX}-testbed), TESTBED_PYTHON (python3).
# Needs root, iproute2 (ip, tc, ss), python3; `traffic` also needs ping, curl and dig.
# Traffic never leaves the namespaces: only 192.0.2.0/24, 2001:db8::/64 and 198.51.100.0/24 are
# used, there are no default routes, and nothing is attached to the host's network.
set -euo pipefail

P=${TESTBED_PREFIX:-awsvpc}
VNI=${TESTBED_VNI:-4242}
PORT=${TESTBED_PORT:-4789}
STATE=${TESTBED_STATE:-/tmp/${P}-testbed}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

NS_SRC=${P}-src
NS_DST=${P}-dst
NS_COL=${P}-col

# Fixed, locally administered MACs so captures are reproducible (only unique per namespace pair).
MAC_VS=02:00:c0:00:02:01
MAC_VD=02:00:c0:00:02:02
MAC_US=02:00:c6:33:64:01
MAC_UC=02:00:c6:33:64:02

SRC4=192.0.2.1 DST4=192.0.2.2
SRC6=2001:db8::1 DST6=2001:db8::2
US4=198.51.100.1 UC4=198.51.100.2
HTTP4_PORT=8080 HTTP6_PORT=8081 DNS_PORT=53 ECHO_PORT=9999
DNS_ANSWER=192.0.2.53
UDP_LEN=1400

die() { echo "netns.sh: $*" >&2; exit 1; }

pick_python() {
    if [[ -n ${TESTBED_PYTHON:-} ]]; then
        echo "$TESTBED_PYTHON"
    elif [[ -x /usr/bin/python3 ]]; then
        echo /usr/bin/python3 # system python: no shim wrappers, starts fast inside netns
    else
        command -v python3 || die "python3 not found"
    fi
}

ns_exists() { [[ -e /run/netns/$1 ]]; }
nx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# nsysctl NS key=value... (quiet, fails loudly on unknown keys)
nsysctl() { local ns=$1; shift; nx "$ns" sysctl -q -w "$@" >/dev/null; }

# poll COND_CMD... up to N tenths of a second; returns 1 on timeout.
poll() {
    local tenths=$1; shift
    local i
    for ((i = 0; i < tenths; i++)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    "$@"
}

check_vxlan_params() {
    [[ $VNI =~ ^[0-9]+$ ]] && ((VNI < 16777216)) || die "TESTBED_VNI must be 0..16777215, got '$VNI'"
    [[ $PORT =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "TESTBED_PORT must be 1..65535, got '$PORT'"
    [[ $P =~ ^[A-Za-z0-9_.-]+$ ]] || die "TESTBED_PREFIX may only contain [A-Za-z0-9_.-], got '$P'"
}

# ---------------------------------------------------------------------------------------------
# down

# Processes of ours: anything inside our namespaces, plus recorded PIDs whose command line still
# names our state dir (covers a namespace deleted while its servers were still running).
kill_servers() {
    local pids=() pid ns
    for ns in "$NS_SRC" "$NS_DST" "$NS_COL"; do
        if ns_exists "$ns"; then
            while read -r pid; do [[ -n $pid ]] && pids+=("$pid"); done < <(ip netns pids "$ns" 2>/dev/null || true)
        fi
    done
    if [[ -d $STATE ]]; then
        local f
        for f in "$STATE"/*.pid; do
            [[ -e $f ]] || continue
            pid=$(<"$f")
            if [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] &&
                tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE"; then
                pids+=("$pid")
            fi
        done
    fi
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    all_gone() { local p; for p in "${pids[@]}"; do [[ -e /proc/$p ]] && return 1; done; return 0; }
    if ! poll 30 all_gone; then
        kill -KILL "${pids[@]}" 2>/dev/null || true
        poll 20 all_gone || echo "netns.sh: warning: some testbed processes did not exit: ${pids[*]}" >&2
    fi
}

cmd_down() {
    kill_servers
    local ns
    for ns in "$NS_SRC" "$NS_DST" "$NS_COL"; do
        if ns_exists "$ns"; then
            ip netns del "$ns" 2>/dev/null || ! ns_exists "$ns" || die "cannot delete namespace $ns"
        fi
    done
    rm -rf -- "$STATE"
}

# ---------------------------------------------------------------------------------------------
# up

# IPv6 stays enabled on vs/vd, but without router solicitations, RA processing, SLAAC, DAD or
# temporary addresses; MLD unsolicited-report retransmissions are squeezed into a few ms so
# they are over before `up` returns.
quiet_ipv6() {
    local ns=$1 dev=$2
    nsysctl "$ns" \
        "net.ipv6.conf.$dev.accept_ra=0" \
        "net.ipv6.conf.$dev.autoconf=0" \
        "net.ipv6.conf.$dev.router_solicitations=0" \
        "net.ipv6.conf.$dev.accept_dad=0" \
        "net.ipv6.conf.$dev.dad_transmits=0" \
        "net.ipv6.conf.$dev.use_tempaddr=0" \
        "net.ipv6.conf.$dev.mldv1_unsolicited_report_interval=1" \
        "net.ipv6.conf.$dev.mldv2_unsolicited_report_interval=1"
}

# Software checksums and segmentation on DEVs so captured frames look like real wire frames:
# complete TCP/UDP checksums and nothing bigger than the MTU (see nic_offload_off.py).
# gso_max_segs 1 is needed too: TCP always builds GSO skbs (segmented only after the tc hook).
no_offloads() { # NS PY DEV...
    local ns=$1 py=$2 dev; shift 2
    nx "$ns" "$py" "$HERE/nic_offload_off.py" "$@"
    for dev in "$@"; do ip -n "$ns" link set dev "$dev" gso_max_segs 1; done
}

start_bg() { # NAME NS CMD... -> PID in $STATE/NAME.pid, output in $STATE/NAME.log
    local name=$1 ns=$2; shift 2
    setsid ip netns exec "$ns" "$@" </dev/null >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
}

listening() { # NS tcp|udp PORT
    local ns=$1 proto=$2 port=$3 flag
    [[ $proto == tcp ]] && flag=-Hltn || flag=-Hlun
    [[ -n $(nx "$ns" ss "$flag" "sport = :$port" 2>/dev/null) ]]
}

wait_listening() { # NAME NS PROTO PORT
    local name=$1 ns=$2 proto=$3 port=$4 pid i
    pid=$(<"$STATE/$name.pid")
    for ((i = 0; i < 100; i++)); do
        listening "$ns" "$proto" "$port" && return 0
        [[ -e /proc/$pid ]] || die "server '$name' exited during startup: $(tail -n 5 "$STATE/$name.log" 2>/dev/null)"
        sleep 0.1
    done
    die "server '$name' not listening on $proto/$port after 10s: $(tail -n 5 "$STATE/$name.log" 2>/dev/null)"
}

vs_counters() { nx "$NS_SRC" cat /sys/class/net/vs/statistics/rx_packets /sys/class/net/vs/statistics/tx_packets | tr '\n' ' '; }

# The carrier-on event reaches IPv6 through linkwatch, which may batch it for up to 1 s; only then
# are link-local addresses added and the MLD reports for their groups sent.
link_local_ready() { # NS DEV
    local out
    out=$(ip -n "$1" -6 addr show dev "$2" scope link)
    [[ $out == *fe80::* && $out != *tentative* && $(ip -n "$1" link show dev "$2") == *"state UP"* ]]
}

# Wait until vs/vd link setup is complete and vs has seen no frame for 0.5 s (the link-up
# MLD/ND chatter is over), so captures started after `up` only see the traffic of the test.
wait_link_quiet() {
    poll 50 link_local_ready "$NS_SRC" vs || die "vs: no usable IPv6 link-local address after 5s"
    poll 50 link_local_ready "$NS_DST" vd || die "vd: no usable IPv6 link-local address after 5s"
    local last cur stable=0 i
    last=$(vs_counters)
    for ((i = 0; i < 50; i++)); do
        sleep 0.1
        cur=$(vs_counters)
        if [[ $cur == "$last" ]]; then
            ((++stable >= 5)) && return 0
        else
            stable=0 last=$cur
        fi
    done
    echo "netns.sh: warning: vs still busy after 5s (counters $cur)" >&2
}

cmd_up() {
    check_vxlan_params
    [[ $(id -u) == 0 ]] || die "must run as root"
    local py
    py=$(pick_python)

    cmd_down # recreate cleanly if (partially) up

    mkdir -p "$STATE/www"
    chmod 700 "$STATE"

    local ns
    for ns in "$NS_SRC" "$NS_DST" "$NS_COL"; do
        ip netns add "$ns"
        nx "$ns" ip link set lo up
        nsysctl "$ns" net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.autoconf=0 \
            net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.accept_ra=0 \
            net.ipv6.conf.all.autoconf=0 net.ipv6.conf.all.router_solicitations=0
    done

    # --- traffic link src:vs <-> dst:vd -------------------------------------------------------
    ip -n "$NS_SRC" link add vs address "$MAC_VS" type veth peer name vd netns "$NS_DST" address "$MAC_VD"
    quiet_ipv6 "$NS_SRC" vs
    quiet_ipv6 "$NS_DST" vd
    ip -n "$NS_SRC" addr add "$SRC4/24" dev vs
    ip -n "$NS_SRC" -6 addr add "$SRC6/64" dev vs nodad
    ip -n "$NS_DST" addr add "$DST4/24" dev vd
    ip -n "$NS_DST" -6 addr add "$DST6/64" dev vd nodad
    no_offloads "$NS_SRC" "$py" vs
    no_offloads "$NS_DST" "$py" vd

    # --- underlay src:us <-> col:uc (IPv4 only, jumbo so a 1514-byte inner frame fits) -------
    ip -n "$NS_SRC" link add us address "$MAC_US" mtu 9000 type veth \
        peer name uc netns "$NS_COL" address "$MAC_UC" mtu 9000
    nsysctl "$NS_SRC" net.ipv6.conf.us.disable_ipv6=1
    nsysctl "$NS_COL" net.ipv6.conf.uc.disable_ipv6=1
    no_offloads "$NS_SRC" "$py" us
    no_offloads "$NS_COL" "$py" uc
    ip -n "$NS_SRC" addr add "$US4/24" dev us
    ip -n "$NS_COL" addr add "$UC4/24" dev uc
    ip -n "$NS_SRC" link set us up
    ip -n "$NS_COL" link set uc up

    # --- VXLAN mirror target in src. No IPv6/ARP on vx0 itself, so the only frames it
    #     encapsulates are the mirrored ones. ---------------------------------------------------
    ip -n "$NS_SRC" link add vx0 mtu 8950 type vxlan id "$VNI" remote "$UC4" local "$US4" \
        dstport "$PORT" dev us
    nsysctl "$NS_SRC" net.ipv6.conf.vx0.disable_ipv6=1
    ip -n "$NS_SRC" link set vx0 arp off
    no_offloads "$NS_SRC" "$py" vx0
    ip -n "$NS_SRC" link set vx0 up

    # --- mirror everything vs sends and receives (only u32 works on this kernel) ---------------
    nx "$NS_SRC" tc qdisc add dev vs clsact
    nx "$NS_SRC" tc filter add dev vs egress protocol all u32 match u32 0 0 action mirred egress mirror dev vx0
    nx "$NS_SRC" tc filter add dev vs ingress protocol all u32 match u32 0 0 action mirred egress mirror dev vx0

    ip -n "$NS_SRC" link set vs up
    ip -n "$NS_DST" link set vd up

    # --- servers in dst ---------------------------------------------------------------------
    {
        echo "<!doctype html><title>awsvpc testbed</title>"
        echo "<pre>"
        # ~3 KiB, deterministic: the HTTP response spans several full-size TCP segments.
        for ((i = 0; i < 48; i++)); do printf 'line %02d the quick brown fox jumps over the lazy dog\n' "$i"; done
        echo "</pre>"
    } >"$STATE/www/index.html"
    start_bg http4 "$NS_DST" "$py" -m http.server "$HTTP4_PORT" --bind "$DST4" --directory "$STATE/www"
    start_bg http6 "$NS_DST" "$py" -m http.server "$HTTP6_PORT" --bind "$DST6" --directory "$STATE/www"
    start_bg dns "$NS_DST" "$py" "$HERE/dns_responder.py" --bind "$DST4" --port "$DNS_PORT" \
        --answer "$DNS_ANSWER" --ready-file "$STATE/dns.ready"
    start_bg echo "$NS_DST" "$py" "$HERE/udp_echo.py" --bind "$DST4" --port "$ECHO_PORT" \
        --ready-file "$STATE/echo.ready"
    wait_listening http4 "$NS_DST" tcp "$HTTP4_PORT"
    wait_listening http6 "$NS_DST" tcp "$HTTP6_PORT"
    wait_listening dns "$NS_DST" udp "$DNS_PORT"
    wait_listening echo "$NS_DST" udp "$ECHO_PORT"

    wait_link_quiet

    echo "testbed up: src=$NS_SRC(vs $SRC4,$SRC6) dst=$NS_DST(vd $DST4,$DST6) col=$NS_COL(uc $UC4)" \
        "mirror→$UC4:$PORT vni=$VNI mac=$(cmd_mac)"
}

# ---------------------------------------------------------------------------------------------
# mac / exec

require_up() {
    local ns
    for ns in "$NS_SRC" "$NS_DST" "$NS_COL"; do
        ns_exists "$ns" || die "testbed '$P' is not up (namespace $ns missing); run: $0 up"
    done
}

cmd_mac() {
    ns_exists "$NS_SRC" || die "testbed '$P' is not up (namespace $NS_SRC missing)"
    nx "$NS_SRC" cat /sys/class/net/vs/address
}

cmd_exec() {
    (($# >= 2)) || die "usage: $0 exec src|dst|col CMD..."
    local role=$1; shift
    case $role in src | dst | col) ;; *) die "exec: namespace must be src, dst or col, got '$role'" ;; esac
    ns_exists "$P-$role" || die "namespace $P-$role does not exist; run: $0 up"
    exec ip netns exec "$P-$role" "$@"
}

# ---------------------------------------------------------------------------------------------
# traffic

TRAFFIC_LOG=
step() { # NAME CMD...
    local name=$1; shift
    echo "== $name: $*" >>"$TRAFFIC_LOG"
    if ! "$@" >>"$TRAFFIC_LOG" 2>&1; then
        echo "netns.sh traffic: step '$name' failed; log tail:" >&2
        tail -n 15 "$TRAFFIC_LOG" >&2
        exit 1
    fi
}

dns_check() {
    local out
    out=$(nx "$NS_SRC" dig +tries=1 +time=2 +short @"$DST4" example.test A)
    echo "$out"
    [[ $out == "$DNS_ANSWER" ]] || { echo "expected $DNS_ANSWER"; return 1; }
}

udp_check() {
    nx "$NS_SRC" "$1" - "$DST4" "$ECHO_PORT" "$UDP_LEN" <<'EOF'
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = bytes((i * 7 + 3) & 0xFF for i in range(n))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((host, port))
s.send(payload)
reply = s.recv(65535)
if reply != payload:
    sys.exit("echo mismatch: sent %d bytes, got %d" % (len(payload), len(reply)))
print("udp echo ok: %d bytes" % len(reply))
EOF
}

# No TCP connection to/from the test ports is still mid-teardown (final ACKs delivered).
tcp_settled() {
    local ns states
    states=(state syn-sent state syn-recv state established state fin-wait-1 state fin-wait-2
        state close-wait state last-ack state closing)
    for ns in "$NS_SRC" "$NS_DST"; do
        [[ -z $(nx "$ns" ss -Htan "${states[@]}" "( sport = :$HTTP4_PORT or dport = :$HTTP4_PORT or sport = :$HTTP6_PORT or dport = :$HTTP6_PORT )") ]] || return 1
    done
}

cmd_traffic() {
    require_up
    local py curl_opts
    py=$(pick_python)
    TRAFFIC_LOG=$STATE/traffic.log
    : >"$TRAFFIC_LOG"
    curl_opts=(-sS --fail --noproxy '*' --max-time 5 -o /dev/null -g)

    # Start from empty neighbour caches so every run resolves with ARP and ND (same frames each run,
    # and no stale-entry probes showing up at random times later).
    ip -n "$NS_SRC" neigh flush dev vs
    ip -n "$NS_DST" neigh flush dev vd
    step ping4 nx "$NS_SRC" ping -n -q -c 3 -i 0.2 -w 5 "$DST4"
    step ping6 nx "$NS_SRC" ping -6 -n -q -c 2 -i 0.2 -w 5 "$DST6"
    step http4 nx "$NS_SRC" curl "${curl_opts[@]}" "http://$DST4:$HTTP4_PORT/"
    step http6 nx "$NS_SRC" curl "${curl_opts[@]}" "http://[$DST6]:$HTTP6_PORT/"
    step dns dns_check
    step udp$UDP_LEN udp_check "$py"
    step tcp-settle poll 30 tcp_settled
    echo "traffic done: ping4 x3, ping6 x2, http4, http6, dns A, udp $UDP_LEN echo"
}

# ---------------------------------------------------------------------------------------------

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    (($#)) || { usage >&2; exit 2; }
    local cmd=$1; shift
    case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    mac) cmd_mac ;;
    traffic) cmd_traffic ;;
    exec) cmd_exec "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
    esac
}

main "$@"
