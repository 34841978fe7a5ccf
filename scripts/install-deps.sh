#!/usr/bin/env bash
# Installs what awsvpc's build, demo and tests need on Debian/Ubuntu (as root, or through
# sudo when something is missing).
# Only missing packages are installed, so reruns are quick.
set -euo pipefail
packages=(
  build-essential pkg-config libpcap-dev          # build: the pcap crate links libpcap
  tshark tcpdump                                   # extcap host and oracle
  iproute2 iputils-ping curl dnsutils python3      # namespace testbed and its traffic
  openssh-server openssh-client procps             # the SSH collector tests (real sshd)
  wireshark-qt xvfb xauth imagemagick              # the GUI check under Xvfb
  gcc-mingw-w64-x86-64 nasm wine wine64            # awsvpc.exe (mingw-w64; aws-lc's assembly) run under Wine
  python3-yaml python3-jsonschema python3-jinja2   # cloud-init's schema check of the collector's
  python3-configobj python3-requests python3-netifaces python3-oauthlib python3-jsonpatch python3-serial
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  source "$(dirname "$0")/as-root.sh"
  as_root "installing ${missing[*]}" "$@"
  export DEBIAN_FRONTEND=noninteractive
  # Wireshark asks whether non-root users may capture; the answer does not matter here.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# cloud-init itself, unpacked (not installed: it would run at this machine's next boot), so
# the tests can validate the collector's user data with cloud-init's own schema.
ci=/var/cache/awsvpc-test/cloud-init
if [ ! -d "$ci/usr/lib/python3/dist-packages/cloudinit" ]; then
  source "$(dirname "$0")/as-root.sh"
  as_root "unpacking cloud-init into /var/cache" "$@"
  tmp=$(mktemp -d)
  (cd "$tmp" && chmod 777 . && apt-get download -q cloud-init >/dev/null)
  mkdir -p "$ci"
  dpkg -x "$tmp"/cloud-init_*.deb "$ci"
  rm -rf "$tmp"
fi
