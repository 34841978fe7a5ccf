#!/bin/sh
# awsvpc collector watchdog: installed by the user data of a collector instance that awsvpc
# launched for one capture (awsvpc relay-source --user-data prints that user data).
#
# The instance exists only while a capture uses it. Once no relay has held UDP port
# AWSVPC_PORT for AWSVPC_IDLE seconds (AWSVPC_GRACE after boot, while the first connection is
# made), it powers off, which terminates it: awsvpc launches it with
# InstanceInitiatedShutdownBehavior=terminate. This covers what awsvpc's own teardown cannot:
# a laptop that lost power or a killed process. It reads /proc only and sends nothing.
port=${AWSVPC_PORT:-4789}
grace=${AWSVPC_GRACE:-900}
idle=${AWSVPC_IDLE:-300}
step=${AWSVPC_STEP:-10}
hex=$(printf '%04X' "$port")
limit=$grace
quiet=0
running=no
while sleep "$step"; do
    # A relay's socket: local address ending in :PORT (hex), IPv4 or IPv6.
    if grep -Eq "^ *[0-9]+: [0-9A-F]+:$hex " /proc/net/udp /proc/net/udp6 2>/dev/null; then
        [ "$running" = yes ] || echo "awsvpc watchdog: relay running on UDP $port"
        running=yes
        quiet=0
        limit=$idle
        continue
    fi
    [ "$running" = yes ] && echo "awsvpc watchdog: relay stopped"
    running=no
    quiet=$(awk "BEGIN { print $quiet + $step }")
    if awk "BEGIN { exit !($quiet >= $limit) }"; then
        echo "awsvpc watchdog: no relay for $quiet s: powering off (the instance terminates)"
        shutdown -h now
        exit 0
    fi
done
