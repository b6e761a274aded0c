#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a fixed time each.
#
#   fuzz/run.sh                      # every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh request_view h1_framing
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 60)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer: none (default) or address (needs nightly)
#   FUZZ_TOOLCHAIN  rustup toolchain (default: the release ../rust-toolchain.toml
#                   pins, with RUSTC_BOOTSTRAP=1, which enables the -Z flags
#                   cargo-fuzz passes; a nightly with wasm32-wasip2 for ASan)
#
# The committed seeds in corpus/<target>/ are read, never written: new inputs go
# to target/corpus/<target>/, crashes to artifacts/<target>/. The script prints
# one summary line per target and exits non-zero when any target crashed.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
toolchain="${FUZZ_TOOLCHAIN:-}"
if [[ -z "$toolchain" ]]; then
    # The release the workspace pins (wasmtime needs a recent one, and the
    # build script builds the policies with its wasm32-wasip2 target), with
    # RUSTC_BOOTSTRAP=1 for cargo-fuzz's -Z flags.
    toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' ../rust-toolchain.toml)
    export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

echo "building the targets (first build: ~15 min on 2 cores)" >&2
cargo "+$toolchain" fuzz build -s "$sanitizer" -a
status=0
for target in "${targets[@]}"; do
    mkdir -p "target/corpus/$target" "artifacts/$target"
    log="target/fuzz-$target.log"
    set +e
    cargo "+$toolchain" fuzz run -s "$sanitizer" -a "$target" \
        "target/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 >"$log" 2>&1
    code=$?
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    corpus=$(find "target/corpus/$target" -type f | wc -l)
    if [[ $code -eq 0 ]]; then
        echo "$target: ${seconds} s, ${runs} runs, ${corpus} corpus entries, no crash"
    else
        echo "$target: CRASHED after ${runs} runs (exit $code); see $log and artifacts/$target/"
        status=1
    fi
done
exit $status
