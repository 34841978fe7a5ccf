#!/usr/bin/env bash
# Issue 4's benchmark: lossless packets/s of `--collector host --connect ssh` on loopback,
# beside the manual baseline `ssh host tcpdump -U -w - udp port 4789 | tshark -r -` and the
# raw SSH channel, for 128-byte and 1500-byte inner frames. Not a test: it prints figures.
#
#   bash benches/ssh_throughput.sh                 # all of it: about 15 minutes on 2 CPUs
#   REPS=1 SIZES=128 bash benches/ssh_throughput.sh   # a quick look (asks sudo if not root)
#
# Self-contained, as root: a temporary OpenSSH sshd on 127.0.0.1 with its own host key and
# a client key for root, a known_hosts file and an empty client config (AWSVPC_SSH_CONFIG);
# awsvpc runs exactly as Wireshark starts it, its fifo read by a byte-counting reader; a
# VXLAN blaster (sendmmsg) sends to 127.0.0.1. Only loopback is used.
#
# Settings (environment):
#   AWSVPC_BIN    the awsvpc binary (default: built here without the AWS SDK, in
#                 /root/.cache/awsvpc-bench, if missing; REBUILD=1 rebuilds)
#   SIZES=128,1500  PATHS=awsvpc,tcpdump+tshark,tcpdump  REPS=3  STEP_SECONDS=2.5
#   TCPDUMP_BUFFER=8192 (tcpdump -B, KiB: the relay asks for an 8 MiB socket buffer)
#   SSH_CIPHER    e.g. aes128-gcm@openssh.com, written into the client config of every path
#   BENCH_TIMEOUT=5400 (seconds; the whole measurement is killed after it)
#   KEEP=1        keep the work directory (logs of every step)
#   BENCH_ARGS    more options of ssh_throughput.py run (e.g. "--flat-count-128 500000")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/awsvpc-bench}"

die() { echo "ssh_throughput: $*" >&2; exit 1; }
AS_ROOT_KEEP="AWSVPC_BIN REBUILD SIZES PATHS REPS STEP_SECONDS TCPDUMP_BUFFER SSH_CIPHER BENCH_TIMEOUT KEEP BENCH_ARGS PYTHON"
source "$REPO/scripts/as-root.sh"
as_root "the benchmark (sshd, tcpdump on lo, root login over SSH)" "$@"
for t in ssh ssh-keygen /usr/sbin/sshd tshark tcpdump timeout "$PYTHON"; do
    command -v "$t" >/dev/null || die "$t is missing (apt-get install openssh-server openssh-client tshark tcpdump python3)"
done

BIN="${AWSVPC_BIN:-$TARGET_DIR/release/awsvpc}"
if [ -z "${AWSVPC_BIN:-}" ] && { [ ! -x "$BIN" ] || [ "${REBUILD:-0}" = 1 ]; }; then
    echo "building awsvpc without the AWS SDK into $TARGET_DIR ..." >&2
    (cd "$REPO" && CARGO_TARGET_DIR="$TARGET_DIR" timeout 1800 \
        cargo build --release --no-default-features) >&2 || die "build failed"
fi
[ -x "$BIN" ] || die "no awsvpc binary at $BIN"

WORK="$(mktemp -d /tmp/awsvpc-sshbench.XXXXXX)"
SSHD_PID=""
DRIVER_PID=""

descendants() { # pid -> all its descendants, deepest last
    local c
    for c in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$c"
        descendants "$c"
    done
}

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        # The driver kills what it started (blasters, awsvpc, ssh, tshark) on SIGTERM.
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.1; done
        for p in $(descendants "$DRIVER_PID") "$DRIVER_PID"; do kill -KILL "$p" 2>/dev/null || true; done
    fi
    if [ -n "$SSHD_PID" ]; then
        # The sshd and everything its sessions run (relays, tcpdumps, head).
        for p in $(descendants "$SSHD_PID") "$SSHD_PID"; do kill -KILL "$p" 2>/dev/null || true; done
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- sshd on 127.0.0.1 (the configuration of tests/common/sshd.rs)
ssh-keygen -q -t ed25519 -N "" -C awsvpc-bench -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N "" -C awsvpc-bench -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$WORK/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $WORK/sshd.pid
LogLevel INFO
EOF
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1,2 "$WORK/host_key.pub")" >"$WORK/known_hosts"
: >"$WORK/ssh_config"
[ -n "${SSH_CIPHER:-}" ] && printf 'Ciphers %s\n' "$SSH_CIPHER" >"$WORK/ssh_config"
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2>"$WORK/sshd.log" &
SSHD_PID=$!
disown "$SSHD_PID"  # killed by pid in cleanup, without a job-control notice
for _ in $(seq 100); do
    grep -q "Server listening on 127.0.0.1" "$WORK/sshd.log" 2>/dev/null && break
    kill -0 "$SSHD_PID" 2>/dev/null || die "sshd exited: $(cat "$WORK/sshd.log")"
    sleep 0.1
done
grep -q "Server listening on 127.0.0.1" "$WORK/sshd.log" || die "sshd did not start: $(cat "$WORK/sshd.log")"

SSH=(ssh -F "$WORK/ssh_config" -T -x -o BatchMode=yes -o StrictHostKeyChecking=yes
     -o "UserKnownHostsFile=$WORK/known_hosts" -o GlobalKnownHostsFile=/dev/null
     -p "$PORT" -l root -i "$WORK/client_key" -o IdentitiesOnly=yes 127.0.0.1)
CIPHER="$(timeout 30 "${SSH[@]}" -v true 2>&1 | sed -n 's/.*kex: server->client cipher: \([^ ]*\).*/\1/p' | head -1)"
[ -n "$CIPHER" ] || die "cannot log in over SSH: $(timeout 30 "${SSH[@]}" true 2>&1 | tail -3)"
REMOTE_PY="$(timeout 30 "${SSH[@]}" 'p=$(command -v python3); "$p" -c "import sys; print(sys.executable, sys.version.split()[0])"' 2>/dev/null || echo '?')"

HEADER="$(cat <<EOF
- $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
- awsvpc: $BIN (built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'); the checkout is now at $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'))
- $(ssh -V 2>&1); cipher $CIPHER; relay python on the collector: $REMOTE_PY
- $(tcpdump --version 2>&1 | head -1) with -B ${TCPDUMP_BUFFER:-8192} (KiB); $(tshark --version 2>/dev/null | head -1 | cut -d' ' -f1-3)
EOF
)"
echo "$HEADER"
echo

START=$(date +%s)
timeout --signal=TERM --kill-after=30 "${BENCH_TIMEOUT:-5400}" \
    "$PYTHON" "$HERE/ssh_throughput.py" run \
    --awsvpc "$BIN" --work "$WORK" --ssh-port "$PORT" --key "$WORK/client_key" \
    --known-hosts "$WORK/known_hosts" --ssh-config "$WORK/ssh_config" --sshd-pid "$SSHD_PID" \
    --sizes "${SIZES:-128,1500}" --paths "${PATHS:-awsvpc,tcpdump+tshark,tcpdump}" \
    --reps "${REPS:-3}" --step-seconds "${STEP_SECONDS:-2.5}" \
    --tcpdump-buffer "${TCPDUMP_BUFFER:-8192}" --header "$HEADER" ${BENCH_ARGS:-} &
DRIVER_PID=$!
wait "$DRIVER_PID"
DRIVER_PID=""
echo "total $(( $(date +%s) - START )) s"
