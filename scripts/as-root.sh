# Sourced by the set-up scripts (bash). `as_root WHY "$@"` returns at once when the script
# already runs as root (a fresh Debian root shell has no sudo); otherwise it runs the script
# again through sudo, keeping this user's Rust toolchain; without sudo it says in one
# sentence what to do and exits. Variables named in AS_ROOT_KEEP (and CARGO_TARGET_DIR, CI,
# AWSVPC_SYSTEM_TESTS) go along.
as_root() {
    local why=$1
    shift
    [ "$(id -u)" = 0 ] && return 0
    if command -v sudo >/dev/null 2>&1; then
        echo "$(basename "$0"): $why needs root; asking sudo." >&2
        # env sets PATH past sudo's secure_path so cargo and rustup are found; the
        # toolchain stays this user's (RUSTUP_HOME), root gets its own cargo cache.
        local keep=() v
        for v in CARGO_TARGET_DIR CI AWSVPC_SYSTEM_TESTS ${AS_ROOT_KEEP:-}; do
            [ -n "${!v+x}" ] && keep+=("$v=${!v}")
        done
        exec sudo env "PATH=$PATH" "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" \
            "${keep[@]}" bash "$0" "$@"
    fi
    echo "$(basename "$0"): $why needs root and sudo is not installed; run it from a root shell (su -, then bash $0)." >&2
    exit 1
}
