#!/usr/bin/env bash
# Writes awsvpc.rb, the Homebrew formula, for a source tarball of this tree.
#   packaging/homebrew/make-formula.sh [URL] [OUT_DIR]
# Without URL it makes the tarball itself (git archive of HEAD) and points the formula at
# it with a file:// URL, which `brew install --formula ./awsvpc.rb` accepts on a Mac; a
# release passes its published tarball's URL instead.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$(cd "${2:-.}" && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
if [ $# -ge 1 ] && [ -n "$1" ]; then
  url=$1
  tarball=$(mktemp)
  trap 'rm -f "$tarball"' EXIT
  curl -fsSL "$url" -o "$tarball"
else
  tarball="$out/awsvpc-$version.tar.gz"
  git -C "$repo" archive --format=tar.gz --prefix="awsvpc-$version/" -o "$tarball" HEAD
  url="file://$tarball"
fi
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
sed -e "s|@URL@|$url|" -e "s|@VERSION@|$version|" -e "s|@SHA256@|$sha|" \
  -e "s|@HOMEPAGE@|${AWSVPC_HOMEPAGE:-https://example.invalid/awsvpc}|" \
  "$repo/packaging/homebrew/awsvpc.rb.in" > "$out/awsvpc.rb"
echo "$out/awsvpc.rb"
