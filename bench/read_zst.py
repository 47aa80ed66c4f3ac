"""Reading ``.jsonl.zst`` inputs line by line: instmix's checked reader against
``zstandard``'s own stream reader (which ends quietly at a cut frame, the reason
``instmix.io.compressed.CheckedZstd`` exists), on the benchmark corpus.

Alternating repetitions in this process; prints each time, the medians and the ratio.

    python bench/read_zst.py --reps 5
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import statistics
import time

import zstandard

from instmix.io.compressed import open_binary

HERE = os.path.dirname(os.path.abspath(__file__))


def read_instmix(path: str) -> int:
    with open_binary(path) as f:
        return sum(len(line) for line in f)


def read_zstandard(path: str) -> int:
    with open(path, "rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        with io.BufferedReader(reader, buffer_size=1 << 20) as f:
            return sum(len(line) for line in f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))
    if not files:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    times: dict[str, list[float]] = {"instmix": [], "zstandard": []}
    sizes = {}
    for _ in range(args.reps):
        for name, fn in (("instmix", read_instmix), ("zstandard", read_zstandard)):
            t = time.perf_counter()
            sizes[name] = sum(fn(p) for p in files)
            times[name].append(time.perf_counter() - t)
    if sizes["instmix"] != sizes["zstandard"]:
        raise SystemExit(f"the readers disagree: {sizes}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k}: median {med[k]:.3f} s {[round(x, 3) for x in v]}")
    print(f"{sizes['instmix'] / 1e6:.1f} MB of lines; instmix / zstandard time = "
          f"{med['instmix'] / med['zstandard']:.2f}")


if __name__ == "__main__":
    main()
