"""The clean stage's cost against the build's tokenization, in one run.

    python bench/corpus.py && python bench/clean.py

On the benchmark corpus (``bench/corpus.py``, 53 MB of real English text), each phase in a
fresh subprocess (wall time and peak RSS from ``wait4``):
- ``tokenize``: the build's tokenization, cold token cache (read, parse, tokenize, cache);
- ``clean``: the clean stage on that warm token cache with no clean facts cached: read the
  documents again, word hashes, MinHash signatures (128 permutations, word 5-grams),
  13-gram decontamination against an eval set, then exact + near dedup (threshold 0.8)
  and decontamination over the whole corpus; ``--workers`` processes (default: one per CPU,
  as the tokenizer uses one thread per CPU);
- ``plan``: the same once the clean facts are cached (what each further mixture or a sweep
  over dedup thresholds costs);
and the same for the corpus twice over (the same files under other names, so every document
has an exact copy), to show that memory stays flat in corpus size.

The eval set: 2,000 records of 100 words cut from every other corpus document (so the
decontamination finds real hits), written to ``--work``.
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


def phase(name: str, cfg_path: str, workers: int) -> None:
    """Run one phase in this process and print its numbers as JSON."""
    from instmix.builder import cleaning
    from instmix.builder.pipeline import tokenize
    from instmix.config import load_config
    from instmix.io.progress import Progress

    cfg = load_config(cfg_path)
    t = time.perf_counter()
    tokenized = tokenize(cfg)
    out = {"tokenize_s": time.perf_counter() - t,
           "documents": sum(p.documents for p in tokenized.pools),
           "tokens": sum(p.tokens for p in tokenized.pools)}
    if name != "tokenize":
        t = time.perf_counter()
        facts = cleaning.unit_facts(cfg, tokenized.pools, Progress(enabled=False), workers)
        out["signatures_s"] = time.perf_counter() - t
        t = time.perf_counter()
        found = cleaning.find(cfg, tokenized.pools, Progress(enabled=False), workers)
        out["find_s"] = time.perf_counter() - t
        out["removed"] = {k: sum(r.counts[k] for r in found)
                          for k in ("duplicate", "near_duplicate", "contaminated")}
        del facts
    print(json.dumps(out))


def run_phase(name: str, cfg_path: str, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--config", cfg_path,
           "--workers", str(workers)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    data = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"phase {name} failed with status {status}")
    out = json.loads(data)
    out.update(wall_s=time.perf_counter() - t, peak_rss_mb=usage.ru_maxrss / 1024)
    return out


def write_evals(files: list[str], path: str) -> None:
    from bench.build import load_texts

    texts = load_texts(files)
    with open(path, "w", encoding="utf-8") as f:
        n = 0
        for text in texts[::2]:
            ws = text.split()
            if len(ws) >= 300 and n < 2000:
                f.write(json.dumps({"question": " ".join(ws[100:200]), "answer": ws[0]}) + "\n")
                n += 1


def config(work: str, name: str, files: list[str], tokenizer: str, cache: str, evals: str
           ) -> str:
    cfg = {"tokenizer": tokenizer, "seed": 0, "output": os.path.join(work, name),
           "cache_dir": cache, "sources": [{"name": "corpus", "paths": files}],
           "dedup": {"exact": True, "near": {"threshold": 0.8}},
           "decontaminate": {"paths": [evals], "ngram": 13}}
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description="clean stage cost vs tokenization")
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "examples", "quickstart",
                                                        "tokenizer.json"))
    ap.add_argument("--work", default=os.path.join(HERE, "out", "clean"))
    ap.add_argument("--json", default=os.path.join(HERE, "out", "clean.json"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        phase(args.phase, args.config, args.workers)
        return
    files = sorted(glob.glob(os.path.join(os.path.abspath(args.corpus), "*.jsonl.zst")))
    if not files:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    args.work = os.path.abspath(args.work)  # the configs hold absolute paths
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    twice = os.path.join(args.work, "twice")
    os.makedirs(twice)
    for f in files:
        for k in (0, 1):
            os.link(f, os.path.join(twice, f"{k}-{os.path.basename(f)}"))
    files2 = sorted(glob.glob(os.path.join(twice, "*.jsonl.zst")))
    evals = os.path.join(args.work, "evals.jsonl")
    write_evals(files, evals)
    rows = []
    for label, fs in (("corpus", files), ("corpus x2", files2)):
        cache = os.path.join(args.work, "cache-" + label.replace(" ", ""))
        cfg = config(args.work, label.replace(" ", ""), fs, args.tokenizer, cache, evals)
        tok = run_phase("tokenize", cfg, args.workers)
        clean = run_phase("clean", cfg, args.workers)
        plan = run_phase("plan", cfg, args.workers)
        rows.append({"corpus": label, "tokenize": tok, "clean": clean, "plan": plan})
        cost = clean["signatures_s"] + clean["find_s"]
        print(f"{label}: {tok['documents']:,} documents, {tok['tokens']:,} tokens; "
              f"tokenize {tok['tokenize_s']:.1f} s ({tok['peak_rss_mb']:.0f} MB); clean "
              f"{cost:.1f} s = {cost / tok['tokenize_s']:.0%} of it (signatures "
              f"{clean['signatures_s']:.1f} s, dedup+decontamination {clean['find_s']:.2f} s"
              f", {clean['peak_rss_mb']:.0f} MB); cached facts: {plan['find_s']:.2f} s "
              f"({plan['peak_rss_mb']:.0f} MB); removed {clean['removed']}", flush=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"machine": platform.platform(), "cpus": os.cpu_count(),
                   "workers": args.workers, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
