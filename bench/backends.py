"""Faster BPE backends against Hugging Face ``tokenizers``, on the whole benchmark corpus.

    python bench/corpus.py && pip install tokie && python bench/backends.py

For each tokenizer (OLMo's GPT-NeoX file and OLMo 2's dolma2 file) and each backend, in one
process on the same in-memory texts: tokens/s, and how many documents get ids different
from the reference (``tokenizers`` ``encode_batch_fast`` with special-token strings encoded
as text, which is what instmix builds with). A backend is fit for instmix only with zero
differing documents. Candidates: instmix's tiktoken encoder (:mod:`instmix.tokenize.bpe_fast`),
instmix's gigatoken backend (:mod:`instmix.tokenize.bpe_giga`: special tokens as text) and
``tokie`` (when installed; it is not an instmix dependency).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

TOKENIZERS = {
    "gpt-neox-olmo (50,280)": os.path.join(ROOT, "examples", "quickstart", "tokenizer.json"),
    "dolma2 (100,278)": os.path.join(ROOT, "tests", "fixtures", "dolma2-tokenizer.json"),
}
BATCH = 256


def split(ids: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(ids, np.cumsum(lengths)[:-1])


def run(encode, texts) -> tuple[list[np.ndarray], float]:
    out, t = [], time.perf_counter()
    for i in range(0, len(texts), BATCH):
        ids, lengths = encode(texts[i:i + BATCH])
        out.extend(split(np.asarray(ids), np.asarray(lengths)))
    return out, time.perf_counter() - t


def main() -> None:
    from build import load_texts

    from instmix.config import TokenizerSpec
    from instmix.tokenize.bpe_fast import load
    from instmix.tokenize.encoder import Encoder
    from instmix.tokenize.facts import load_tokenizer_info

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))
    if not files:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    texts = load_texts(files)
    print(f"{len(texts):,} documents, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB, "
          f"{os.cpu_count()} cores")
    print("| tokenizer | backend | M tok/s | x reference | documents with other ids |")
    print("|---|---|---:|---:|---:|")
    results = []
    for name, path in TOKENIZERS.items():
        info = load_tokenizer_info(TokenizerSpec(path=path))
        ref_enc = Encoder(info, backend="hf")
        ref, ref_s = run(ref_enc.encode_ref, texts)
        n = sum(len(x) for x in ref)
        rows = [("tokenizers (reference)", ref, ref_s)]
        fast = load(path, threads=os.cpu_count() or 1)
        rows.append(("instmix tiktoken",) + run(fast.encode, texts))
        giga = Encoder(info, backend="gigatoken", check_rate=0)
        rows.append(("instmix gigatoken 0.10.0",) + run(giga.encode, texts))
        try:
            import tokie

            tk = tokie.Tokenizer.from_json(path)
            rows.append(("tokie " + getattr(tokie, "__version__", ""),) + run(
                lambda b, tk=tk: tk.encode_batch_flat(b, add_special_tokens=False), texts))
        except ImportError:
            pass
        for backend, got, secs in rows:
            bad = sum(not np.array_equal(a, b) for a, b in zip(got, ref))
            print(f"| {name} | {backend} | {n / secs / 1e6:.2f} | {ref_s / secs:.2f} | "
                  f"{bad:,} of {len(texts):,} |")
            results.append({"tokenizer": name, "backend": backend, "tok_per_s": n / secs,
                            "speedup": ref_s / secs, "mismatched_documents": bad})
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "backends.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
