"""Alternating A/B of the 4x build on all cores and on one core, for build settings.

Reuses the 4x corpus and config that ``python bench/build.py`` leaves in
``bench/out/build``. Each variant adds YAML lines to that config; every repetition runs
each variant cold (its output and cache removed) on all cores, then under
``taskset -c 0``, so drifts of the machine hit every variant alike. Prints the wall
times, their medians and the scaling net of ``--start-up`` seconds.

    python bench/build_ab.py --reps 4 b8='batch_bytes: 8388608' b1='batch_bytes: 1048576'
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "out", "build")


def run(name: str, extra: str, cores: str, base: str) -> float:
    out = os.path.join(WORK, f"ab-{name}")
    text = base.replace(os.path.join(WORK, "cache-build-4x"), out + "-cache")
    text = text.replace(os.path.join(WORK, "build-4x"), out) + extra + "\n"
    path = out + ".yaml"
    with open(path, "w") as f:
        f.write(text)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out + "-cache", ignore_errors=True)
    t = time.perf_counter()
    subprocess.run(["taskset", "-c", cores, sys.executable, "-m", "instmix", "build",
                    "--no-progress", path], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=ROOT))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--start-up", type=float, default=1.0,
                    help="seconds of a one-document build, taken off both wall times")
    ap.add_argument("variants", nargs="+", help="NAME=YAML line(s) added to the config")
    args = ap.parse_args()
    cfg = os.path.join(WORK, "build-4x.yaml")
    if not os.path.isfile(cfg):
        raise SystemExit(f"no {cfg}: run python bench/build.py first")
    with open(cfg) as f:
        base = f.read()
    variants = dict(v.split("=", 1) for v in args.variants)
    every = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    times: dict[tuple[str, str], list[float]] = {(n, c): [] for n in variants
                                                 for c in (every, "0")}
    for _ in range(args.reps):
        for name, extra in variants.items():
            for cores in (every, "0"):
                times[(name, cores)].append(run(name, extra, cores, base))
    for name in variants:
        many, one = times[(name, every)], times[(name, "0")]
        m, o = statistics.median(many), statistics.median(one)
        print(f"{name}: cores {every} median {m:.2f} s {[round(x, 2) for x in many]}; "
              f"1 core median {o:.2f} s {[round(x, 2) for x in one]}; scaling "
              f"{(o - args.start_up) / (m - args.start_up):.2f}x")


if __name__ == "__main__":
    main()
