"""Alternating A/B of the 4x build on all cores and on one core, for build settings.

Reuses the 4x corpus that ``python bench/build.py`` leaves in ``bench/out/build`` (run it
first). Each variant is YAML merged into the 4x build's config. Every repetition runs,
on all cores and then on the first core (``taskset``): a one-document build (the
start-up), then each variant cold (its output and cache removed), so drifts of the machine
hit every variant alike. Prints the wall times, their medians, the CPU time of the build
and its workers (steadier than the wall time on a noisy machine) and each variant's scaling:
(1-core median - 1-core start-up) / (all-core median - all-core start-up), the formula of
``bench/build.py``. A variant ``NAME=@PATH`` runs the code of the checkout at PATH (the
config unchanged; the start-up builds run this checkout's code).

    python bench/build_ab.py --reps 4 b8='batch_bytes: 8388608' b1='batch_bytes: 1048576'
    git worktree add /tmp/old d4e412e && python bench/build_ab.py old=@/tmp/old new=@.
"""

from __future__ import annotations

import argparse
import os
import statistics

import yaml
from build import DOLMA2, HERE, cold_build

WORK = os.path.join(HERE, "out", "build")


def cold(name: str, sources: list[dict], cores: str, extra: dict | None = None,
         root: str | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the build and its workers) of a cold build."""
    kw = {"root": os.path.abspath(root)} if root else {}
    run = cold_build(WORK, name, sources, DOLMA2, cores=cores, extra=extra, **kw)
    return run["wall_s"], run["cpu_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("variants", nargs="+", help="NAME=YAML merged into the config")
    args = ap.parse_args()
    cfg = os.path.join(WORK, "build-4x.yaml")
    tiny = os.path.join(WORK, "data", "one-document.jsonl")
    if not (os.path.isfile(cfg) and os.path.isfile(tiny)):
        raise SystemExit(f"no 4x build in {WORK}: run python bench/build.py first")
    with open(cfg) as f:
        sources = yaml.safe_load(f)["sources"]
    variants, roots = {}, {}
    for name, text in (v.split("=", 1) for v in args.variants):
        if text.startswith("@"):
            variants[name], roots[name] = None, text[1:]
        else:
            variants[name] = yaml.safe_load(text)
    cores = sorted(os.sched_getaffinity(0))
    sets = {"all": ",".join(map(str, cores)), "one": str(cores[0])}
    start: dict[str, list[float]] = {k: [] for k in sets}
    times = {(n, k): [] for n in variants for k in sets}
    cpu = {(n, k): [] for n in variants for k in sets}
    one_doc = [{"name": "corpus", "paths": [tiny]}]
    for _ in range(args.reps):
        for k, c in sets.items():
            start[k].append(cold("ab-one-document", one_doc, c)[0])
            for name, extra in variants.items():
                wall, used = cold(f"ab-{name}", sources, c, extra, roots.get(name))
                times[(name, k)].append(wall)
                cpu[(name, k)].append(used)
    s = {k: statistics.median(v) for k, v in start.items()}
    print(f"start-up: cores {sets['all']} median {s['all']:.2f} s, 1 core {s['one']:.2f} s")
    for name in variants:
        m = {k: statistics.median(times[(name, k)]) for k in sets}
        print(f"{name}: cores {sets['all']} median {m['all']:.2f} s "
              f"{[round(x, 2) for x in times[(name, 'all')]]}; 1 core median {m['one']:.2f} s "
              f"{[round(x, 2) for x in times[(name, 'one')]]}; scaling "
              f"{(m['one'] - s['one']) / (m['all'] - s['all']):.2f}x; CPU medians "
              f"{statistics.median(cpu[(name, 'all')]):.2f} s on {sets['all']}, "
              f"{statistics.median(cpu[(name, 'one')]):.2f} s on 1 core")


if __name__ == "__main__":
    main()
