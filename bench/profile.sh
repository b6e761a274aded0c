#!/usr/bin/env bash
# Profiles Switchyard's request path (release build, two-stage WASM chain, fast nginx
# upstream), with one or both of:
#
#   BENCH_PROFILER=callgrind bench/profile.sh  # instruction counts per request (stable on a noisy machine)
#   BENCH_PROFILER=perf bench/profile.sh       # sampled CPU time under closed-loop load
#   bench/profile.sh                           # both
#   BENCH_PROFILER=wakeups bench/profile.sh    # kernel time split, floor vs no policies vs chain
#
# Output in target/bench/profile/: callgrind.out + callgrind-inclusive.txt /
# callgrind-self.txt (callgrind_annotate), perf.data + perf-self.txt / perf-children.txt,
# wakeups.md.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/systems.sh
source "$BENCH_DIR/lib/systems.sh"

PROFILER=${BENCH_PROFILER:-callgrind perf}
CG_REQUESTS=${BENCH_CG_REQUESTS:-2000}      # requests counted under callgrind
PERF_SECONDS=${BENCH_PERF_SECONDS:-10}
P=$OUT/profile

# load_n N C: N requests over C connections, closed loop.
load_n() {
    "${LOAD_CPU[@]}" "$OHA" --no-tui --output-format json -n "$1" -c "$2" \
        -m POST -H "authorization: Bearer $CLIENT_KEY" -H 'content-type: application/json' \
        -d "$(request_body gpt-4o)" "$(url_of switchyard)" >"$RUN/profile-load.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["statusCodeDistribution"])' "$RUN/profile-load.json" >&2
}

run_callgrind() {
    command -v valgrind >/dev/null || { log "no valgrind: apt-get install valgrind"; return 0; }
    log "callgrind: starting switchyard under valgrind (slow start)"
    rm -f "$P"/callgrind.out*
    # The pooling allocator reserves ~8.6 GB of address space per instance slot;
    # valgrind cannot map the default 1000 slots, so allow only 4 under callgrind;
    # and valgrind is ~50× slower than native, so the policies get a 10 s deadline.
    SWITCHYARD_ENGINE_EXTRA="max_instances = 4" SWITCHYARD_POLICY_EXTRA="deadline_ms = 10000" \
        start_switchyard 0 valgrind --tool=callgrind --smc-check=all-non-file \
        --collect-atstart=yes --callgrind-out-file="$P/callgrind.out" \
        --trace-children=no
    check_answer switchyard
    load_n 500 4 # warm-up: pools, connections, caches
    callgrind_control -z "$SWITCHYARD_PID" >/dev/null
    load_n "$CG_REQUESTS" 4
    callgrind_control -d "$SWITCHYARD_PID" >/dev/null
    stop_pid "$SWITCHYARD_PID"
    # The explicit dump (zero → dump) is callgrind.out.1; callgrind.out is what ran
    # after it, until exit.
    local dump=$P/callgrind.out.1
    local total
    # awk reads to the end: exiting early would kill callgrind_annotate with SIGPIPE.
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen { gsub(",", "", $1); print $1; seen = 1 }')
    log "callgrind: $total instructions over $CG_REQUESTS requests = $((total / CG_REQUESTS)) per request"
    echo "instructions per request: $((total / CG_REQUESTS)) ($total over $CG_REQUESTS requests, after a 500-request warm-up)" >"$P/callgrind-summary.txt"
    callgrind_annotate --inclusive=yes --threshold=99 "$dump" >"$P/callgrind-inclusive.txt" 2>/dev/null || true
    callgrind_annotate --threshold=99 "$dump" >"$P/callgrind-self.txt" 2>/dev/null || true
}

run_perf() {
    command -v perf >/dev/null || { log "no perf: apt-get install linux-perf"; return 0; }
    log "perf: $PERF_SECONDS s of closed-loop load"
    # The perf map names the policies' compiled functions (else "[JIT] tid N").
    SWITCHYARD_ENGINE_EXTRA="perf_map = true" start_switchyard 0
    check_answer switchyard
    load_n 20000 64
    BENCH_BODY=$(request_body gpt-4o) BENCH_KEY=$CLIENT_KEY "${LOAD_CPU[@]}" \
        wrk -t1 -c64 -d"$((PERF_SECONDS + 2))s" -s "$BENCH_DIR/lib/post.lua" "$(url_of switchyard)" \
        >"$RUN/profile-wrk.txt" &
    local wrk_pid=$!
    sleep 1
    perf record -F 999 --call-graph dwarf,16384 -o "$P/perf.data" -p "$SWITCHYARD_PID" \
        -- sleep "$PERF_SECONDS" 2>"$RUN/perf-record.log" || log "perf record failed: $(tail -n 2 "$RUN/perf-record.log")"
    wait "$wrk_pid" || true
    stop_pid "$SWITCHYARD_PID"
    perf report -i "$P/perf.data" --no-children --sort dso,symbol --stdio --percent-limit 0.5 \
        >"$P/perf-self.txt" 2>/dev/null || true
    perf report -i "$P/perf.data" --children --sort symbol --stdio --no-call-graph --percent-limit 2 \
        >"$P/perf-children.txt" 2>/dev/null || true
    perf report -i "$P/perf.data" --no-children --sort dso,symbol --stdio -g none \
        2>/dev/null | python3 "$BENCH_DIR/lib/perf_by_crate.py" >"$P/perf-by-crate.txt" || true
    log "perf: top self costs in $P/perf-self.txt, by crate in $P/perf-by-crate.txt"
}

# idle_entries: how many times the load generator's CPU has gone idle (cpuidle
# states other than polling), or nothing when the kernel does not say.
idle_entries() {
    local dir=/sys/devices/system/cpu/cpu${CPU_LOAD:-0}/cpuidle state sum=0
    [ "$PIN" = 1 ] && [ -d "$dir" ] || return 0
    for state in "$dir"/state*; do
        [ "$(cat "$state/name")" = POLL ] || sum=$((sum + $(cat "$state/usage")))
    done
    echo "$sum"
}

# run_wakeups: hyper-floor, Switchyard without policies and with the chain, each at
# the same fixed rate (oha), under perf record with kernel call graphs. Splits CPU
# per request into user time, the kernel's wake-ups of the socket's reader (the
# load generator or the upstream, on the other CPU) and the rest of the kernel's
# time, and counts how often the other CPU went idle.
run_wakeups() {
    command -v perf >/dev/null || { log "no perf: apt-get install linux-perf"; return 0; }
    local rate=${BENCH_WAKEUP_RATE:-30000} seconds=${BENCH_PERF_SECONDS:-10} hz=4999
    log "wakeups: $seconds s at $rate req/s for each of hyper-floor, switchyard-bare, switchyard"
    start_floor
    start_switchyard_bare
    start_switchyard 0
    {
        echo "| gateway | requests | user µs | kernel µs: waking the reader | kernel µs: the rest | load CPU idle entries per request |"
        echo "|---|---:|---:|---:|---:|---:|"
    } >"$P/wakeups.md"
    local sys
    for sys in hyper-floor switchyard-bare switchyard; do
        check_answer "$sys"
        perf record -F "$hz" -g -o "$P/wakeups-$sys.data" -p "$(pid_of "$sys")" \
            -- sleep "$((seconds + 1))" 2>>"$RUN/perf-record.log" &
        local perf_pid=$! before after
        sleep 0.5
        before=$(idle_entries)
        "${LOAD_CPU[@]}" "$OHA" --no-tui --output-format json -z "${seconds}s" -q "$rate" -c 64 \
            --latency-correction -m POST -H "authorization: Bearer $CLIENT_KEY" \
            -H 'content-type: application/json' -d "$(request_body "$(model_of "$sys")")" \
            "$(url_of "$sys")" >"$RUN/wakeups-$sys.json"
        after=$(idle_entries)
        wait "$perf_pid" || true
        local requests idle=
        requests=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["statusCodeDistribution"].values()))' "$RUN/wakeups-$sys.json")
        [ -n "$before" ] && [ -n "$after" ] && idle=$((after - before))
        perf script -i "$P/wakeups-$sys.data" -F ip,sym 2>/dev/null |
            python3 "$BENCH_DIR/lib/wakeups.py" "$sys" "$requests" "$hz" ${idle:+"$idle"} >>"$P/wakeups.md"
    done
    log "wakeups: $P/wakeups.md"
    cat "$P/wakeups.md" >&2
}

main() {
    bench_init
    mkdir -p "$P"
    ensure_tools
    ensure_switchyard
    start_upstream
    local p
    for p in $PROFILER; do "run_$p"; done
    log "profiles in $P"
}

main "$@"
