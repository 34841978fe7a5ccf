#!/usr/bin/env python3
"""Tiny X11 helper for tests/gui/wireshark_gui.sh (stdlib + libX11/libXtst through ctypes).

  xhelper.py windows                 names of the root window's mapped children, one a line
  xhelper.py buttons IMAGE.ppm       rectangles of the row of push buttons in Wireshark's
                                     interface toolbar: "x0 y0 x1 y1" per button, left to right
  xhelper.py stop IMAGE.ppm          centre "x y" of the red Stop button in the main toolbar
                                     (exit 1 when it is not red: no capture running)
  xhelper.py click X Y               left click at root coordinates X,Y (XTest)
  xhelper.py png IMAGE.ppm OUT.png   convert a screenshot to PNG (no ImageMagick convert needed)

DISPLAY (and XAUTHORITY) come from the environment, as set by xvfb-run.
"""
import ctypes
import ctypes.util
import struct
import sys
import zlib


def x11():
    lib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    lib.XFlush.argtypes = [ctypes.c_void_p]
    lib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    lib.XFree.argtypes = [ctypes.c_void_p]
    dpy = lib.XOpenDisplay(None)
    if not dpy:
        sys.exit("xhelper: cannot open display")
    return lib, dpy


class XWindowAttributes(ctypes.Structure):
    _fields_ = [
        ("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
        ("border_width", ctypes.c_int), ("depth", ctypes.c_int), ("visual", ctypes.c_void_p),
        ("root", ctypes.c_ulong), ("c_class", ctypes.c_int), ("bit_gravity", ctypes.c_int),
        ("win_gravity", ctypes.c_int), ("backing_store", ctypes.c_int),
        ("backing_planes", ctypes.c_ulong), ("backing_pixel", ctypes.c_ulong),
        ("save_under", ctypes.c_int), ("colormap", ctypes.c_ulong),
        ("map_installed", ctypes.c_int), ("map_state", ctypes.c_int),
        ("all_event_masks", ctypes.c_long), ("your_event_mask", ctypes.c_long),
        ("do_not_propagate_mask", ctypes.c_long), ("override_redirect", ctypes.c_int),
        ("screen", ctypes.c_void_p),
    ]


def windows():
    lib, dpy = x11()
    root = lib.XDefaultRootWindow(dpy)
    r, p = ctypes.c_ulong(), ctypes.c_ulong()
    children, n = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
    lib.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                               ctypes.POINTER(ctypes.c_ulong),
                               ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
                               ctypes.POINTER(ctypes.c_uint)]
    lib.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
    lib.XGetWindowAttributes.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                         ctypes.POINTER(XWindowAttributes)]
    lib.XQueryTree(dpy, root, ctypes.byref(r), ctypes.byref(p), ctypes.byref(children), ctypes.byref(n))
    for i in range(n.value):
        w = children[i]
        attrs = XWindowAttributes()
        if not lib.XGetWindowAttributes(dpy, w, ctypes.byref(attrs)) or attrs.map_state != 2:
            continue  # IsViewable only
        if attrs.override_redirect:
            continue  # tooltips, menus and combo box popups
        name = ctypes.c_char_p()
        if lib.XFetchName(dpy, w, ctypes.byref(name)) and name.value is not None:
            print("%s\t%dx%d+%d+%d" % (name.value.decode("utf-8", "replace"),
                                       attrs.width, attrs.height, attrs.x, attrs.y))
    lib.XCloseDisplay(dpy)


def click(x, y):
    lib, dpy = x11()
    xtst = ctypes.CDLL(ctypes.util.find_library("Xtst") or "libXtst.so.6")
    xtst.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong]
    xtst.XTestFakeButtonEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    xtst.XTestFakeMotionEvent(dpy, -1, x, y, 0)
    lib.XSync(dpy, 0)
    xtst.XTestFakeButtonEvent(dpy, 1, 1, 30)
    xtst.XTestFakeButtonEvent(dpy, 1, 0, 60)
    lib.XSync(dpy, 0)
    lib.XCloseDisplay(dpy)


def load_ppm(path):
    data = open(path, "rb").read()
    fields, i = [], 0
    while len(fields) < 4:
        while data[i:i + 1].isspace():
            i += 1
        if data[i:i + 1] == b"#":
            while data[i:i + 1] != b"\n":
                i += 1
            continue
        j = i
        while not data[j:j + 1].isspace():
            j += 1
        fields.append(data[i:j])
        i = j
    if fields[0] != b"P6" or int(fields[3]) not in (255, 65535):
        sys.exit("xhelper: %s is not a binary (P6) PPM" % path)
    pixels = data[i + 1:]
    if int(fields[3]) == 65535:
        pixels = pixels[::2]  # keep the high byte of each 16-bit sample
    return int(fields[1]), int(fields[2]), pixels


def buttons(path):
    """Qt's Fusion push buttons have a 1-px grey frame (about #ababab). Find frames: a
    horizontal run of frame pixels with a matching run 15-40 rows below, then keep the
    topmost row of three or more rectangles (the interface toolbar)."""
    w, h, px = load_ppm(path)

    def frame(x, y):
        o = (y * w + x) * 3
        r, g, b = px[o], px[o + 1], px[o + 2]
        return r == g == b and 155 <= r <= 190

    runs = {}
    for y in range(min(h, 400)):
        row, x = [], 0
        while x < w:
            if frame(x, y):
                s = x
                while x < w and frame(x, y):
                    x += 1
                if x - s >= 30:
                    row.append((s, x - 1))
            else:
                x += 1
        runs[y] = row
    rects = []
    for y, row in runs.items():
        for (s, e) in row:
            for dy in range(15, 41):
                if any(abs(s2 - s) <= 2 and abs(e2 - e) <= 2 for (s2, e2) in runs.get(y + dy, [])):
                    rects.append((s, y, e, y + dy))
                    break
    rows = {}
    for r in rects:
        rows.setdefault((r[1], r[3]), []).append(r)
    if not rows:
        sys.exit("xhelper: no buttons found")
    # The interface toolbar is the topmost row of three or more framed widgets (interface
    # combo box + the extcap's buttons); the packet list header comes further down.
    full = [k for k, v in rows.items() if len(v) >= 3]
    if not full:
        sys.exit("xhelper: no row of buttons found")
    best = rows[min(full)]
    for r in sorted(best):
        print("%d %d %d %d" % r)


def stop_button(path):
    """The main toolbar's Stop icon is a 16x16 square of (220, 0, 0) while a capture runs
    and grey otherwise."""
    w, h, px = load_ppm(path)
    xs, ys = [], []
    for y in range(min(h, 100)):
        for x in range(min(w, 400)):
            o = (y * w + x) * 3
            if px[o] > 180 and px[o + 1] < 60 and px[o + 2] < 60:
                xs.append(x)
                ys.append(y)
    if len(xs) < 100:
        print("xhelper: no red Stop button in the main toolbar", file=sys.stderr)
        sys.exit(1)
    print("%d %d" % ((min(xs) + max(xs)) // 2, (min(ys) + max(ys)) // 2))


def to_png(path, out):
    w, h, px = load_ppm(path)
    raw = b"".join(b"\0" + px[y * w * 3:(y + 1) * w * 3] for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(out, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "windows":
        windows()
    elif cmd == "click" and len(sys.argv) == 4:
        click(int(sys.argv[2]), int(sys.argv[3]))
    elif cmd == "stop" and len(sys.argv) == 3:
        stop_button(sys.argv[2])
    elif cmd == "png" and len(sys.argv) == 4:
        to_png(sys.argv[2], sys.argv[3])
    elif cmd == "buttons" and len(sys.argv) == 3:
        buttons(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
