#!/usr/bin/env bash
# Builds every example policy into OUT_DIR/<name>.wasm.
#
#   policies/build.sh OUT_DIR
#
# Rust policies (policies/azure-first, cost, compliance) are built with cargo for
# wasm32-wasip2 in the `guest` profile, in the same target dir host/build.rs uses
# ($CARGO_TARGET_DIR/guests, default target/guests), so either build reuses the other's work.
set -euo pipefail

# The repository root, from this script's location.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Rust example policies: cargo package names; each lands as OUT_DIR/<package>.wasm.
RUST_POLICIES=(azure-first cost compliance)

# build_rust OUT_DIR: builds the Rust example policies and copies the components out.
build_rust() {
    local out_dir=$1
    local target_dir="${CARGO_TARGET_DIR:-$ROOT/target}/guests"
    local args=() name built
    for name in "${RUST_POLICIES[@]}"; do
        args+=(-p "$name")
    done
    (cd "$ROOT" && cargo build --profile guest --target wasm32-wasip2 --target-dir "$target_dir" "${args[@]}")
    for name in "${RUST_POLICIES[@]}"; do
        # cargo names the artifact after the crate: dashes become underscores.
        built="$target_dir/wasm32-wasip2/guest/${name//-/_}.wasm"
        cp "$built" "$out_dir/$name.wasm"
        echo "built $out_dir/$name.wasm ($(wc -c <"$out_dir/$name.wasm") bytes, rust)"
    done
}

# Other languages (JS, Python, C) go here: one build_<lang> OUT_DIR function each
# (or sourced from policies/lib/<lang>.sh), called from main after build_rust.

main() {
    if [ $# -ne 1 ]; then
        echo "usage: $0 OUT_DIR" >&2
        exit 2
    fi
    mkdir -p "$1"
    local out_dir
    out_dir=$(cd "$1" && pwd)
    build_rust "$out_dir"
}

main "$@"
