#!/bin/sh
# ar for the Apple targets (see zig-cc.sh).
exec python3 -m ziglang ar "$@"
