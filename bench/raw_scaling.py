"""How far the tokenizer alone scales from one core to two on this machine (issue 12).

The ceiling for the build's scaling figure: gigatoken on the 4x corpus of
``bench/build.py`` (run it first), with no instmix code in the timed part, each run in
fresh processes pinned with ``taskset``, load time excluded:

- ``per-text``: one ``encode`` call per text (what the build's forked workers do), one
  process on the first core against two processes on two cores, each encoding every
  other file (the pair's time is the slower process's);
- ``thread pool``: ``encode_batch`` without the pool on one core against
  ``encode_batch(parallel=True)`` (gigatoken's own threads) on two cores.

Repetitions alternate the variants; the ratio of each repetition and the medians are
printed. Also printed: the load time of gigatoken from the ``tokenizer.json`` against its
cached rank table (``instmix.tokenize.ranks``).

    python bench/raw_scaling.py --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import yaml
from build import DOLMA2, HERE, load_texts

CONFIG = os.path.join(HERE, "out", "build", "build-4x.yaml")


def child(mode: str, part: int, parts: int) -> None:
    from instmix.io.hashing import sha256_file
    from instmix.tokenize import bpe_giga, ranks

    with open(CONFIG) as f:
        files = yaml.safe_load(f)["sources"][0]["paths"][part::parts]
    texts = load_texts(files)
    table = ranks.cached_table(DOLMA2, sha256_file(DOLMA2), ranks_dir())
    t = time.perf_counter()
    from_table = bpe_giga.from_table(table, False)
    t_table = time.perf_counter() - t
    t = time.perf_counter()
    with open(DOLMA2, encoding="utf-8") as f:
        bpe_giga.from_json(f.read(), False)
    t_json = time.perf_counter() - t
    tok = from_table.backend
    tok.encode_batch(["imports awkward before the clock starts"], parallel=False)
    t = time.perf_counter()
    if mode == "each":
        for x in texts:
            tok.encode(x)
    else:
        tok.encode_batch(texts, parallel=mode == "parallel")
    print(json.dumps({"s": time.perf_counter() - t, "load_table_s": t_table,
                      "load_json_s": t_json}))


def ranks_dir() -> str:
    from instmix.config.schema import RANK_CACHE

    return os.path.expanduser(RANK_CACHE)


def run(specs: list[tuple[str, str, int, int]]) -> dict:
    procs = [subprocess.Popen(["taskset", "-c", cores, sys.executable, __file__, "--child",
                               mode, str(part), str(parts)], stdout=subprocess.PIPE, text=True)
             for cores, mode, part, parts in specs]
    outs = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a tokenizer run failed with status {p.returncode}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return {"s": max(o["s"] for o in outs), "load_table_s": outs[0]["load_table_s"],
            "load_json_s": outs[0]["load_json_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    if not os.path.isfile(CONFIG):
        raise SystemExit(f"no 4x build config at {CONFIG}: run python bench/build.py first")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs two cores")
    one, two = str(cores[0]), f"{cores[0]},{cores[1]}"
    variants = {
        "per-text, 1 process, 1 core": [(one, "each", 0, 1)],
        "per-text, 2 processes, 2 cores": [(str(cores[0]), "each", 0, 2),
                                           (str(cores[1]), "each", 1, 2)],
        "encode_batch serial, 1 core": [(one, "serial", 0, 1)],
        "encode_batch parallel, 2 cores": [(two, "parallel", 0, 1)],
    }
    got: dict[str, list[dict]] = {k: [] for k in variants}
    for _ in range(args.reps):
        for name, specs in variants.items():
            got[name].append(run(specs))
    for name, runs in got.items():
        secs = [r["s"] for r in runs]
        print(f"{name}: median {statistics.median(secs):.2f} s {[round(s, 2) for s in secs]}")
    names = list(variants)
    for a, b, what in ((0, 1, "per-text processes"), (2, 3, "gigatoken's thread pool")):
        ratios = [x["s"] / y["s"] for x, y in zip(got[names[a]], got[names[b]])]
        print(f"{what}: 2 cores / 1 core = {[round(r, 2) for r in ratios]}, median "
              f"{statistics.median(ratios):.2f}x")
    loads = [r for runs in got.values() for r in runs]
    print(f"gigatoken load: rank table median "
          f"{statistics.median(r['load_table_s'] for r in loads):.3f} s, tokenizer.json median "
          f"{statistics.median(r['load_json_s'] for r in loads):.3f} s ({len(loads)} loads)")


if __name__ == "__main__":
    main()
