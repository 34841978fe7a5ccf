#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of executions (default 10 million) with memory
# and time limits: a panic, an allocation over the limit or a hang fails the run.
#   bash fuzz/run.sh [RUNS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}; shift || true
targets=("$@"); ((${#targets[@]})) || targets=(decap capture_file extcap_args control_frames relay_stream filter_narrow)
work=${FUZZ_WORK:-/tmp/awsvpc-fuzz}
# ASan keeps freed memory in a quarantine (256 MB by default), which would count against the
# RSS limit; a small one keeps -rss_limit_mb meaningful. -malloc_limit_mb catches any single
# allocation an input could inflate.
export ASAN_OPTIONS="quarantine_size_mb=16:${ASAN_OPTIONS:-}"
# Testbed seeds: the namespace testbed's mirrored traffic (VXLAN VNI 4242, ARP, ND, ICMP, TCP,
# DNS over v4 and v6), recorded once with its own prefix; it needs root and tcpdump.
testbed="$work/testbed"
mkdir -p "$work"
if [[ ! -s $testbed/mirror.pcap ]]; then
  if ((EUID == 0)) && command -v tcpdump >/dev/null &&
    TESTBED_PREFIX=awsvpcfz bash ../tests/testbed/selftest.sh "$testbed" >"$work/testbed.log" 2>&1; then
    echo "fuzz: testbed seeds recorded in $testbed"
  else
    echo "fuzz: no testbed seeds (needs root, tcpdump and the testbed's tools; see $work/testbed.log)"
  fi
fi
rm -rf "$work/seeds"
python3 seeds.py "$work/seeds" "$testbed"
cargo +nightly fuzz build -O
# Inputs up to the largest seed, except the relay stream: 4 kB holds many records, and
# longer inputs only repeat inflate set-up (the 64 kB banner search is a unit test).
max_len() { case $1 in relay_stream) echo 4096 ;; *) echo 0 ;; esac; }
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  start=$(date +%s)
  cargo +nightly fuzz run -O "$t" "$work/corpus/$t" "$work/seeds/$t" -- \
    -runs="$runs" -max_len="$(max_len "$t")" -rss_limit_mb=256 -malloc_limit_mb=64 -timeout=5 \
    -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 2>"$work/$t.log" \
    || { tail -40 "$work/$t.log"; echo "fuzz: $t FAILED (artifacts in $work/artifacts/$t)"; exit 1; }
  stat() { grep -m1 "stat::$1" "$work/$t.log" | awk '{print $2}'; }
  echo "fuzz: $t: $(stat number_of_executed_units) executions, no findings, $(($(date +%s) - start)) s," \
    "$(stat average_exec_per_sec) exec/s, $(grep -a DONE "$work/$t.log" | grep -o 'corp: [0-9]*' | cut -c7-) corpus entries, peak RSS $(stat peak_rss_mb) MB"
done
