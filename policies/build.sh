#!/usr/bin/env bash
# Builds the example policies, in every language, into OUT_DIR/<name>.wasm.
#
#   policies/build.sh OUT_DIR [LANGUAGE...]     LANGUAGE: rust c js python (default: all four)
#
# - rust: policies/azure-first, cost, compliance, prefer-eu (cargo packages) -> <package>.wasm.
#   Built with cargo for wasm32-wasip2 in the `guest` profile, in the same target dir
#   host/build.rs uses ($CARGO_TARGET_DIR/guests, default target/guests), so either
#   build reuses the other's work.
# - c, js, python: every policies/*-c, *-js, *-py folder -> <folder>.wasm, e.g.
#   compliance-c.wasm, compliance-js.wasm, compliance-py.wasm. The build functions
#   live in policies/lib/<language>.sh; the npm and pip tools they need are installed
#   locally at pinned versions (a policy folder's node_modules/, a venv under
#   $CARGO_TARGET_DIR/tools/), never globally.
#
# Every language asked for is built. When one's toolchain is missing, the script
# says which tool is missing and how to install it, goes on with the others, and
# exits 1 at the end; pass only the languages you have (e.g. `rust js`) to build
# a subset. Exit status: 0 all built, 1 a language failed or lacks its toolchain,
# 2 usage error.
set -euo pipefail

# The repository root, from this script's location.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=lib/c.sh
source "$ROOT/policies/lib/c.sh"
# shellcheck source=lib/js.sh
source "$ROOT/policies/lib/js.sh"
# shellcheck source=lib/python.sh
source "$ROOT/policies/lib/python.sh"

# Rust example policies: cargo package names; each lands as OUT_DIR/<package>.wasm.
RUST_POLICIES=(azure-first cost compliance prefer-eu)

# Every language, in build order.
LANGUAGES=(rust c js python)

# build_rust OUT_DIR: builds the Rust example policies and copies the components out.
build_rust() {
    local out_dir=$1
    local target_dir="${CARGO_TARGET_DIR:-$ROOT/target}/guests"
    local args=() name built
    if ! command -v cargo >/dev/null; then
        policy_missing Rust "cargo" "rustup (https://rustup.rs), then: rustup target add wasm32-wasip2"
        return 1
    fi
    for name in "${RUST_POLICIES[@]}"; do
        args+=(-p "$name")
    done
    (cd "$ROOT" && cargo build --profile guest --target wasm32-wasip2 --target-dir "$target_dir" "${args[@]}") ||
        return 1
    for name in "${RUST_POLICIES[@]}"; do
        # cargo names the artifact after the crate: dashes become underscores.
        built="$target_dir/wasm32-wasip2/guest/${name//-/_}.wasm"
        cp "$built" "$out_dir/$name.wasm" || return 1
        echo "built $out_dir/$name.wasm ($(wc -c <"$out_dir/$name.wasm") bytes, rust)"
    done
}

usage() {
    echo "usage: $0 OUT_DIR [rust|c|js|python ...]   (default: all four)" >&2
    exit 2
}

main() {
    if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
        usage
    fi
    mkdir -p "$1"
    local out_dir
    out_dir=$(cd "$1" && pwd)
    shift
    local wanted=("$@") lang failed=()
    if [ ${#wanted[@]} -eq 0 ]; then
        wanted=("${LANGUAGES[@]}")
    fi
    for lang in "${wanted[@]}"; do
        case "$lang" in
        rust | c | js | python) ;;
        py) lang=python ;;
        *)
            echo "unknown language '$lang'" >&2
            usage
            ;;
        esac
        echo "== $lang policies"
        if ! "build_$lang" "$out_dir"; then
            failed+=("$lang")
        fi
    done
    if [ ${#failed[@]} -gt 0 ]; then
        echo "error: not built: ${failed[*]} (see the messages above; build the others with" \
            "\`$0 OUT_DIR LANGUAGE...\`)" >&2
        exit 1
    fi
}

main "$@"
