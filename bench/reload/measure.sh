#!/usr/bin/env bash
# Hot reload timings (issue 4), printed, never asserted:
#
#   bench/reload/measure.sh
#
# - change → serving: a policy file is replaced (atomic rename or in-place write)
#   50 times per scenario; the time until the first request is answered by the
#   new version (`x-switchyard-policy: router@<hash8>`), p50/p95/max. "known
#   versions" alternates two Rust policies whose compiled artifacts are cached;
#   "new component" appends a custom section so every swap is a new hash that
#   must be compiled.
# - restart: `switchyard serve` with a large component until `/readyz` answers
#   200, with an empty artifact cache (cold), then 5 times with it filled.
#   The component is $SWITCHYARD_BENCH_POLICY, else the 12 MB JS compliance
#   build (target/policies or target/guests-try/compliance-js.wasm, from
#   policies/build.sh), else the largest built Rust guest (the output says which).
# - soak: 200 policy swaps under steady traffic (the e2e test, more swaps).
#
# Both run the real binary of the test profile (dependencies, wasmtime and
# cranelift included, are optimized there; see [profile.dev.package."*"]).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
cargo test -p switchyard --test reload -- --ignored --nocapture --test-threads 1 measure

# The design's soak: 200 swaps across every write pattern (and garbage files)
# under 8 looping clients, 0 failed requests.
SWITCHYARD_RELOAD_SWAPS=200 cargo test -p switchyard --test reload -- --nocapture policy_swaps_under_traffic
