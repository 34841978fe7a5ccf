#!/usr/bin/env python3
"""Turn off checksum/segmentation offloads on network devices (like `ethtool -K DEV tx off sg off
tso off gso off gro off`) with the legacy SIOCETHTOOL ioctls, so no ethtool binary is needed.

Why: on veth/vxlan the kernel otherwise hands captures frames whose TCP/UDP checksums are not
filled in yet (CHECKSUM_PARTIAL), and GSO "super-frames" larger than the MTU. Real AWS mirrored
traffic has neither. Must run inside the device's network namespace.

Usage: nic_offload_off.py DEV [DEV...]
"""
import ctypes
import fcntl
import socket
import sys

SIOCETHTOOL = 0x8946
# feature: (GET cmd, SET cmd) -- from <linux/ethtool.h>
FEATURES = {
    "tso": (0x1E, 0x1F),
    "gso": (0x23, 0x24),
    "gro": (0x2B, 0x2C),
    "tx": (0x16, 0x17),   # tx checksumming (turning it off also drops features that need it)
    "sg": (0x18, 0x19),
}


class EthtoolValue(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint32), ("data", ctypes.c_uint32)]


class IfReq(ctypes.Structure):  # struct ifreq: 16-byte name + 24-byte union (ifr_data pointer)
    _fields_ = [("name", ctypes.c_char * 16), ("data", ctypes.c_void_p), ("pad", ctypes.c_char * 16)]


def ethtool(sock, dev, cmd, data=0):
    val = EthtoolValue(cmd, data)
    req = IfReq(dev.encode(), ctypes.addressof(val))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, req)
    return val.data


def main(devs):
    if not devs:
        sys.exit(__doc__)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad = []
    for dev in devs:
        for name, (get, set_) in FEATURES.items():
            ethtool(sock, dev, set_, 0)
        for name, (get, _) in FEATURES.items():
            if ethtool(sock, dev, get) != 0:
                bad.append("%s:%s" % (dev, name))
    if bad:
        sys.exit("offloads still on (fixed by driver?): " + " ".join(bad))


if __name__ == "__main__":
    main(sys.argv[1:])
