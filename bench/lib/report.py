#!/usr/bin/env python3
"""Turns bench/run.sh's results (JSON lines) into the markdown table.

    report.py RESULTS.jsonl HEADER.md OUT.md

Each line of RESULTS is one run: {"phase": "throughput"|"latency", "system", "round",
...}. Medians are over rounds; "added" latency and ratios are computed per round
(the runs of one round are adjacent in time) and then their median is taken.
"""

import json
import os
import statistics
import sys
from collections import defaultdict

ORDER = ["direct", "nginx", "hyper-floor", "switchyard-bare", "switchyard", "switchyard-pgo",
         "litellm"]


def switchyard_label():
    """Switchyard's row name, with the policy chain run.sh configured (SWITCHYARD_ROUTE_POLICIES)."""
    chain = json.loads(os.environ.get("SWITCHYARD_ROUTE_POLICIES") or '["compliance", "cost"]')
    return f"Switchyard (WASM chain: {', '.join(chain)})" if chain else "Switchyard (no policies)"


LABEL = {
    "direct": "direct (client → upstream)",
    "nginx": "nginx `proxy_pass` (keepalive)",
    "hyper-floor": "hyper-floor (bare hyper + tokio proxy)",
    "switchyard-bare": "Switchyard (no policies)",
    "switchyard": switchyard_label(),
    "switchyard-pgo": switchyard_label() + ", PGO build",
    "litellm": "LiteLLM proxy",
}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def us(v):
    if v is None:
        return "–"
    return f"{v / 1000:.2f} ms" if abs(v) >= 10000 else f"{v:.0f} µs"


def times(r):
    if r is None:
        return "–"
    return f"{r:.3f}×" if r < 0.1 else f"{r:.2f}×" if r < 10 else f"{r:.1f}×"


def load(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    return rows


def cpu_per_request(rows, system):
    """Median user and kernel CPU time per request of the gateway's process tree
    over its closed-loop runs (from /proc tick counts)."""
    mine = [r for r in rows if r["phase"] == "throughput" and r["system"] == system
            and "cpu_user_us" in r]
    if not mine:
        return "–"
    user = med([r["cpu_user_us"] for r in mine])
    kernel = med([r["cpu_sys_us"] for r in mine])
    return f"{user:.1f} + {kernel:.1f} µs"


def throughput(rows, out, targets):
    runs = defaultdict(dict)  # round -> system -> rps
    errors = defaultdict(int)
    for r in rows:
        if r["phase"] == "throughput":
            runs[r["round"]][r["system"]] = r["rps"]
            errors[r["system"]] += r["status_errors"] + r["socket_errors"]
    if not runs:
        return {}
    systems = [s for s in ORDER if any(s in v for v in runs.values())]
    per = {s: [v[s] for v in runs.values() if s in v] for s in systems}
    cpu = {s: cpu_per_request(rows, s) for s in systems}

    def ratios(a, b):
        return med([v[a] / v[b] for v in runs.values() if v.get(a) and v.get(b)])

    out.append(
        "| system | req/s (median) | min – max | vs nginx | vs LiteLLM "
        "| CPU per request (user + kernel) | errors |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for s in systems:
        vs_nginx = ratios(s, "nginx") if "nginx" in systems else None
        vs_llm = ratios(s, "litellm") if "litellm" in systems else None
        out.append(
            f"| {LABEL[s]} | {med(per[s]):,.0f} | {min(per[s]):,.0f} – {max(per[s]):,.0f} "
            f"| {times(vs_nginx)} | {times(vs_llm)} | {cpu[s]} "
            f"| {errors[s]} |"
        )
    for s, build in (("switchyard", ""), ("switchyard-pgo", " (PGO build)")):
        if s in systems and "nginx" in systems:
            r = ratios(s, "nginx")
            targets.append((f"Throughput ≥ 1.0× nginx `proxy_pass`{build}", f"{r:.2f}×", r >= 1.0))
    if "switchyard-pgo" in systems and "switchyard" in systems:
        r = ratios("switchyard-pgo", "switchyard")
        out.append("")
        out.append(f"PGO build over the plain build: {r:.2f}× (median of the per-round ratios)")
    if "switchyard" in systems and "litellm" in systems:
        r = ratios("switchyard", "litellm")
        targets.append(("Throughput ≥ 20× LiteLLM", f"{r:.1f}×", r >= 20.0))
    return {s: med(per[s]) for s in systems}


def latency(rows, out, targets, upstream):
    groups = defaultdict(lambda: defaultdict(dict))  # rate -> round -> system -> row
    for r in rows:
        if r["phase"] == "latency" and r["upstream"] == upstream:
            groups[r["rate"]][r["round"]][r["system"]] = r
    for rate in sorted(groups, reverse=True):
        rounds = groups[rate]
        systems = [s for s in ORDER if any(s in v for v in rounds.values())]
        why = rounds[next(iter(rounds))].get(next(iter(systems)), {}).get("why", "")
        out.append("")
        out.append(f"**{rate:,} req/s** ({why}; upstream: {upstream})")
        out.append("")
        out.append(
            "| system | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | achieved req/s | ok |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        added = {}
        for s in systems:
            mine = [v[s] for v in rounds.values() if s in v]
            if all(m.get("skipped") for m in mine):
                out.append(f"| {LABEL[s]} | {mine[0]['skipped']} |||||||")
                continue
            cells = [med([m[p] for m in mine]) for p in ("p50_us", "p99_us", "p999_us")]
            adds = []
            for p in ("p50_us", "p99_us", "p999_us"):
                if s == "direct":
                    adds.append(None)
                    continue
                adds.append(
                    med([v[s][p] - v["direct"][p] for v in rounds.values()
                         if s in v and "direct" in v and not v[s].get("skipped")])
                )
            added[s] = adds
            ok = min(m["success"] for m in mine)
            achieved = med([m["rps"] for m in mine])
            name = LABEL[s]
            if achieved < 0.95 * rate:
                name += " — **overloaded** (achieved < 95 % of the rate: latency is queueing)"
            out.append(
                f"| {name} | {' | '.join(us(c) for c in cells)} | "
                f"{' | '.join(us(a) for a in adds)} | {med([m['rps'] for m in mine]):,.0f} | {ok:.1%} |"
            )
        if upstream != "fast":
            continue
        # Added latency needs `direct` in the same rounds (BENCH_SYSTEMS may leave it out).
        if "switchyard" in added and "nginx" in added and "nginx max" in why \
                and None not in (added["switchyard"][1], added["nginx"][1]):
            sy, ng = added["switchyard"][1], added["nginx"][1]
            targets.append((
                f"Added p99 ≤ nginx's added p99 + 100 µs at {rate:,} req/s",
                f"{us(sy)} vs {us(ng)} + 100 µs", sy <= ng + 100,
            ))
        if "switchyard" in added and "litellm" in added:
            sy, ll = added["switchyard"], added["litellm"]
            lower = all(a is not None and b is not None and a < b for a, b in zip(sy, ll))
            targets.append((
                f"Added latency < LiteLLM's at every percentile ({rate:,} req/s)",
                " / ".join(f"{us(a)} vs {us(b)}" for a, b in zip(sy, ll)), lower,
            ))


def main():
    results, header, dest = sys.argv[1:4]
    rows = load(results)
    out = [open(header).read().rstrip(), ""]
    targets = []
    out.append("### Throughput (closed loop, wrk)")
    out.append("")
    throughput(rows, out, targets)
    out.append("")
    out.append("### Latency at fixed rates (open loop, oha `--latency-correction`)")
    out.append("")
    out.append("Added = the system's percentile minus direct's, in the same round; medians over rounds.")
    latency(rows, out, targets, "fast")
    if any(r["phase"] == "latency" and r["upstream"] != "fast" for r in rows):
        out.append("")
        out.append("### Latency with the 20 ms upstream")
        latency(rows, out, [], "slow-20ms")
    rss = [r for r in rows if r["phase"] == "rss"]
    if rss:
        out.append("")
        out.append("### Peak RSS (VmHWM, whole process tree, after all runs)")
        out.append("")
        out.append("| gateway | peak RSS |")
        out.append("|---|---:|")
        for r in sorted(rss, key=lambda r: ORDER.index(r["system"])):
            out.append(f"| {LABEL[r['system']]} | {r['vmhwm_kib'] / 1024:.1f} MiB |")
    if targets:
        out.append("")
        out.append("### Targets (issue 8)")
        out.append("")
        out.append("| target | measured | met |")
        out.append("|---|---|:-:|")
        for name, value, met in targets:
            out.append(f"| {name} | {value} | {'yes' if met else '**no**'} |")
    open(dest, "w").write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
