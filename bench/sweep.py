"""Cost of the extra mixtures of a ratio sweep, against the first build, in one run.

    python bench/corpus.py && python bench/sweep.py

Two sources from the benchmark corpus (Linux kernel docs vs the rest), a sweep of five
ratio sets with a fixed total. The first mixture pays for tokenization (cold token cache);
every other one only plans and writes. Also reported: a cold ``instmix build`` of one
mixture alone, the honest baseline for "the first build's time".
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def main() -> None:
    import instmix
    from instmix.builder.sweep import expand, sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    ap.add_argument("--work", default=os.path.join(HERE, "out", "sweep"))
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))
    if not files:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    cfg = instmix.load_config({
        "tokenizer": {"path": os.path.join(ROOT, "examples", "quickstart", "tokenizer.json"),
                      "backend": args.backend},
        "seed": 0, "total_tokens": 6_000_000, "output": os.path.join(args.work, "single"),
        "cache_dir": os.path.join(args.work, "cache-single"),
        "sources": [{"name": "a", "paths": files[:3], "max_repetition": 4},
                    {"name": "b", "paths": files[3:], "max_repetition": 4}]})
    t = time.perf_counter()
    instmix.build(cfg)
    single = time.perf_counter() - t
    cfg = cfg.with_overrides(cache_dir=os.path.join(args.work, "cache-sweep"))
    sets = expand(cfg, ["a=0.1,0.25,0.5,0.75,0.9"])
    t = time.perf_counter()
    summary = sweep(cfg, sets, out=os.path.join(args.work, "mixtures"))
    wall = time.perf_counter() - t
    first = summary["tokenize_seconds"] + summary["mixtures"][0]["seconds"]
    extra = [m["seconds"] for m in summary["mixtures"][1:]]
    print(f"single cold build: {single:.2f} s; sweep of {len(sets)}: {wall:.2f} s "
          f"(tokenize {summary['tokenize_seconds']:.2f} s)")
    print("| mixture | tokens | seconds | % of first build |")
    print("|---|---:|---:|---:|")
    for i, m in enumerate(summary["mixtures"]):
        secs = first if i == 0 else m["seconds"]
        print(f"| {m['label']} | {m['total_tokens']:,} | {secs:.2f} | {100 * secs / first:.1f} |")
    print(f"worst extra mixture: {100 * max(extra) / first:.1f}% of the first build "
          f"({100 * max(extra) / single:.1f}% of a single cold build)")
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "sweep.json"), "w") as f:
        json.dump({"single_s": single, "sweep_s": wall, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
