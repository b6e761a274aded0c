#!/usr/bin/env python3
"""Sums `perf report --no-children --sort dso,symbol --stdio` self time by where
the code comes from: the kernel, a Rust crate (the symbol's first path segment),
mimalloc, libc, the vDSO, or the policies' compiled WebAssembly.

Usage: perf report ... | perf_by_crate.py
"""
import collections
import re
import sys

# "  0.41%  [JIT] tid 24710  [.] wasm[0]::function[51]  -  -": share, object, kind, symbol.
LINE = re.compile(
    r"^\s*([\d.]+)%\s+(\[JIT\] tid \d+|\[[^\]]+\]|\S+)\s+\[(.)\]\s+(.*?)(?:\s+-\s+-)?\s*$"
)


def bucket(dso, kind, symbol):
    if kind == "k":
        return "kernel"
    if dso.startswith("[JIT]") or symbol.startswith("wasm[") or "trampoline" in symbol:
        return "policies (compiled wasm)"
    if dso.startswith("libc"):
        return "libc (memcpy, syscalls)"
    if dso.startswith("[vdso"):
        return "vdso (clock_gettime)"
    name = symbol.lstrip("<&*( ")
    if name.startswith(("mi_", "_mi_")):
        return "mimalloc"
    crate = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
    return crate.group(1) if crate else "other"


def main():
    totals = collections.Counter()
    for line in sys.stdin:
        m = LINE.match(line)
        if m:
            pct, dso, kind, symbol = m.groups()
            totals[bucket(dso, kind, symbol)] += float(pct)
    print("share of samples by origin (self time)")
    for name, pct in totals.most_common():
        if pct >= 0.1:
            print(f"{pct:6.2f}%  {name}")


if __name__ == "__main__":
    main()
