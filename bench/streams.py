"""StreamingMixture with virtual streams: does throughput grow with readers, and does the
job tokenize each document once?

    python bench/streams.py          # about 2 minutes on 2 cores; --tokens to change the size

Corpus: the quickstart's Python documentation pages (PSF licence), cut into paragraphs;
copy 0 is the paragraphs as they are, copy ``c > 0`` the same paragraphs in a permutation
seeded by ``c``, joined ``1 + c % 3`` at a time (new documents, same kind of text). Each
copy is written as 8 ``.jsonl`` files of a ``text`` source (70%) plus an ``openorca``
source (30%, question = first sentence, ``loss: responses``). ``--copies`` (default: enough
for ``--tokens`` at the repetition cap of 4) sets the corpus size. All measurements run in
this process, one after the other (baselines in the same run):

1. aggregate tokens/s of ``instmix.DataLoader`` with 1 and with 2 workers (goal >= 1.7x on
   2 cores), counted after each loader's first batch (steady state) and from the loader's
   creation (start-up included: workers, tokenizer loading, first blocks);
2. CPU seconds per served token: 8 simulated data-parallel ranks (rank r of 8, each
   serving its share, run one after the other, CPU time summed) vs 1 rank serving the
   whole epoch, in this process (``num_workers=0``), after the first batch (goal <= 1.1x).
   With the old design every rank tokenized the whole stream (8x).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import zstandard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import instmix  # noqa: E402


def _paragraphs() -> list[str]:
    docs = []
    raw = os.path.join(ROOT, "examples", "quickstart", "data", "raw")
    for name in sorted(os.listdir(raw)):
        with open(os.path.join(raw, name), "rb") as f:
            data = zstandard.ZstdDecompressor().decompress(f.read(), max_output_size=1 << 30)
        docs += [json.loads(line) for line in data.splitlines() if line.strip()]
    return [p.strip() for d in docs for p in d["text"].split("\n\n") if len(p.strip()) > 40]


def corpus(folder: str, copies: int, files: int = 8) -> list[dict]:
    paras = _paragraphs()
    text_paths, orca_paths = [], []
    for c in range(copies):
        if c == 0:
            docs = paras
        else:
            order = list(paras)
            random.Random(c).shuffle(order)
            k = 1 + c % 3
            docs = ["\n\n".join(order[i:i + k]) for i in range(0, len(order), k)]
        for i in range(files):
            part = docs[i::files]
            path = os.path.join(folder, f"text-{c}-{i}.jsonl")
            with open(path, "w") as f:
                f.writelines(json.dumps({"text": p}) + "\n" for p in part)
            text_paths.append(path)
            path = os.path.join(folder, f"orca-{c}-{i}.jsonl")
            with open(path, "w") as f:
                for p in part:
                    cut = max(p.find(". ") + 1, 20)
                    f.write(json.dumps({"question": p[:cut], "response": p[cut:]}) + "\n")
            orca_paths.append(path)
    return [{"name": "text", "paths": text_paths, "ratio": 0.7, "max_repetition": 4},
            {"name": "orca", "paths": orca_paths, "kind": "openorca", "ratio": 0.3,
             "loss": "responses", "max_repetition": 4}]


TOKENS_PER_COPY = 480_000  # served tokens one copy allows at the caps, with margin


def served(mix_kw: dict, loader_kw: dict, batch: int) -> dict:
    """Tokens, wall and CPU seconds of one loader's epoch: ``steady`` after the first batch
    (per-reader start-up is a fixed cost), ``total`` from the loader's creation. CPU is this
    process's plus its reaped workers' (known only for the whole run with workers)."""
    t_start, c_start = time.perf_counter(), _cpu()
    it = iter(instmix.DataLoader(instmix.StreamingMixture(**mix_kw), batch_size=batch,
                                 **loader_kw))
    first = next(it)["input_ids"].numel()
    t0, c0 = time.perf_counter(), _cpu()
    n = 0
    for b in it:
        n += b["input_ids"].numel()
    t1, c1 = time.perf_counter(), _cpu()
    return {"tokens": n, "wall": t1 - t0, "cpu": c1 - c0, "first_s": t0 - t_start,
            "total_tokens": n + first, "total_wall": t1 - t_start, "total_cpu": c1 - c_start}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=16_000_000)
    ap.add_argument("--copies", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    copies = args.copies or -(-args.tokens // TOKENS_PER_COPY)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"tokenizer": os.path.join(ROOT, "examples", "quickstart", "tokenizer.json"),
               "seed": 1, "output": os.path.join(tmp, "out"), "cache_dir": tmp,
               "total_tokens": args.tokens, "sources": corpus(tmp, copies)}
        kw = {"config": cfg, "seq_len": args.seq_len, "streams": args.streams}
        out = {"args": vars(args), "copies": copies, "load_start": load}
        for workers in (1, 2):
            r = out[f"workers_{workers}"] = served(kw, {"num_workers": workers}, args.batch)
            print(f"workers={workers}: after the first batch {r['tokens']:,} tokens in "
                  f"{r['wall']:.2f} s = {r['tokens'] / r['wall']:,.0f} tokens/s; with start-up "
                  f"{r['total_tokens']:,} in {r['total_wall']:.2f} s = "
                  f"{r['total_tokens'] / r['total_wall']:,.0f} tokens/s (first batch after "
                  f"{r['first_s']:.2f} s); CPU {r['total_cpu']:.2f} s", flush=True)
        w1, w2 = out["workers_1"], out["workers_2"]
        out["ratio_workers"] = (w2["tokens"] / w2["wall"]) / (w1["tokens"] / w1["wall"])
        out["ratio_workers_total"] = (w2["total_tokens"] / w2["total_wall"]) / \
            (w1["total_tokens"] / w1["total_wall"])
        print(f"throughput 2 workers / 1 worker: {out['ratio_workers']:.2f}x after the first "
              f"batch, {out['ratio_workers_total']:.2f}x with start-up (goal >= 1.7x)",
              flush=True)
        one = served(kw, {"num_workers": 0}, args.batch)
        n1, cpu1 = one["tokens"], one["cpu"]
        n8 = cpu8 = 0
        for rank in range(8):
            r = served({**kw, "rank": rank, "world_size": 8}, {"num_workers": 0}, args.batch)
            n8, cpu8 = n8 + r["tokens"], cpu8 + r["cpu"]
        out["ratio_cpu"] = (cpu8 / n8) / (cpu1 / n1)
        out.update(rank1={"tokens": n1, "cpu": cpu1}, ranks8={"tokens": n8, "cpu": cpu8})
        print(f"1 rank: {n1:,} tokens, {cpu1:.2f} CPU s = {cpu1 / n1 * 1e6:.3f} CPU us/token")
        print(f"8 ranks: {n8:,} tokens, {cpu8:.2f} CPU s = {cpu8 / n8 * 1e6:.3f} CPU us/token")
        print(f"CPU per served token, 8 ranks / 1 rank: {out['ratio_cpu']:.2f}x "
              "(goal <= 1.1x)")
    out["load_end"] = os.getloadavg()
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*out["load_end"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
