#!/usr/bin/env bash
# Memory soak (issue 8): 1M requests through Switchyard (two-stage WASM chain on every
# request) with 10 % upstream failures, RSS sampled after warm-up and at the end.
#
#   bench/soak.sh                          # 1M requests after a 100k warm-up
#   BENCH_SOAK_REQUESTS=200000 bench/soak.sh
#
# The cheapest candidate for `gpt-4o` is an nginx that answers HTTP 500 to 10 % of
# requests (split_clients on $request_id); the plan's retry_on lets the gateway fall
# back to the second candidate, so the client sees 200s while the gateway exercises its
# failure path (upstream error, health update, fallback) on one request in ten.
# Writes target/bench/soak.md, soak.json and soak-rss.csv (RSS every 2 s).
# Target: RSS growth (end − after warm-up) ≤ 5 MB.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/systems.sh
source "$BENCH_DIR/lib/systems.sh"

REQUESTS=${BENCH_SOAK_REQUESTS:-1000000}
WARMUP=${BENCH_SOAK_WARMUP:-100000}
CONNS=${BENCH_SOAK_CONNS:-64}

# oha_count N JSON: N requests, closed loop, CONNS connections.
oha_count() {
    "${LOAD_CPU[@]}" "$OHA" --no-tui --output-format json -n "$1" -c "$CONNS" \
        -m POST -H "authorization: Bearer $CLIENT_KEY" -H 'content-type: application/json' \
        -d "$(request_body gpt-4o)" "$(url_of switchyard)" >"$2"
}

rss_kib() { status_kib "$SWITCHYARD_PID" VmRSS; }

# metrics_of PATTERN: the gateway's Prometheus samples matching PATTERN.
metrics_of() {
    curl -s "http://127.0.0.1:$P_SY_ADMIN/metrics" | grep -E "$1" | grep -v '^#' || true
}

main() {
    bench_init
    ensure_tools
    ensure_switchyard
    start_upstream
    start_switchyard 1
    check_answer switchyard
    local started
    started=$(date -u +%Y-%m-%dT%H:%MZ)

    log "warm-up: $WARMUP requests"
    oha_count "$WARMUP" "$RUN/soak-warmup.json"
    sleep 2
    local rss_start rss_end hwm
    rss_start=$(rss_kib)
    log "RSS after warm-up: $rss_start KiB"

    echo "elapsed_s,rss_kib" >"$OUT/soak-rss.csv"
    (
        t=0
        while kill -0 "$SWITCHYARD_PID" 2>/dev/null; do
            echo "$t,$(rss_kib)" >>"$OUT/soak-rss.csv"
            sleep 2
            t=$((t + 2))
        done
    ) &
    local sampler=$!
    log "soak: $REQUESTS requests"
    local t0 t1
    t0=$(date +%s)
    oha_count "$REQUESTS" "$RUN/soak-main.json"
    t1=$(date +%s)
    sleep 2
    rss_end=$(rss_kib)
    hwm=$(status_kib "$SWITCHYARD_PID" VmHWM)
    stop_pid "$sampler"
    metrics_of '^switchyard_(upstream_attempts|fallbacks|requests|policy_errors)_total' >"$RUN/soak-metrics.txt"

    python3 - "$RUN/soak-main.json" "$rss_start" "$rss_end" "$hwm" "$((t1 - t0))" "$REQUESTS" \
        "$RUN/soak-metrics.txt" "$OUT/soak-rss.csv" "$started" >"$OUT/soak.json" <<'EOF'
import json, sys
oha, start, end, hwm, secs, n, metrics, csv, started = sys.argv[1:10]
data = json.load(open(oha))
samples = [line.split(",") for line in open(csv).read().split("\n")[1:] if line]
rss = [int(v) for _, v in samples]
print(json.dumps({
    "started": started, "requests": int(n), "seconds": int(secs),
    "rss_after_warmup_kib": int(start), "rss_end_kib": int(end), "vmhwm_kib": int(hwm),
    "growth_kib": int(end) - int(start),
    "rss_min_kib": min(rss) if rss else None, "rss_max_kib": max(rss) if rss else None,
    "status_codes": data.get("statusCodeDistribution", {}),
    "errors": data.get("errorDistribution", {}),
    "rps": data["summary"]["requestsPerSec"],
    "p99_ms": data["latencyPercentiles"]["p99"] * 1e3,
    "metrics": [l for l in open(metrics).read().split("\n") if l],
}, indent=1))
EOF
    python3 - "$OUT/soak.json" "$OUT/soak.md" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
mib = lambda k: s[k] / 1024
growth = s["growth_kib"] / 1024
lines = [
    "### Memory soak (Switchyard, 10 % upstream failures with fallback)", "",
    f"- date: {s['started']}; {s['requests']:,} requests in {s['seconds']} s ({s['rps']:,.0f} req/s, p99 {s['p99_ms']:.1f} ms)",
    f"- client saw: {s['status_codes']} errors: {s['errors'] or 'none'}",
    "", "| RSS after warm-up | RSS at end | growth | min / max sampled | peak (VmHWM) | target |",
    "|---:|---:|---:|---:|---:|---|",
    f"| {mib('rss_after_warmup_kib'):.1f} MiB | {mib('rss_end_kib'):.1f} MiB | {growth:+.2f} MiB "
    f"| {(s['rss_min_kib'] or 0) / 1024:.1f} / {(s['rss_max_kib'] or 0) / 1024:.1f} MiB | {mib('vmhwm_kib'):.1f} MiB "
    f"| ≤ 5 MB: {'met' if s['growth_kib'] * 1024 <= 5e6 else '**not met**'} |",
    "", "Gateway counters at the end:", "", "```", *s["metrics"], "```",
]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
    log "wrote $OUT/soak.md"
}

main "$@"
