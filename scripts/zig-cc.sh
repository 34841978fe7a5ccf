#!/bin/sh
# A C compiler for the Apple targets on Linux: zig's clang with macOS's headers and
# libSystem stubs (PyPI's ziglang). Enough for the C parts of dependencies (aws-lc-sys)
# in `cargo clippy --target …-apple-darwin`; a macOS binary links only on a Mac
# (frameworks). ZIG_TARGET is e.g. aarch64-macos; cc-rs's own target flags are dropped
# since zig takes -target.
target="$ZIG_TARGET"
skip=
for a in "$@"; do
  shift
  if [ -n "$skip" ]; then skip=; continue; fi
  case "$a" in
    --target=*|-mmacosx-version-min=*) continue ;;
    -arch|-target) skip=1; continue ;;
  esac
  set -- "$@" "$a"
done
exec python3 -m ziglang cc -target "$target" "$@"
