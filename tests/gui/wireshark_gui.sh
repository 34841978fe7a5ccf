#!/usr/bin/env bash
# End-to-end check of awsvpc in the real Wireshark Qt GUI (Debian 12: Wireshark 4.0), on an
# X server (Xvfb) so screenshots can be taken:
#
#   1. installs awsvpc (symlink) into a temporary HOME's personal extcap folder, with
#      recent files that show the "AWS VPC Traffic Mirroring" interface toolbar;
#   2. brings up the namespace testbed (tests/testbed/netns.sh, prefix awsgui);
#   3. in the collector namespace, under xvfb-run, starts `wireshark -k -i awsvpc` with the
#      local collector, waits (polling awsvpc's debug log) for "listening on" and "toolbar
#      initialized" (Wireshark passed the control pipes and sent Initialized), runs
#      `netns.sh traffic`, waits for counters with packets, screenshots the window, presses
#      the toolbar's counters button (awsvpc must log "statistics:"), its Help button (the
#      desktop's opener, a recorder on PATH, must get the path of awsvpc's page), its
#      Log button and screenshots the log dialog, clicks the main toolbar's
#      Stop button, waits for awsvpc's "capture ended" and for Wireshark's "Capture
#      stopped", screenshots again, then ends Wireshark with SIGTERM;
#   4. checks the pcapng Wireshark wrote (-w) has packets.
#
# Usage: bash tests/gui/wireshark_gui.sh [path-to-awsvpc-binary]   (as root)
#   default binary: target/debug/awsvpc of this repository.
# Artifacts (screenshots, awsvpc log, Wireshark stderr, capture) go to
# ${GUI_ARTIFACTS:-/tmp/awsvpc-gui}. Exit 0 only when every step above succeeded.
# Needs: wireshark (Qt), xvfb-run/Xvfb, ImageMagick `import`, capinfos, python3 with
# libX11/libXtst (tests/gui/xhelper.py), and what the testbed needs (ip, tc, ping, curl, dig).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NETNS="$ROOT/tests/testbed/netns.sh"
XHELPER="$HERE/xhelper.py"

log() { echo "wireshark_gui: $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Inner part: runs inside the collector namespace under xvfb-run (DISPLAY is set).

# poll SECONDS DESCRIPTION CMD...: run CMD every 0.1 s until it succeeds; fail after SECONDS.
poll() {
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s%N) + secs * 1000000000))
    until "$@"; do
        if (($(date +%s%N) > deadline)); then
            log "timed out after ${secs}s waiting for: $what"
            return 1
        fi
        ws_alive || { log "wireshark exited while waiting for: $what"; return 1; }
        sleep 0.1
    done
}

ws_alive() { [[ -n ${WS_PID:-} ]] && kill -0 "$WS_PID" 2>/dev/null; }
in_log() { grep -qE -- "$1" "$AWS_LOG" 2>/dev/null; }
# The debug counters line, e.g. "[debug] 47 packets, 12.3 kB · 0 malformed · 0 dropped".
counters_lines() { grep -cE '\[debug\] [1-9][0-9]* packets, ' "$AWS_LOG" 2>/dev/null || true; }
two_counters_with_packets() { (($(counters_lines) >= 2)); }
ws_err_has() { grep -qF -- "$1" "$ART/wireshark.stderr" 2>/dev/null; }

grab() { import -window root -depth 8 "$TMPD/$1.ppm"; } # NAME -> $TMPD/NAME.ppm for xhelper
shot() { # NAME -> $ART/NAME.png (and $TMPD/NAME.ppm)
    grab "$1"
    python3 "$XHELPER" png "$TMPD/$1.ppm" "$ART/$1.png"
    log "screenshot: $ART/$1.png"
}

windows() { python3 "$XHELPER" windows; }
log_window_open() { windows | awk -F'\t' '$1 ~ / Log$/ {found = 1} END {exit !found}'; }

# Top-level windows other than the main window and the awsvpc log dialog (an error or warning
# dialog, e.g. "Error by extcap pipe", would be one).
unexpected_windows() {
    windows | awk -F'\t' -v main="$1" '$2 != main && $1 !~ / Log$/'
}

# click_toolbar_button INDEX WHAT CHECK...: screenshot, find the interface toolbar's row
# ([interface combo] [Log] [Help] [counters], INDEX 1-based), click the button, poll CHECK.
# Up to 3 tries: the counters button's label (and so the row's layout) changes every second.
click_toolbar_button() {
    local index=$1 what=$2 attempt b x0 y0 x1 y1
    shift 2
    for attempt in 1 2 3; do
        grab toolbar
        b=$(python3 "$XHELPER" buttons "$TMPD/toolbar.ppm") || b=
        if (($(printf '%s\n' "$b" | grep -c .) >= 4)); then
            read -r x0 y0 x1 y1 < <(printf '%s\n' "$b" | sed -n "${index}p")
            python3 "$XHELPER" click $(((x0 + x1) / 2)) $(((y0 + y1) / 2))
            poll 5 "$what" "$@" && return 0
        else
            log "attempt $attempt: interface toolbar buttons not found (got: ${b:-nothing})"
        fi
    done
    log "clicking the toolbar button for '$what' failed; windows: $(windows | tr '\t\n' ' ;')"
    return 1
}

inner() {
    local ws_args main_geom xy stop_x stop_y
    ws_args=(-k -i awsvpc
        -o gui.update.enabled:FALSE
        -o extcap.awsvpc.collector:local
        -o "extcap.awsvpc.source:${TESTBED_VNI}=eni-gui,${MIRROR_MAC}"
        -o "extcap.awsvpc.logfile:$AWS_LOG"
        -o extcap.awsvpc.loglevel:debug
        -w "$ART/capture.pcapng")
    log "starting: wireshark ${ws_args[*]}"
    HOME=$GUI_HOME XDG_RUNTIME_DIR=$TMPD/xdg QT_QPA_PLATFORM=xcb \
        wireshark "${ws_args[@]}" >"$ART/wireshark.stdout" 2>"$ART/wireshark.stderr" &
    WS_PID=$!

    poll 30 'awsvpc log: "listening on"' in_log 'listening on UDP' || return 1
    poll 10 'awsvpc log: "toolbar initialized" (control pipes opened, Initialized received)' \
        in_log 'toolbar initialized' || return 1
    log "awsvpc is listening; the GUI's toolbar is initialized"

    TESTBED_PREFIX=$TESTBED_PREFIX bash "$NETNS" traffic >&2 || return 1

    # The first counters line with packets goes to the toolbar and status bar at the same time;
    # the second one guarantees the GUI has had a full second to show the first.
    poll 15 'awsvpc log: two counters lines with >0 packets' two_counters_with_packets || return 1
    log "counters: $(grep -E '\[debug\] [1-9][0-9]* packets, ' "$AWS_LOG" | tail -n 1 | cut -d' ' -f3-)"

    shot capturing # toolbar with the live counters, status bar "Capturing: …"

    # GUI -> awsvpc: pressing the counters button sends Set on control 2; awsvpc answers by
    # writing the full statistics to its log.
    click_toolbar_button 4 'awsvpc log: "statistics:" (counters button pressed)' \
        in_log '\[message\] statistics: ' || return 1
    log "awsvpc: $(grep -F 'statistics: ' "$AWS_LOG" | tail -n 1 | cut -d' ' -f3-)"
    # The Help button: Wireshark hands awsvpc's help= to the desktop's opener (xdg-open, a
    # recorder here), which must get a page on this machine.
    click_toolbar_button 3 "xdg-open called by the Help button" test -s "$ART/help-opened" || return 1
    log "Help opened: $(cat "$ART/help-opened")"
    # The logger button opens Wireshark's dialog with every line awsvpc sent on control 0.
    click_toolbar_button 2 "the awsvpc Log dialog" log_window_open || return 1
    shot awsvpc-gui # main window: toolbar + status bar, with the Log dialog over it
    # The main window is the largest one (its title changes as the capture goes on).
    main_geom=$(windows | awk -F'\t' '$1 !~ / Log$/ { split($2, g, /[x+]/); a = g[1] * g[2]; if (a > best) { best = a; geom = $2 } } END { print geom }')
    log "windows: $(windows | tr '\t\n' ' ;')"

    # Stop the capture the way a user does: the red Stop button of the main toolbar. The GUI
    # must process the click (its main thread is not blocked) and SIGTERM awsvpc.
    grab before-stop
    xy=$(python3 "$XHELPER" stop "$TMPD/before-stop.ppm") || { log "no red Stop button: is the capture running?"; return 1; }
    read -r stop_x stop_y <<<"$xy"
    python3 "$XHELPER" click "$stop_x" "$stop_y"
    poll 10 'wireshark: "Capture Stop ..." (the GUI handled the click)' ws_err_has 'Capture Stop ...' || return 1
    poll 20 'awsvpc log: "capture ended"' in_log 'capture ended' || return 1
    poll 20 'wireshark: "Capture stopped."' ws_err_has 'Capture stopped.' || return 1
    log "awsvpc: $(grep -F 'capture ended' "$AWS_LOG" | tail -n 1 | cut -d' ' -f3-)"
    # The GUI reloads the file once the capture stopped; the Stop button turns grey then.
    poll 15 'the Stop button to turn grey' stop_button_grey || return 1
    shot stopped

    local extra
    extra=$(unexpected_windows "$main_geom")
    if [[ -n $extra ]]; then
        log "unexpected dialog(s) after the capture: $(tr '\t\n' ' ;' <<<"$extra") (see $ART/stopped.png)"
        return 1
    fi

    # Wireshark -k does not quit when a capture stops; end it as a window manager would.
    log "sending SIGTERM to wireshark ($WS_PID)"
    kill -TERM "$WS_PID"
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$WS_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$WS_PID" 2>/dev/null; then
        log "wireshark did not exit within 10s of SIGTERM"
        kill -KILL "$WS_PID" 2>/dev/null || true
        return 1
    fi
    wait "$WS_PID" || true
    WS_PID=
    log "wireshark exited"
}

stop_button_grey() {
    grab grey && ! python3 "$XHELPER" stop "$TMPD/grey.ppm" >/dev/null 2>&1
}

if [[ ${AWSVPC_GUI_INNER:-} == 1 ]]; then
    WS_PID=
    trap '[[ -n ${WS_PID:-} ]] && kill -KILL "$WS_PID" 2>/dev/null || true' EXIT
    if ! inner; then
        shot failure || true
        exit 1
    fi
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Outer part: setup, testbed, run the inner part under xvfb-run, check results, tear down.

(($# <= 1)) || { echo "usage: $0 [path-to-awsvpc-binary]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "must run as root (network namespaces)"
BIN=${1:-$ROOT/target/debug/awsvpc}
[[ -x $BIN ]] || die "awsvpc binary not found or not executable: $BIN"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
for c in wireshark xvfb-run Xvfb import capinfos python3 ip timeout; do
    command -v "$c" >/dev/null || die "missing command: $c (Debian: apt-get install wireshark xvfb imagemagick)"
done

export ART=${GUI_ARTIFACTS:-/tmp/awsvpc-gui}
export TESTBED_PREFIX=${AWSVPC_GUI_TESTBED:-awsgui}
export TESTBED_VNI=${TESTBED_VNI:-4242}
mkdir -p "$ART"
rm -f "$ART"/{awsvpc.log,wireshark.stdout,wireshark.stderr,capture.pcapng,help-opened,*.png}
export AWS_LOG=$ART/awsvpc.log

TMPD=$(mktemp -d /tmp/awsvpc-gui.XXXXXX)
export TMPD
cleanup() {
    local rc=$?
    TESTBED_PREFIX=$TESTBED_PREFIX bash "$NETNS" down || true
    rm -rf -- "$TMPD"
    if ((rc != 0)); then
        log "artifacts in $ART:"
        ls -l "$ART" >&2 || true
        [[ -s $AWS_LOG ]] && { log "awsvpc log tail:"; tail -n 15 "$AWS_LOG" >&2; }
        [[ -s $ART/wireshark.stderr ]] && { log "wireshark stderr tail:"; tail -n 15 "$ART/wireshark.stderr" >&2; }
    fi
    exit "$rc"
}
trap cleanup EXIT

# A private HOME: awsvpc in the personal extcap folder, no first-run prompts, toolbar shown.
export GUI_HOME=$TMPD/home
mkdir -p "$TMPD/xdg" && chmod 700 "$TMPD/xdg"
HOME=$GUI_HOME "$BIN" install --symlink >&2
WSCONF=$GUI_HOME/.config/wireshark
[[ -x $WSCONF/extcap/awsvpc ]] || die "awsvpc install did not create $WSCONF/extcap/awsvpc"
cat >"$WSCONF/recent_common" <<'EOF'
# No "running as root" / "unable to capture" warnings.
privs.warn_if_elevated: FALSE
sys.warn_if_no_capture: FALSE
gui.geometry_main_x: 0
gui.geometry_main_y: 0
gui.geometry_main_width: 1280
gui.geometry_main_height: 800
gui.geometry_main_maximized: FALSE
EOF
# The per-profile recent file holds which interface toolbars are shown (View › Interface
# Toolbars); the entry is the extcap's display name.
cat >"$WSCONF/recent" <<'EOF'
gui.interface_toolbar_show: "AWS VPC Traffic Mirroring"
EOF

TESTBED_PREFIX=$TESTBED_PREFIX bash "$NETNS" up >&2
export MIRROR_MAC
MIRROR_MAC=$(TESTBED_PREFIX=$TESTBED_PREFIX bash "$NETNS" mac)

# The desktop's opener, as Qt finds it on PATH: it records what the Help button opens.
mkdir -p "$TMPD/bin"
printf '#!/bin/sh\nprintf "%%s\\n" "$*" >>"%s"\n' "$ART/help-opened" >"$TMPD/bin/xdg-open"
chmod +x "$TMPD/bin/xdg-open"
export PATH="$TMPD/bin:$PATH"

log "running Wireshark in namespace $TESTBED_PREFIX-col under xvfb-run"
rc=0
AWSVPC_GUI_INNER=1 timeout -k 5 90 ip netns exec "$TESTBED_PREFIX-col" \
    xvfb-run -a -s "-screen 0 1600x1000x24" bash "$HERE/wireshark_gui.sh" || rc=$?
((rc == 0)) || die "GUI run failed (rc $rc)"

# ---------------------------------------------------------------------------------------------
# Results.
grep -qF 'toolbar initialized' "$AWS_LOG" || die "awsvpc never logged 'toolbar initialized'"
grep -qE '\[debug\] [1-9][0-9]* packets, ' "$AWS_LOG" || die "awsvpc logged no counters with packets"
grep -qF 'capture ended (Stopped)' "$AWS_LOG" ||
    die "awsvpc never logged 'capture ended (Stopped)' (the SIGTERM from Wireshark's Stop)"
if grep -qF 'fatal:' "$AWS_LOG"; then die "awsvpc logged a fatal error: $(grep -F 'fatal:' "$AWS_LOG")"; fi
[[ -s $ART/capture.pcapng ]] || die "no capture file $ART/capture.pcapng"
npk=$(capinfos -c -M -T -r "$ART/capture.pcapng" | awk -F'\t' '{print $2}')
[[ $npk =~ ^[0-9]+$ ]] && ((npk > 0)) || die "capture file has no packets (capinfos: ${npk:-?})"
written=$(grep -F 'capture ended' "$AWS_LOG" | grep -oE '[0-9]+ packets \(' | grep -oE '^[0-9]+' | tail -n 1)
for f in awsvpc-gui capturing stopped; do
    [[ -s $ART/$f.png ]] || die "screenshot $ART/$f.png missing"
done
# Help opened a page on this disk (Wireshark's toolbar hands xdg-open the path as given;
# it refuses file: URLs): awsvpc's own README, this version.
help_path=$(head -n 1 "$ART/help-opened")
[[ $help_path == /* && -f $help_path ]] || die "the Help button opened '$help_path', not a local file"
grep -qF '<title>awsvpc ' "$help_path" || die "the Help page $help_path is not awsvpc's documentation"
log "capture file: $npk packets (awsvpc wrote ${written:-?})"
echo "screenshot: $ART/awsvpc-gui.png"
echo "PASS: Wireshark GUI captured $npk mirrored packets with the awsvpc toolbar and stopped cleanly"
