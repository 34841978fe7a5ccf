#!/usr/bin/python3
"""Reads a collector's user data as EC2 hands it to cloud-init, validates it with
cloud-init's own schema (strict: an unknown or malformed key fails), and prints as JSON what
cloud-init would install: the SSH host key, each user's authorized keys, the files it writes
(content decoded as cloud-init decodes it) and the commands it runs.

Usage: user_data.py FILE: the user data, or its base64 as EC2's DescribeInstanceAttribute
returns it. Needs Debian's python3 with cloud-init
unpacked by scripts/install-deps.sh (CLOUD_INIT_PATH overrides where)."""
import base64
import gzip
import json
import os
import sys

sys.path.insert(0, os.environ.get(
    "CLOUD_INIT_PATH",
    "/var/cache/awsvpc-test/cloud-init/usr/lib/python3/dist-packages"))
import yaml  # noqa: E402
from cloudinit.config.schema import get_schema, validate_cloudconfig_schema  # noqa: E402

raw = open(sys.argv[1], "rb").read()
if not raw.startswith(b"#") and raw[:2] != b"\x1f\x8b":
    raw = base64.b64decode(raw)
if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
text = raw.decode()
if not text.startswith("#cloud-config\n"):
    sys.exit("not a #cloud-config document")
cfg = yaml.safe_load(text)
validate_cloudconfig_schema(cfg, get_schema(), strict=True)


def decode(f):
    enc = f.get("encoding", "text")
    data = f.get("content", "")
    if enc in ("gz+b64", "gzip+base64", "gz+base64"):
        return gzip.decompress(base64.b64decode(data)).decode()
    if enc in ("b64", "base64"):
        return base64.b64decode(data).decode()
    return data


users = {}
for u in cfg.get("users", []):
    if isinstance(u, dict):
        users[u["name"]] = u.get("ssh_authorized_keys", [])
keys = cfg.get("ssh_keys", {})
print(json.dumps({
    "host_private": keys.get("ed25519_private"),
    "host_public": keys.get("ed25519_public"),
    "users": users,
    "files": {f["path"]: {"mode": f.get("permissions"), "content": decode(f)}
              for f in cfg.get("write_files", [])},
    "runcmd": cfg.get("runcmd", []),
    "size": len(raw),
}))
