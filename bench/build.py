"""End-to-end build throughput against the raw tokenizer, in one run.

    python bench/corpus.py && python bench/build.py

Measures on the benchmark corpus (``bench/corpus.py``, >= 50 MB of real English text):
- the reference: Hugging Face ``tokenizers`` ``encode_batch`` (and ``encode_batch_fast``)
  over the same texts, already in memory, all cores (its Rayon pool), in a subprocess;
- ``instmix build`` end to end from ``.jsonl.zst`` files to shards, cold token cache, with
  the reference backend (``hf``) and with the fast backend (``tiktoken``), each in a fresh
  subprocess (wall time and peak RSS from ``wait4``);
- the same for the corpus twice over (peak memory must stay flat in corpus size);
- a warm rebuild (every token cache hit: planning + interleaving + writing only);
- whether the ``hf`` and ``tiktoken`` builds are byte-identical (the fast backend is the
  default only because they are).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def load_texts(files: list[str]) -> list[str]:
    import zstandard

    texts = []
    for path in files:
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().decompress(f.read(), max_output_size=1 << 31)
        texts.extend(json.loads(line)["text"] for line in data.splitlines() if line)
    return texts


def reference(tokenizer: str, files: list[str], method: str, batch: int = 1024) -> dict:
    """Time the raw tokenizer on in-memory texts (run in a subprocess via --reference)."""
    from tokenizers import Tokenizer

    texts = load_texts(files)
    tok = Tokenizer.from_file(tokenizer)
    tok.encode_special_tokens = True
    encode = getattr(tok, method)
    n = 0
    t = time.perf_counter()
    for i in range(0, len(texts), batch):
        n += sum(len(e.ids) for e in encode(texts[i:i + batch], add_special_tokens=False))
    return {"tokens": n, "seconds": time.perf_counter() - t,
            "mb": sum(len(x.encode("utf-8")) for x in texts) / 1e6}


def run_reference(tokenizer: str, files: list[str], method: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--reference", method, "--tokenizer",
                          tokenizer, *files], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run_build(work: str, name: str, files: list[str], tokenizer: str, backend: str,
              cache: str) -> dict:
    out = os.path.join(work, name)
    cfg = {"tokenizer": {"path": tokenizer, "backend": backend}, "seed": 0, "output": out,
           "cache_dir": cache, "sources": [{"name": "corpus", "paths": files}]}
    cfg_path = os.path.join(work, name + ".yaml")
    with open(cfg_path, "w") as f:
        yaml.safe_dump(cfg, f)
    cmd = [sys.executable, "-m", "instmix", "build", "--no-progress", cfg_path]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"build {name} failed with status {status}")
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    return {"name": name, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "tokens": manifest["total_tokens"], "documents": manifest["documents"], "out": out}


def same_bytes(a: str, b: str) -> bool:
    names = sorted(os.listdir(a))
    if names != sorted(os.listdir(b)):
        return False
    for n in names:
        with open(os.path.join(a, n), "rb") as x, open(os.path.join(b, n), "rb") as y:
            if x.read() != y.read():
                return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description="instmix build throughput vs raw tokenizer")
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "examples", "quickstart",
                                                        "tokenizer.json"))
    ap.add_argument("--work", default=os.path.join(HERE, "out", "build"))
    ap.add_argument("--json", default=os.path.join(HERE, "out", "build.json"))
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference:
        print(json.dumps(reference(args.tokenizer, args.files, args.reference)))
        return
    files = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))
    if not files:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    # The 2x corpus: the same files again under other names (other document ids).
    twice = os.path.join(args.work, "twice")
    os.makedirs(twice)
    for f in files:
        for k in (0, 1):
            os.link(f, os.path.join(twice, f"{k}-{os.path.basename(f)}"))
    files2 = sorted(glob.glob(os.path.join(twice, "*.jsonl.zst")))

    ref = run_reference(args.tokenizer, files, "encode_batch")
    ref_fast = run_reference(args.tokenizer, files, "encode_batch_fast")
    mb, ref_tokens = ref["mb"], ref["tokens"]
    ref_rate = ref_tokens / ref["seconds"]
    fast_rate = ref_tokens / ref_fast["seconds"]
    print(f"corpus: {len(files)} files, {mb:.1f} MB of text, {ref_tokens:,} tokens; "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"reference encode_batch: {ref['seconds']:.1f} s = {ref_rate / 1e6:.3f} M tok/s; "
          f"encode_batch_fast: {ref_fast['seconds']:.1f} s = {fast_rate / 1e6:.3f} M tok/s")

    cache = lambda n: os.path.join(args.work, "cache-" + n)  # noqa: E731
    runs = [
        run_build(args.work, "hf", files, args.tokenizer, "hf", cache("hf")),
        run_build(args.work, "tiktoken", files, args.tokenizer, "tiktoken", cache("tt")),
        run_build(args.work, "tiktoken-warm", files, args.tokenizer, "tiktoken", cache("tt")),
        run_build(args.work, "tiktoken-2x", files2, args.tokenizer, "tiktoken", cache("2x")),
        run_build(args.work, "hf-2x", files2, args.tokenizer, "hf", cache("hf2x")),
    ]
    identical = same_bytes(runs[0]["out"], runs[1]["out"])
    rows = []
    for r in runs:
        corpus_tokens = ref_tokens * (2 if r["name"].endswith("2x") else 1)
        rate = corpus_tokens / r["wall_s"]
        rows.append({**{k: v for k, v in r.items() if k != "out"}, "tok_per_s": rate,
                     "vs_encode_batch": rate / ref_rate, "vs_encode_batch_fast": rate / fast_rate})
    print("| run | wall s | M tok/s | x encode_batch | x encode_batch_fast | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['wall_s']:.1f} | {r['tok_per_s'] / 1e6:.2f} | "
              f"{r['vs_encode_batch']:.2f} | {r['vs_encode_batch_fast']:.2f} | "
              f"{r['peak_rss_mb']:.0f} |")
    print(f"hf and tiktoken builds byte-identical: {identical}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"corpus_mb": mb, "reference": ref, "reference_fast": ref_fast,
                   "runs": rows, "identical": identical}, f, indent=1)
    if not identical:
        raise SystemExit("the fast backend changed the output")


if __name__ == "__main__":
    main()
