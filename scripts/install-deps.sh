#!/usr/bin/env bash
# Installs what awsvpc's build, demo and tests need on Debian/Ubuntu (run as root).
# Only missing packages are installed, so reruns are quick.
set -euo pipefail
packages=(
  build-essential pkg-config libpcap-dev          # build: the pcap crate links libpcap
  tshark tcpdump                                   # extcap host and oracle
  iproute2 iputils-ping curl dnsutils python3      # namespace testbed and its traffic
  openssh-server openssh-client procps             # the SSH collector tests (real sshd)
  wireshark-qt xvfb xauth imagemagick              # the GUI check under Xvfb
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  # Wireshark asks whether non-root users may capture; the answer does not matter here.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
