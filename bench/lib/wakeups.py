"""Splits a gateway's CPU time per request into user time, the kernel's wake-ups
of the peer on a socket write, and the rest of the kernel's time.

Reads `perf script -F ip,sym` output (one call stack per sample, leaf first,
blank line between samples) on stdin; argv: requests served, sampling
frequency in Hz. Prints one JSON object with microseconds per request.

A sample is kernel time when its leaf frame is a kernel address, and a wake-up
when `sock_def_readable` (which wakes a socket's reader) is on its stack.
"""
import json
import sys

KERNEL = 0xFFFF800000000000


def main() -> None:
    requests, hz = int(sys.argv[1]), float(sys.argv[2])
    total = kernel = wakeups = 0
    stack: list[tuple[int, str]] = []

    def flush() -> None:
        nonlocal total, kernel, wakeups
        if not stack:
            return
        total += 1
        if stack[0][0] >= KERNEL:
            kernel += 1
        if any(sym == "sock_def_readable" for _, sym in stack):
            wakeups += 1
        stack.clear()

    for line in sys.stdin:
        parts = line.split(None, 1)
        if not parts:
            flush()
            continue
        try:
            ip = int(parts[0], 16)
        except ValueError:
            continue  # a sample header line, when perf prints one
        sym = parts[1].strip().split("+")[0] if len(parts) > 1 else ""
        stack.append((ip, sym))
    flush()

    def per_request(samples: int) -> float:
        return round(samples / hz / max(requests, 1) * 1e6, 2)

    print(json.dumps({
        "requests": requests,
        "samples": total,
        "user_us": per_request(total - kernel),
        "kernel_us": per_request(kernel),
        "wakeup_us": per_request(wakeups),
        "kernel_other_us": per_request(kernel - wakeups),
    }))


if __name__ == "__main__":
    main()
