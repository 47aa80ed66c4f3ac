"""ShardDataset over ``s3://``: block size against cache size (issue 13, the default block).

    python bench/corpus.py                       # once: bench/data/corpus (53 MB of text)
    flock /tmp/bench.lock python bench/shard_blocks.py   # the lock: no other benchmark at once

Builds the corpus once to ``s3://bench/builds/x`` on a moto S3 server on loopback (its own
process), then reads ``--items`` shuffled ``seq_len`` 2048 items with ShardDataset: a local
copy (memory map, the baseline), then over s3 with 64 KiB, 1 MiB and the default blocks, with
a 256 MiB cache (the whole build fits) and an 8 MiB one (the build is 6x larger than the
cache: what a large build is for any cache). Reports tokens/s, GET requests and bytes
fetched per item (on a real store each byte is paid in bandwidth; moto on loopback pays
almost only per request). All rows in one process, one after the other.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile

from moto_server import MotoServer
from shard_rate import shard_rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "dolma2-tokenizer.json")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.path.join(ROOT, "bench", "data", "corpus"))
    ap.add_argument("--files", type=int, default=0, help="use only the first N files")
    ap.add_argument("--items", type=int, default=2000)
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))[:args.files or None]
    if not files:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    moto = MotoServer()
    work = None
    try:
        import instmix
        from instmix.io import fs

        fs.filesystem("s3://bench").mkdir("bench")
        work = tempfile.mkdtemp(prefix="shard-blocks-")
        for out in (os.path.join(work, "local"), "s3://bench/builds/x"):
            instmix.build(instmix.load_config({
                "tokenizer": TOKENIZER, "seed": 0, "output": out,
                "cache_dir": os.path.join(work, "cache"),
                "sources": [{"name": "corpus", "paths": files}]}))

        def rate(path: str, **kw) -> dict:
            tok_s, _, ds = shard_rate(path, args.items, **kw)
            row = {"tok_s": tok_s, "block": ds._blocks_spec[0]}
            if ds._blocks is not None:  # KiB per item: GETs x block, an upper bound
                row["gets_per_item"] = ds._blocks.requests / args.items
                row["kib_per_item"] = ds._blocks.requests * ds._blocks.block_bytes \
                    / args.items / 1024
            return row

        print(f"{len(files)} files; load average {os.getloadavg()[0]:.2f}; {args.items} items")
        base = rate(os.path.join(work, "local"))
        print(f"local (memory map)                      {base['tok_s'] / 1e6:8.2f} M tok/s")
        for cache in (256 << 20, 8 << 20):
            for block in (64 << 10, 1 << 20, None):
                r = rate("s3://bench/builds/x", block_bytes=block, cache_bytes=cache)
                name = f"cache {cache >> 20:3d} MiB, block {r['block'] >> 10:5d} KiB" + \
                    (" (default)" if block is None else "          ")
                print(f"{name} {r['tok_s'] / 1e6:8.3f} M tok/s  x{r['tok_s'] / base['tok_s']:.4f}"
                      f"  {r['gets_per_item']:.2f} GET/item  {r['kib_per_item']:8.1f} KiB/item")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        moto.close()
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
