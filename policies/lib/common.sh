# Shared by the per-language policy build functions (c.sh, js.sh, python.sh).
# Source it; it defines functions only.

# The repository root (two levels above this file).
policy_repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
}

# Cargo's target dir, where build intermediates and local tool installs live.
policy_target_dir() {
    local root
    root=$(policy_repo_root)
    echo "${CARGO_TARGET_DIR:-$root/target}"
}

# Prints a "missing toolchain" message to stderr: policy_missing LANG WHAT HOW.
policy_missing() {
    {
        echo "error: building $1 policies needs $2 (not found)."
        echo "  install: $3"
    } >&2
}

# Builds the workspace's guest-tool (C bindings, component encoding, world
# check) once and prints the binary's path.
policy_guest_tool() {
    local root target
    root=$(policy_repo_root)
    target=$(policy_target_dir)
    cargo build --quiet --manifest-path "$root/Cargo.toml" -p guest-tool >&2 || return 1
    echo "$target/debug/guest-tool"
}

# Lists policy folders for one language suffix, e.g. `policy_dirs c` gives
# policies/*-c folders (the policy's name is the folder name).
policy_dirs() {
    local root dir
    root=$(policy_repo_root)
    for dir in "$root"/policies/*-"$1"; do
        if [ -d "$dir" ]; then
            echo "$dir"
        fi
    done
}

# Prints seconds elapsed since START (an earlier $EPOCHREALTIME), e.g. "1.42".
policy_elapsed() {
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}
