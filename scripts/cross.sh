#!/usr/bin/env bash
# Builds and checks awsvpc for the other OSes from this Linux machine, with the default
# features (the AWS SDK):
# - Windows (x86_64-pc-windows-gnu): clippy with no warnings, then awsvpc.exe and the Wine
#   test peer linked with mingw-w64 (aws-lc-sys's C and assembly: mingw gcc and nasm).
# - macOS (aarch64 and x86_64): clippy with no warnings; zig's clang (PyPI's ziglang) is
#   the C compiler for aws-lc-sys. A macOS binary links only on a Mac (frameworks).
# Prints the line AWSVPC_WINDOWS_DIR=… that tests/windows_wine.rs and tests/packaging.rs read.
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
# One pass for Windows: the build itself runs clippy on awsvpc's own code (clippy-driver as
# the workspace's rustc, which is what `cargo clippy` does in check mode), so the SDK is
# compiled once, not checked and then compiled. --bins only: a test target would pull in the
# dev-dependencies, whose features (the SDK's test-util) would then be built in too.
CARGO_TARGET_DIR="$win_target" \
  RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver" CLIPPY_ARGS=-Dwarnings \
  cargo build --quiet --locked --target x86_64-pc-windows-gnu --bins
# The Wine tests' stand-in for Wireshark for Windows, a crate of its own (windows-sys only).
CARGO_TARGET_DIR="$win_target/wine-peer" cargo build --quiet --locked --target x86_64-pc-windows-gnu \
  --manifest-path tests/wine-peer/Cargo.toml
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
# What the Wine tests run: awsvpc.exe without its 1 GB of debug information, the peer,
# the ssh stand-in (tests/wine-peer/src/bin/ssh_shim.rs), and
# the bcryptprimitives.dll stand-in Wine 8 lacks (tests/wine-peer/bcryptprimitives.c).
out="$win_target/wine-tests"
mkdir -p "$out"
x86_64-w64-mingw32-strip -o "$out/awsvpc.exe" "$win_target/x86_64-pc-windows-gnu/debug/awsvpc.exe"
cp "$win_target/wine-peer/x86_64-pc-windows-gnu/debug/wine-pipe-peer.exe" "$out/wine_pipe_peer.exe"
cp "$win_target/wine-peer/x86_64-pc-windows-gnu/debug/ssh_shim.exe" "$out/ssh.exe"
x86_64-w64-mingw32-gcc -O2 -shared -Wl,--kill-at -o "$out/bcryptprimitives.dll" \
  tests/wine-peer/bcryptprimitives.c -ladvapi32
echo "cross: Windows clippy and link $((t1 - t0)) s, macOS clippy (2 targets) $((t2 - t1)) s" >&2
echo "AWSVPC_WINDOWS_DIR=$out"
