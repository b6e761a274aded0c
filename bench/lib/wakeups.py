"""Splits a gateway's CPU time per request into user time, the kernel's wake-ups
of the peer on a socket write, and the rest of the kernel's time.

Reads `perf script -F ip,sym` output (one call stack per sample, leaf first,
blank line between samples) on stdin; argv: the gateway's name, requests
served, sampling frequency in Hz and, if known, how many times the load CPU
went idle meanwhile. Prints one row of `profile.sh`'s wakeups table, in
microseconds per request.

A sample is kernel time when its leaf frame is a kernel address, and a wake-up
when `sock_def_readable` (which wakes a socket's reader) is on its stack.
"""
import sys

KERNEL = 0xFFFF800000000000


def main() -> None:
    name, requests, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    idle = sys.argv[4] if len(sys.argv) > 4 else ""
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

    idle_per_request = f"{int(idle) / max(requests, 1):.3f}" if idle else "–"
    print(
        f"| {name} | {requests:,} | {per_request(total - kernel)} | "
        f"{per_request(wakeups)} | {per_request(kernel - wakeups)} | {idle_per_request} |"
    )


if __name__ == "__main__":
    main()
