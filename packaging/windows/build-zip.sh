#!/usr/bin/env bash
# Builds awsvpc-<version>-windows-x86_64.zip: awsvpc.exe (mingw-w64), the README, the IAM
# policy and INSTALL.txt. Installing is one line in the unzipped folder: `awsvpc.exe install`
# (it copies itself into %APPDATA%\Wireshark\extcap, Wireshark's personal extcap folder).
#   packaging/windows/build-zip.sh [AWSVPC_EXE] [OUT_DIR]
# AWSVPC_EXE defaults to a release build for x86_64-pc-windows-gnu (built if missing).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
target="${AWSVPC_WIN_TARGET_DIR:-$HOME/.cache/awsvpc-target-win}"
exe="${1:-$target/x86_64-pc-windows-gnu/release/awsvpc.exe}"
out=$(cd "${2:-.}" && pwd)
if [ ! -f "$exe" ]; then
  (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --locked --target x86_64-pc-windows-gnu)
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
name="awsvpc-$version-windows-x86_64"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
cp "$exe" "$stage/$name/awsvpc.exe"
cp "$repo/README.md" "$repo/packaging/iam-policy.json" "$stage/$name/"
# CRLF: Notepad on older Windows shows a bare LF file as one line.
printf '%s\r\n' \
  "awsvpc $version for Windows 10/11 (x86_64): a Wireshark extcap for AWS VPC Traffic Mirroring." \
  "" \
  "Install (Wireshark 4.0 or later, any user, no administrator rights):" \
  "  awsvpc.exe install" \
  "It copies awsvpc.exe into %APPDATA%\\Wireshark\\extcap; restart Wireshark." \
  "Undo: awsvpc.exe uninstall" \
  "" \
  "Capture filters need Npcap (Wireshark's installer offers it). SSH collectors use" \
  "Windows' own OpenSSH client (ssh.exe, an optional feature of Windows 10/11)." \
  > "$stage/$name/INSTALL.txt"
zip="$out/$name.zip"
rm -f "$zip"
(cd "$stage" && python3 -m zipfile -c "$zip" "$name")
echo "$zip"
