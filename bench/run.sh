#!/usr/bin/env bash
# Side-by-side benchmark (issue 8): direct vs nginx proxy_pass vs Switchyard (two-stage
# WASM chain) vs LiteLLM's proxy, on loopback, one command. Two reference rows split
# Switchyard's cost: hyper-floor (the cheapest proxy on the same hyper/tokio stack,
# bench/floor) and switchyard-bare (Switchyard with no policies on the route).
#
#   bench/run.sh                                   # smoke run (short)
#   BENCH_DURATION=20s BENCH_ROUNDS=5 bench/run.sh # the published table
#
# Writes target/bench/latest.md (the table) and target/bench/results.jsonl (every run).
# Settings (environment):
#   BENCH_DURATION=5s      wrk duration per run (closed loop)
#   BENCH_LAT_DURATION=5s  oha duration per run (open loop)
#   BENCH_ROUNDS=3         rounds; each round runs every system once, in turn (A B C D A B …)
#   BENCH_CONNS=64         wrk connections
#   BENCH_LAT_CONNS=64     oha connections (more are used for the 20 ms upstream)
#   BENCH_SYSTEMS="direct nginx hyper-floor switchyard-bare switchyard litellm"
#                          (added latency needs direct)
#   SWITCHYARD_ROUTE_POLICIES='["compliance", "cost"]'  Switchyard's chain; '[]' for none
#   BENCH_SLOW=1           also measure latency through the 20 ms-delay upstream
#   BENCH_PIN=1            pin gateway / load generator to different CPUs (see README)
#   BENCH_PGO=1            also build Switchyard with PGO (bench/pgo.sh) and run that
#                          build, with the chain, as the `switchyard-pgo` row
#   BENCH_NO_BUILD=1       skip cargo build and the policy build
#   BENCH_PORT_BASE=18400  loopback ports used: base+1 … base+41
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/systems.sh
source "$BENCH_DIR/lib/systems.sh"
# shellcheck source=lib/pgo.sh
source "$BENCH_DIR/lib/pgo.sh"

DURATION=${BENCH_DURATION:-5s}
LAT_DURATION=${BENCH_LAT_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-64}
LAT_CONNS=${BENCH_LAT_CONNS:-64}
read -r -a SYSTEMS <<<"${BENCH_SYSTEMS:-direct nginx hyper-floor switchyard-bare switchyard litellm}"
if [ "${BENCH_PGO:-0}" = 1 ] && [[ " ${SYSTEMS[*]} " != *" switchyard-pgo "* ]]; then
    SYSTEMS+=(switchyard-pgo)
fi
SLOW=0
RESULTS=$OUT/results.jsonl

has() { [[ " ${SYSTEMS[*]} " == *" $1 "* ]]; }

# wrk_run SYSTEM ROUND: one closed-loop run; appends a result line, with the
# gateway's CPU time over the run (none for direct).
wrk_run() {
    local sys=$1 round=$2 line pid cpu_before="" cpu_after=""
    pid=$(pid_of "$sys")
    [ -n "$pid" ] && cpu_before=$(cpu_ticks "$pid")
    line=$(BENCH_BODY=$(request_body "$(model_of "$sys")") BENCH_KEY=$CLIENT_KEY \
        "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --timeout 30s --latency -s "$BENCH_DIR/lib/post.lua" \
        "$(url_of "$sys")" | tee "$RUN/wrk-$sys-$round.txt" | sed -n 's/^BENCHJSON //p')
    [ -n "$pid" ] && cpu_after=$(cpu_ticks "$pid")
    [ -n "$line" ] || die "wrk printed no summary for $sys (see $RUN/wrk-$sys-$round.txt)"
    python3 - "$sys" "$round" "$line" "$cpu_before" "$cpu_after" "$(getconf CLK_TCK)" >>"$RESULTS" <<'EOF'
import json, sys
system, rnd, raw = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
ok = raw["requests"] - raw["status_errors"]
row = {"phase": "throughput", "system": system, "round": rnd,
       "rps": ok / (raw["duration_us"] / 1e6), **raw}
if sys.argv[4] and sys.argv[5] and raw["requests"]:
    (u0, s0), (u1, s1) = (map(int, a.split()) for a in sys.argv[4:6])
    us_per_tick = 1e6 / int(sys.argv[6])
    row["cpu_user_us"] = (u1 - u0) * us_per_tick / raw["requests"]
    row["cpu_sys_us"] = (s1 - s0) * us_per_tick / raw["requests"]
print(json.dumps(row))
EOF
    log "throughput $sys round $round: $(tail -n1 "$RESULTS" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["rps"]))') req/s"
}

# oha_run SYSTEM ROUND RATE WHY: one open-loop run at RATE req/s; appends a result line.
oha_run() {
    local sys=$1 round=$2 rate=$3 why=$4 conns=$LAT_CONNS upstream=fast
    if [ "$SLOW" = 1 ]; then
        upstream="slow-20ms"
        conns=$((rate / 25 > LAT_CONNS ? rate / 25 : LAT_CONNS)) # 2× the in-flight need
    fi
    local json=$RUN/oha-$sys-$upstream-$rate-$round.json
    "${LOAD_CPU[@]}" "$OHA" --no-tui --output-format json -z "$LAT_DURATION" -c "$conns" \
        -q "$rate" --latency-correction \
        -m POST -H "authorization: Bearer $CLIENT_KEY" -H 'content-type: application/json' \
        -d "$(request_body "$(model_of "$sys")")" "$(url_of "$sys")" >"$json"
    python3 "$BENCH_DIR/lib/oha_row.py" "$json" "$sys" "$round" "$rate" "$upstream" "$why" >>"$RESULTS"
    log "latency $sys $upstream @${rate}/s round $round: $(tail -n1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("p50 %(p50_us).0f µs p99 %(p99_us).0f µs p99.9 %(p999_us).0f µs ok %(success).3f" % r)')"
}

# skip_row SYSTEM ROUND RATE WHY REASON: records that a system was not run at RATE.
skip_row() {
    printf '{"phase":"latency","system":"%s","round":%d,"rate":%d,"upstream":"%s","why":"%s","skipped":"%s"}\n' \
        "$1" "$2" "$3" "$([ "$SLOW" = 1 ] && echo slow-20ms || echo fast)" "$4" "$5" >>"$RESULTS"
}

median_rps() {
    python3 - "$RESULTS" "$1" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
v = [r["rps"] for r in rows if r["phase"] == "throughput" and r["system"] == sys.argv[2]]
print(int(statistics.median(v)) if v else 0)
EOF
}

# latency_phase RATE WHY: every system at RATE, ROUNDS rounds, alternating.
latency_phase() {
    local rate=$1 why=$2 round sys
    for round in $(seq 1 "$ROUNDS"); do
        for sys in "${SYSTEMS[@]}"; do
            if [ "$sys" = litellm ] && [ "$rate" -gt "$((LITELLM_MAX * 3 / 4))" ]; then
                skip_row "$sys" "$round" "$rate" "$why" "not run: above 75 % of its max throughput ($LITELLM_MAX req/s)"
                continue
            fi
            oha_run "$sys" "$round" "$rate" "$why"
        done
    done
}

main() {
    bench_init
    ensure_tools
    if has switchyard || has switchyard-bare || has switchyard-pgo || has hyper-floor; then ensure_switchyard; else SWITCHYARD=$TARGET/release/switchyard; fi
    has switchyard-pgo && ensure_switchyard_pgo
    has litellm && ensure_litellm
    : >"$RESULTS"
    local started cmd
    started=$(date -u +%Y-%m-%dT%H:%MZ)
    cmd="BENCH_DURATION=$DURATION BENCH_LAT_DURATION=$LAT_DURATION BENCH_ROUNDS=$ROUNDS BENCH_CONNS=$CONNS BENCH_PIN=$PIN"
    [ -n "${BENCH_SYSTEMS:-}" ] && cmd+=" BENCH_SYSTEMS='$BENCH_SYSTEMS'"
    [ "${BENCH_PGO:-0}" = 1 ] && cmd+=" BENCH_PGO=1"
    [ -n "${SWITCHYARD_ROUTE_POLICIES:-}" ] && cmd+=" SWITCHYARD_ROUTE_POLICIES='$SWITCHYARD_ROUTE_POLICIES'"
    cmd+=" bench/run.sh"

    start_upstream
    has nginx && start_nginx_proxy
    has hyper-floor && start_floor
    has switchyard-bare && start_switchyard_bare
    has switchyard && start_switchyard 0
    has switchyard-pgo && start_switchyard_pgo
    has litellm && start_litellm
    local sys round
    for sys in "${SYSTEMS[@]}"; do check_answer "$sys"; done

    log "warm-up"
    for sys in "${SYSTEMS[@]}"; do
        BENCH_BODY=$(request_body "$(model_of "$sys")") BENCH_KEY=$CLIENT_KEY \
            "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s -s "$BENCH_DIR/lib/post.lua" "$(url_of "$sys")" >/dev/null
    done

    for round in $(seq 1 "$ROUNDS"); do
        for sys in "${SYSTEMS[@]}"; do wrk_run "$sys" "$round"; done
    done

    local nginx_max
    nginx_max=$(median_rps nginx)
    LITELLM_MAX=$(median_rps litellm)
    [ "$nginx_max" -gt 0 ] || nginx_max=$(median_rps switchyard)
    local rate_hi=$((nginx_max / 2))
    latency_phase "$rate_hi" "50 % of nginx max throughput"
    # When Switchyard cannot sustain that rate, also at a rate it can.
    local sy_max
    sy_max=$(median_rps switchyard)
    if has switchyard && [ "$sy_max" -gt 0 ] && [ "$((sy_max / 2))" -lt "$((rate_hi * 9 / 10))" ]; then
        latency_phase "$((sy_max / 2))" "50 % of Switchyard max throughput"
    fi
    if has litellm && [ "$LITELLM_MAX" -gt 0 ]; then
        latency_phase "$((LITELLM_MAX / 2))" "50 % of LiteLLM max throughput"
    fi
    if [ "${BENCH_SLOW:-1}" = 1 ]; then
        SLOW=1
        # 20 ms upstream: a rate every system sustains without queueing.
        local rate_slow=$((rate_hi < 2000 ? rate_hi : 2000))
        latency_phase "$rate_slow" "fixed rate"
        has litellm && [ "$LITELLM_MAX" -gt 0 ] && latency_phase "$((LITELLM_MAX / 2))" "50 % of LiteLLM max throughput"
        SLOW=0
    fi

    for sys in nginx hyper-floor switchyard-bare switchyard switchyard-pgo litellm; do
        has "$sys" || continue
        printf '{"phase":"rss","system":"%s","vmhwm_kib":%d}\n' "$sys" "$(status_kib "$(pid_of "$sys")" VmHWM)" >>"$RESULTS"
    done

    {
        echo "## Benchmark: Switchyard vs nginx vs LiteLLM (loopback)"
        echo
        echo "- date: $started"
        echo "- command: \`$cmd\`"
        machine
        versions
        echo "- load: wrk $CONNS connections × $DURATION per run; oha $LAT_CONNS connections × $LAT_DURATION per run; $ROUNDS rounds, systems alternating within each round"
        echo "- request: $(wc -c <"$REQUEST_FILE") B chat completion JSON; response: $(wc -c <"$BENCH_DIR/lib/completion.json") B static completion from nginx"
    } >"$RUN/header.md"
    python3 "$BENCH_DIR/lib/report.py" "$RESULTS" "$RUN/header.md" "$OUT/latest.md" >/dev/null
    cat "$OUT/latest.md"
    log "wrote $OUT/latest.md"
}

main "$@"
