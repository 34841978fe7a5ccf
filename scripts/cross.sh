#!/usr/bin/env bash
# Builds and checks awsvpc for the other OSes from this Linux machine, with the default
# features (the AWS SDK):
# - Windows (x86_64-pc-windows-gnu): clippy with no warnings, then awsvpc.exe and the Wine
#   test peer linked with mingw-w64 (aws-lc-sys's C and assembly: mingw gcc and nasm).
# - macOS (aarch64 and x86_64): clippy with no warnings; zig's clang (PyPI's ziglang) is
#   the C compiler for aws-lc-sys. A macOS binary links only on a Mac (frameworks).
# Prints the line AWSVPC_WINDOWS_DIR=… that tests/windows_wine.rs reads.
# Needs scripts/install-deps.sh's packages (mingw-w64, nasm, wine).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
rustup target add x86_64-pc-windows-gnu aarch64-apple-darwin x86_64-apple-darwin >/dev/null
python3 -m ziglang version >/dev/null 2>&1 || pip install --quiet ziglang
# Persistent build folders outside the clone, one per OS family, so reruns are incremental.
win_target="${AWSVPC_WIN_TARGET_DIR:-$HOME/.cache/awsvpc-target-win}"
apple_target="${AWSVPC_APPLE_TARGET_DIR:-$HOME/.cache/awsvpc-target-apple}"
t0=$SECONDS
CARGO_TARGET_DIR="$win_target" cargo clippy --quiet --locked --target x86_64-pc-windows-gnu --lib --bins --examples -- -D warnings
CARGO_TARGET_DIR="$win_target" cargo build --quiet --locked --target x86_64-pc-windows-gnu --bin awsvpc --example wine_pipe_peer
t1=$SECONDS
for arch in aarch64 x86_64; do
  triple="${arch}_apple_darwin"
  # The pcap crate's build script asks the host's libpcap for its version; say it instead
  # (macOS 13+ ships libpcap 1.10).
  env ZIG_TARGET="$arch-macos" "CC_$triple=$repo/scripts/zig-cc.sh" "AR_$triple=$repo/scripts/zig-ar.sh" \
    LIBPCAP_VER=1.10.1 CARGO_TARGET_DIR="$apple_target" \
    cargo clippy --quiet --locked --target "$arch-apple-darwin" --lib --bins -- -D warnings
done
t2=$SECONDS
out="$win_target/x86_64-pc-windows-gnu/debug"
cp "$out/examples/wine_pipe_peer.exe" "$out/wine_pipe_peer.exe"
echo "cross: Windows clippy+link $((t1 - t0)) s, macOS clippy (2 targets) $((t2 - t1)) s" >&2
echo "AWSVPC_WINDOWS_DIR=$out"
