# shellcheck shell=bash
# A profile-guided (PGO) build of Switchyard, for bench/pgo.sh and `BENCH_PGO=1
# bench/run.sh`. Sourced after common.sh and systems.sh, and after
# ensure_switchyard (the training run needs the built policies).
#
# cargo-pgo drives the three steps: an instrumented release build, a training
# run whose profiles land in target/pgo-profiles, and a release build that reads
# them. Training is the benchmark's own traffic on loopback: the chat request
# through the two-stage chain, through an empty chain, and through the chain with
# a 10 %-failing first upstream (fallbacks). A deployment should train on its
# own traffic mix instead; see bench/README.md.

CARGO_PGO_VERSION=0.3.0
PGO_TRAIN_SECONDS=${BENCH_PGO_TRAIN_SECONDS:-8}

# ensure_switchyard_pgo: builds (unless BENCH_NO_BUILD=1 and one exists)
# $OUT/bin/switchyard-pgo and sets SWITCHYARD_PGO.
ensure_switchyard_pgo() {
    SWITCHYARD_PGO=$OUT/bin/switchyard-pgo
    if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
        [ -x "$SWITCHYARD_PGO" ] || die "no $SWITCHYARD_PGO (run without BENCH_NO_BUILD=1)"
        return 0
    fi
    rustup component add llvm-tools >&2
    if ! "$TOOLS/bin/cargo-pgo" --version 2>/dev/null | grep -q "$CARGO_PGO_VERSION"; then
        log "installing cargo-pgo $CARGO_PGO_VERSION into $TOOLS (cargo install)"
        cargo install cargo-pgo --version "$CARGO_PGO_VERSION" --locked --root "$TOOLS" >&2
    fi
    local pgo=("$TOOLS/bin/cargo-pgo" pgo) triple
    triple=$(rustc -vV | sed -n 's/^host: //p')
    # cargo-pgo builds for an explicit --target, so its binaries and the
    # profiles it reads live apart from target/release.
    local instrumented=$TARGET/$triple/release/switchyard
    (
        cd "$ROOT"
        export CARGO_TARGET_DIR=$TARGET
        "${pgo[@]}" clean >&2
        log "PGO 1/3: instrumented build (cargo pgo build)"
        "${pgo[@]}" build -- -p switchyard --bin switchyard >&2
    )
    log "PGO 2/3: training on the benchmark's traffic (${PGO_TRAIN_SECONDS}s per config)"
    pgo_train "$instrumented"
    log "PGO 3/3: optimized build (cargo pgo optimize build)"
    (
        cd "$ROOT"
        CARGO_TARGET_DIR=$TARGET "${pgo[@]}" optimize build -- -p switchyard --bin switchyard >&2
    )
    cp "$TARGET/$triple/release/switchyard" "$SWITCHYARD_PGO"
    echo "$SWITCHYARD_REV" >"$OUT/bin/switchyard-pgo.rev"
}

# pgo_train BINARY: runs the instrumented BINARY under the training traffic; each
# run ends with SIGTERM, on which Switchyard exits normally and writes its profile.
pgo_train() {
    local binary=$1 body run name flaky policies pid
    body=$(request_body gpt-4o)
    start_upstream
    for run in "chain 0 chain" "bare 0 none" "fallback 1 chain"; do
        read -r name flaky policies <<<"$run"
        [ "$policies" = chain ] && policies='["compliance", "cost"]' || policies='[]'
        SWITCHYARD=$binary launch_switchyard "pgo-train-$name" "$flaky" "$P_SY" "$P_SY_ADMIN" "$policies"
        pid=$LAUNCHED_PID
        BENCH_BODY=$body BENCH_KEY=$CLIENT_KEY "${LOAD_CPU[@]}" wrk -t1 -c"${BENCH_CONNS:-64}" \
            -d"${PGO_TRAIN_SECONDS}s" -s "$BENCH_DIR/lib/post.lua" "$(url_of switchyard)" >"$RUN/pgo-train-$name.txt"
        stop_pid "$pid"
    done
    stop_pid "$UPSTREAM_PID"
    ls "$TARGET"/pgo-profiles/*.profraw >/dev/null 2>&1 || die "training wrote no profiles"
}
