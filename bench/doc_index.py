"""ShardDataset memory with many short documents: the memory-mapped ``.ends`` index against
the previous reader (``.csv.gz`` parsed into lists, a per-window int64 table per rank).

    git worktree add /tmp/instmix-before 095d4e4      # the reader before the .ends index
    python bench/doc_index.py --before /tmp/instmix-before --docs 1000000,2500000,5000000

Builds are written by :class:`instmix.format.writer.ShardWriter` from synthetic token ids
(documents of 4-12 tokens ending in EOS, uint16), so no tokenizing is measured. Each
measurement runs in a fresh subprocess (baseline and new reader in the same run, one
after the other): construction time, resident memory after construction (``VmRSS`` and
its anonymous part ``RssAnon``: memory-mapped pages read from the page cache are not
anonymous), the bytes a DataLoader worker receives (the pickled dataset) and the latency
of the first batch (8 x 512); times as wall seconds and, in brackets, CPU seconds of the
process (robust when the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from instmix.format.manifest import FORMAT_VERSION, dump_manifest  # noqa: E402
from instmix.format.writer import ShardWriter  # noqa: E402

EOS = 0

PROBE = r"""
import json, os, pickle, sys, time
t0 = time.perf_counter()
import instmix
t1, c1 = time.perf_counter(), time.process_time()
ds = instmix.ShardDataset(sys.argv[1], 512, seed=0)
t2, c2 = time.perf_counter(), time.process_time()
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kb = lambda k: int(status[k].split()[0])
size = len(pickle.dumps(ds))
t3, c3 = time.perf_counter(), time.process_time()
batch = next(iter(instmix.DataLoader(ds, batch_size=8)))
t4, c4 = time.perf_counter(), time.process_time()
print(json.dumps({"construct_s": t2 - t1, "construct_cpu_s": c2 - c1,
                  "first_batch_cpu_ms": (c4 - c3) * 1e3, "rss_mb": kb("VmRSS") / 1024,
                  "anon_mb": kb("RssAnon") / 1024, "pickled_mb": size / 2**20,
                  "first_batch_ms": (t4 - t3) * 1e3, "sequences": ds.num_sequences}))
"""


def write_build(folder: str, docs: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lens = rng.integers(4, 13, size=docs)
    tokens = rng.integers(1, 50_000, size=int(lens.sum()), dtype=np.uint16)
    ends = np.cumsum(lens)
    tokens[ends - 1] = EOS
    w = ShardWriter(folder, "uint16", 16_000_000, with_mask=False)
    start = 0
    for i, end in enumerate(ends.tolist()):
        w.add(tokens[start:end], None, f"d:{i}", "syn")
        start = end
    shards = [s.manifest_dict() for s in w.close()]
    manifest = {"format_version": FORMAT_VERSION, "dtype": "uint16", "seed": seed,
                "total_tokens": int(lens.sum()),
                "tokenizer": {"path": "none", "sha256": "", "vocab_size": 50_000,
                              "eos_token_id": EOS, "bos_token_id": None},
                "sources": [{"name": "syn", "tokens": int(lens.sum()), "documents": docs}],
                "shards": shards}
    with open(os.path.join(folder, "manifest.json"), "wb") as f:
        f.write(dump_manifest(manifest))


def probe(code_root: str, build: str) -> dict:
    env = dict(os.environ, PYTHONPATH=code_root)
    out = subprocess.run([sys.executable, "-c", PROBE, build], env=env, capture_output=True,
                         text=True, check=True, cwd=code_root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="a checkout of the previous reader")
    ap.add_argument("--docs", default="1000000,5000000")
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        print("docs       reader  construct_s (CPU)  rss_mb  anon_mb  pickled_mb  "
              "first_batch_ms (CPU)")
        for n in [int(x) for x in args.docs.split(",")]:
            build = os.path.join(tmp, f"b{n}")
            os.makedirs(build)
            write_build(build, n)
            for name, root in (("before", args.before), ("after", ROOT)):
                r = probe(root, build)
                print(f"{n:<10,} {name:<7} {r['construct_s']:>6.2f} ({r['construct_cpu_s']:.2f})"
                      f"  {r['rss_mb']:>7.0f} {r['anon_mb']:>8.0f} {r['pickled_mb']:>11.1f} "
                      f"{r['first_batch_ms']:>8.1f} ({r['first_batch_cpu_ms']:.1f})", flush=True)


if __name__ == "__main__":
    main()
