#!/usr/bin/env python3
"""One result line from oha's JSON output (`--output-format json`).

    oha_row.py OHA.json SYSTEM ROUND RATE UPSTREAM WHY

Latencies are in µs; `success` is the fraction of requests answered 200 (oha's own
successRate counts transport success only), not counting the requests oha aborts
when the duration ends; `rps` is what was achieved.
"""

import json
import sys

path, system, rnd, rate, upstream, why = sys.argv[1:7]
data = json.load(open(path))
lat = data["latencyPercentiles"]
codes = data.get("statusCodeDistribution", {})
errors = data.get("errorDistribution", {})
answered = sum(codes.values())
# Requests still in flight when the duration ends are aborted by oha: not failures.
total = answered + sum(n for e, n in errors.items() if "deadline" not in e)


def us(key):
    v = lat.get(key)
    return None if v is None else v * 1e6


print(json.dumps({
    "phase": "latency", "system": system, "round": int(rnd), "rate": int(rate),
    "upstream": upstream, "why": why,
    "p50_us": us("p50"), "p99_us": us("p99"), "p999_us": us("p99.9"),
    "rps": data["summary"]["requestsPerSec"],
    "success": codes.get("200", 0) / total if total else 0.0,
    "codes": codes, "errors": errors,
}))
