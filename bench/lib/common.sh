# shellcheck shell=bash disable=SC2034
# Shared settings and helpers for bench/run.sh, bench/soak.sh and bench/profile.sh.
# Sourced, not run. Everything it starts is recorded in $BENCH_PIDS and stopped by
# bench_cleanup (installed as an EXIT trap by bench_init).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$TARGET/bench}            # results and logs (never committed)
RUN=$OUT/run                               # per-run configs, pid files, logs
TOOLS=$TARGET/tools                        # oha and the LiteLLM venv

# Pinned tool versions (installed locally when absent).
OHA_VERSION=1.16.0
LITELLM_VERSION=1.102.4   # newer releases need a certifi the registry here lacks

# Loopback ports: BENCH_PORT_BASE + offset.
PORT_BASE=${BENCH_PORT_BASE:-18400}
P_FAST=$((PORT_BASE + 1))        # upstream nginx, static completion
P_SLOW=$((PORT_BASE + 2))        # upstream nginx, 20 ms echo_sleep then the completion
P_FLAKY=$((PORT_BASE + 3))       # upstream nginx, 10 % HTTP 500 (soak)
P_NGX_FAST=$((PORT_BASE + 10))   # nginx proxy_pass -> fast
P_NGX_SLOW=$((PORT_BASE + 11))   # nginx proxy_pass -> slow
P_SY=$((PORT_BASE + 20))         # switchyard client listener
P_SY_ADMIN=$((PORT_BASE + 21))   # switchyard admin listener
P_SYB=$((PORT_BASE + 22))        # switchyard without policies ("switchyard-bare")
P_SYB_ADMIN=$((PORT_BASE + 23))  # its admin listener
P_SYP=$((PORT_BASE + 24))         # switchyard's PGO build, with the chain ("switchyard-pgo")
P_SYP_ADMIN=$((PORT_BASE + 25))   # its admin listener
P_LLM=$((PORT_BASE + 30))        # LiteLLM proxy
P_FLOOR_FAST=$((PORT_BASE + 40)) # hyper-floor -> fast
P_FLOOR_SLOW=$((PORT_BASE + 41)) # hyper-floor -> slow

# CPU placement (see bench/README.md): the gateway under test gets one CPU, the load
# generator and the upstream share the other. BENCH_PIN=0 disables pinning.
PIN=${BENCH_PIN:-1}
NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
    CPU_GATEWAY=${BENCH_CPU_GATEWAY:-1}
    CPU_LOAD=${BENCH_CPU_LOAD:-0}
else
    PIN=0
fi

CLIENT_KEY=sk-bench-client      # the gateways' client key (sent by every load generator)
UPSTREAM_KEY=sk-bench-upstream  # what the gateways send upstream (nginx ignores it)

BENCH_PIDS=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Command prefixes that pin what follows (taskset execs it, so $! stays its PID).
GW_CPU=()
LOAD_CPU=()
if [ "$PIN" = 1 ]; then
    GW_CPU=(taskset -c "$CPU_GATEWAY")
    LOAD_CPU=(taskset -c "$CPU_LOAD")
fi

bench_init() {
    mkdir -p "$OUT" "$RUN"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
}

# stop_pid PID: stops one process this script started.
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# wait_http URL [PID]: waits up to 180 s for URL to answer (any status); fails early
# when PID (the server) has exited.
wait_http() {
    local url=$1 pid=${2:-} i
    for i in $(seq 1 360); do
        if curl -s -o /dev/null -m 2 "$url"; then return 0; fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            die "the server for $url exited (logs in $RUN)"
        fi
        sleep 0.5
    done
    die "$url did not come up (logs in $RUN)"
}

# port_free PORT: fails when something listens on 127.0.0.1:PORT.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# tree_pids PID: PID and all its descendants.
tree_pids() {
    local pid=$1 child
    echo "$pid"
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        tree_pids "$child"
    done
}

# cpu_ticks PID: "user system" CPU time of PID's process tree, in clock ticks
# (/proc/PID/stat utime and stime; every thread, including those that exited).
cpu_ticks() {
    local p
    for p in $(tree_pids "$1"); do
        awk '{ print $14, $15 }' /proc/"$p"/stat 2>/dev/null
    done | awk '{ u += $1; s += $2 } END { print u + 0, s + 0 }'
}

# status_kib PID FIELD: FIELD (VmHWM, VmRSS) of PID summed over its process tree, in KiB.
status_kib() {
    local total=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' /proc/"$p"/status 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# ensure_tools: nginx + echo module + wrk (apt), oha (cargo, pinned), curl.
ensure_tools() {
    local sudo="" missing=()
    [ "$(id -u)" = 0 ] || sudo=sudo
    command -v nginx >/dev/null || missing+=(nginx)
    [ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] || missing+=(libnginx-mod-http-echo)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v taskset >/dev/null || missing+=(util-linux)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} (apt)"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
    OHA=$TOOLS/bin/oha
    if ! [ -x "$OHA" ] || ! "$OHA" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
        log "installing oha $OHA_VERSION into $TOOLS (cargo install)"
        cargo install oha --version "$OHA_VERSION" --locked --root "$TOOLS" >&2
    fi
}

# ensure_litellm: LiteLLM's proxy, pinned, in a venv under target/tools.
ensure_litellm() {
    LITELLM_VENV=$TOOLS/litellm-venv
    if ! "$LITELLM_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$LITELLM_VERSION')" 2>/dev/null; then
        log "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV (pip)"
        python3 -m venv "$LITELLM_VENV"
        "$LITELLM_VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" >&2
    fi
}

# ensure_switchyard: release build and the example policies built from source.
# BENCH_REV=REV builds that git revision instead of the work tree (exported to
# target/bench/src-REV, built with the shared target dir), e.g. to benchmark the last
# commit while the work tree is mid-edit.
ensure_switchyard() {
    local src=$ROOT
    SWITCHYARD_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)
    if (cd "$ROOT" && ! git diff --quiet HEAD 2>/dev/null); then SWITCHYARD_REV+="+dirty"; fi
    if [ -n "${BENCH_REV:-}" ]; then
        SWITCHYARD_REV=$(cd "$ROOT" && git rev-parse --short "$BENCH_REV")
        src=$OUT/src-$SWITCHYARD_REV
        if ! [ -f "$src/Cargo.toml" ]; then
            mkdir -p "$src"
            (cd "$ROOT" && git archive "$SWITCHYARD_REV") | tar -x -C "$src"
        fi
    fi
    if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
        log "cargo build --release -p switchyard -p hyper-floor (in $src)"
        (cd "$src" && CARGO_TARGET_DIR=$TARGET cargo build --release -p switchyard -p hyper-floor >&2)
        mkdir -p "$OUT/guests"
        CARGO_TARGET_DIR=$TARGET "$src/policies/build.sh" "$OUT/guests" >&2
        # A copy: other builds sharing the target dir may replace target/release/switchyard.
        mkdir -p "$OUT/bin"
        cp "$TARGET/release/switchyard" "$OUT/bin/switchyard"
        cp "$TARGET/release/hyper-floor" "$OUT/bin/hyper-floor"
        echo "$SWITCHYARD_REV" >"$OUT/bin/switchyard.rev"
    fi
    SWITCHYARD=$OUT/bin/switchyard
    HYPER_FLOOR=$OUT/bin/hyper-floor
    SWITCHYARD_REV=$(cat "$OUT/bin/switchyard.rev" 2>/dev/null || echo "$SWITCHYARD_REV")
    [ -x "$SWITCHYARD" ] || die "no $SWITCHYARD"
    if ! [ -f "$OUT/guests/compliance.wasm" ] || ! [ -f "$OUT/guests/cost.wasm" ]; then
        die "no built policies in $OUT/guests (run without BENCH_NO_BUILD=1)"
    fi
}

# Versions line for the report.
versions() {
    echo "- switchyard: ${SWITCHYARD_REV:-?} ($("$SWITCHYARD" --version 2>/dev/null)), $(rustc --version 2>/dev/null)"
    if [ -n "${SWITCHYARD_PGO:-}" ]; then
        echo "- switchyard-pgo: $(cat "$SWITCHYARD_PGO.rev" 2>/dev/null || echo ?), cargo-pgo ${CARGO_PGO_VERSION:-?}, trained on this benchmark's traffic (bench/lib/pgo.sh)"
    fi
    echo "- nginx: $(nginx -v 2>&1 | sed 's/.*version: //'), echo module $(dpkg-query -W -f '${Version}' libnginx-mod-http-echo 2>/dev/null)"
    echo "- wrk: $(dpkg-query -W -f '${Version}' wrk 2>/dev/null), oha: $("$OHA" --version 2>/dev/null | awk '{print $2}')"
    if [ -n "${LITELLM_VENV:-}" ]; then
        echo "- litellm: $LITELLM_VERSION ($("$LITELLM_VENV/bin/python" --version 2>&1))"
    fi
}

machine() {
    echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
    if [ "$PIN" = 1 ]; then
        echo "- pinning: gateway on CPU $CPU_GATEWAY; load generator + upstream nginx on CPU $CPU_LOAD"
    else
        echo "- pinning: none"
    fi
    echo "- load at start: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
}
