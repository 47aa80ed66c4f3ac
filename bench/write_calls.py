"""Buffered file writes by the size of each ``write`` call (why instmix.io.pages exists).

Writes ``--mb`` MB of random bytes to a new file in ``--dir`` (``bench/out``), once per call
size, and prints MB/s and the ratio to instmix's call size (``WRITE_CHUNK``). Before each
trial the script waits ``--settle`` seconds, so memory freed by the previous trial is
returned to the hypervisor first (free page reporting), as it is for a build that starts
on a machine that was idle.

    python bench/write_calls.py
"""

from __future__ import annotations

import argparse
import os
import time

from instmix.io.pages import WRITE_CHUNK

HERE = os.path.dirname(os.path.abspath(__file__))


def trial(path: str, call: int, total: int) -> float:
    buf = os.urandom(call)
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(total // call):
            os.write(fd, buf)
    finally:
        os.close(fd)
    secs = time.perf_counter() - t
    os.remove(path)
    return total / secs / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=os.path.join(HERE, "out"))
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--settle", type=float, default=6.0)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, "write-calls.bin")
    total = args.mb << 20
    sizes = sorted({16 << 10, WRITE_CHUNK, 256 << 10, 1 << 20, 8 << 20})
    rates: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(2):
        for s in sizes:
            time.sleep(args.settle)
            rates[s].append(trial(path, s, total))
    base = max(rates[WRITE_CHUNK])
    print(f"{args.mb} MB to a new file in {args.dir}, best of 2 per call size")
    print(f"| bytes per write call | MB/s | vs {WRITE_CHUNK >> 10} KiB calls (instmix) |")
    print("|---:|---:|---:|")
    for s in sizes:
        best = max(rates[s])
        print(f"| {s >> 10} KiB | {best:,.0f} | {best / base:.2f}x |")


if __name__ == "__main__":
    main()
