"""StreamingMixture with virtual streams: does throughput grow with readers, and does the
job tokenize each document once?

    python bench/streams.py [--streams 8] [--seq-len 512] [--tokens 3000000]

Corpus: the quickstart's Python documentation pages (PSF licence), cut into paragraphs and
written as 8 ``.jsonl`` files of a ``text`` source, plus a 30% ``openorca`` source made of
the same paragraphs (question = first sentence). Both measurements run in this process
(baselines in the same run):

1. aggregate tokens/s of ``instmix.DataLoader`` with 1 and with 2 workers (goal >= 1.7x on
   2 cores);
2. CPU seconds per served token: 8 simulated data-parallel ranks (rank r of 8, each
   serving its share, run one after the other, CPU time summed) vs 1 rank serving the
   whole epoch (goal <= 1.1x). With the old design every rank tokenized the whole stream
   (8x).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import zstandard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import instmix  # noqa: E402


def corpus(folder: str, files: int = 8) -> list[dict]:
    docs = []
    raw = os.path.join(ROOT, "examples", "quickstart", "data", "raw")
    for name in sorted(os.listdir(raw)):
        with open(os.path.join(raw, name), "rb") as f:
            data = zstandard.ZstdDecompressor().decompress(f.read(), max_output_size=1 << 30)
        docs += [json.loads(line) for line in data.splitlines() if line.strip()]
    paras = [p.strip() for d in docs for p in d["text"].split("\n\n") if len(p.strip()) > 40]
    text_paths, orca_paths = [], []
    for i in range(files):
        part = paras[i::files]
        path = os.path.join(folder, f"text-{i}.jsonl")
        with open(path, "w") as f:
            f.writelines(json.dumps({"text": p}) + "\n" for p in part)
        text_paths.append(path)
        path = os.path.join(folder, f"orca-{i}.jsonl")
        with open(path, "w") as f:
            for p in part:
                cut = max(p.find(". ") + 1, 20)
                f.write(json.dumps({"question": p[:cut], "response": p[cut:]}) + "\n")
        orca_paths.append(path)
    return [{"name": "text", "paths": text_paths, "ratio": 0.7, "max_repetition": 4},
            {"name": "orca", "paths": orca_paths, "kind": "openorca", "ratio": 0.3,
             "loss": "responses", "max_repetition": 4}]


def served(mix_kw: dict, loader_kw: dict, batch: int) -> tuple[int, float, float]:
    """(tokens served, wall seconds, CPU seconds of this process and its workers) after
    the first batch: per-reader start-up (loading the tokenizer, starting workers) is a
    fixed cost, not a cost per token."""
    n = 0
    it = iter(instmix.DataLoader(instmix.StreamingMixture(**mix_kw), batch_size=batch,
                                 **loader_kw))
    next(it)
    t0, c0 = time.perf_counter(), _cpu()
    for b in it:
        n += b["input_ids"].numel()
    return n, time.perf_counter() - t0, _cpu() - c0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=3_000_000)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"tokenizer": os.path.join(ROOT, "examples", "quickstart", "tokenizer.json"),
               "seed": 1, "output": os.path.join(tmp, "out"), "cache_dir": tmp,
               "total_tokens": args.tokens, "sources": corpus(tmp)}
        kw = {"config": cfg, "seq_len": args.seq_len, "streams": args.streams}
        rows = {}
        for workers in (1, 2):
            rows[workers] = served(kw, {"num_workers": workers}, args.batch)
            n, wall, _ = rows[workers]
            print(f"workers={workers}: {n:,} tokens in {wall:.2f} s = {n / wall:,.0f} tokens/s",
                  flush=True)
        print(f"throughput 2 workers / 1 worker: {rows[2][0] / rows[2][1] / (rows[1][0] / rows[1][1]):.2f}x "
              "(goal >= 1.7x)")
        n1, _, cpu1 = served(kw, {"num_workers": 0}, args.batch)
        n8 = cpu8 = 0
        for rank in range(8):
            n, _, cpu = served({**kw, "rank": rank, "world_size": 8}, {"num_workers": 0},
                               args.batch)
            n8, cpu8 = n8 + n, cpu8 + cpu
        print(f"1 rank: {n1:,} tokens, {cpu1:.2f} CPU s = {cpu1 / n1 * 1e6:.3f} CPU us/token")
        print(f"8 ranks: {n8:,} tokens, {cpu8:.2f} CPU s = {cpu8 / n8 * 1e6:.3f} CPU us/token")
        print(f"CPU per served token, 8 ranks / 1 rank: {(cpu8 / n8) / (cpu1 / n1):.2f}x "
              "(goal <= 1.1x)")


if __name__ == "__main__":
    main()
