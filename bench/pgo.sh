#!/usr/bin/env bash
# Builds Switchyard with profile-guided optimization into target/bench/bin/switchyard-pgo
# (cargo-pgo: instrumented build, a training run on the benchmark's loopback traffic,
# optimized build; about twice a clean release build). `BENCH_PGO=1 bench/run.sh` does
# this itself and adds the PGO build as its own row.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/systems.sh
source "$BENCH_DIR/lib/systems.sh"
# shellcheck source=lib/pgo.sh
source "$BENCH_DIR/lib/pgo.sh"

bench_init
ensure_tools
ensure_switchyard
ensure_switchyard_pgo
log "wrote $SWITCHYARD_PGO"
