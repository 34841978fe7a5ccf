#!/usr/bin/env bash
# Builds awsvpc_<version>_<arch>.deb with dpkg-deb (no extra tool to build first): the
# binary in Wireshark's global extcap folder for Debian and Ubuntu
# (/usr/lib/<multiarch>/wireshark/extcap, wireshark-common's own), the README, the IAM
# policy and the collector's launch template under /usr/share/doc/awsvpc.
#   packaging/deb/build.sh [BINARY] [OUT_DIR]
# BINARY defaults to a release build ($CARGO_TARGET_DIR/release/awsvpc, built if missing).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
target="${CARGO_TARGET_DIR:-$HOME/.cache/awsvpc-target}"
bin="${1:-$target/release/awsvpc}"
out=$(cd "${2:-.}" && pwd)
if [ ! -x "$bin" ]; then
  (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --locked)
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$bin" "$root/usr/lib/$multiarch/wireshark/extcap/awsvpc"
install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/awsvpc/README.md"
install -D -m 0644 "$repo/packaging/iam-policy.json" "$root/usr/share/doc/awsvpc/iam-policy.json"
install -D -m 0644 "$repo/packaging/collector-launch-template.yaml" "$root/usr/share/doc/awsvpc/collector-launch-template.yaml"
printf 'awsvpc is licensed MIT OR Apache-2.0.\n' > "$root/usr/share/doc/awsvpc/copyright"
mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: awsvpc
Version: $version
Architecture: $arch
Maintainer: awsvpc developers <awsvpc@localhost>
Depends: libc6, libpcap0.8
Recommends: wireshark | tshark
Suggests: openssh-client
Section: net
Priority: optional
Installed-Size: $(du -sk "$root/usr" | cut -f1)
Description: Wireshark extcap for live AWS VPC Traffic Mirroring captures
 Pick "AWS VPC Traffic Mirroring" in Wireshark's interface list (or run
 tshark -i awsvpc) to see the decapsulated packets of mirrored ENIs live.
 awsvpc provisions the mirror on demand and removes what it created.
CONTROL
deb="$out/awsvpc_${version}_${arch}.deb"
# gzip: quick to make, and every dpkg reads it.
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
