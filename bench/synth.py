"""Synthesis throughput and GPU occupancy of ``instmix augment``.

    python bench/synth.py --engine model             # the engine model: old vs new scheduler
    python bench/synth.py                            # CPU: transformers engine, tiny random model
    python bench/synth.py --engine vllm --model /models/instruction-synthesizer   # GPU

``--engine model`` runs the real runner against :mod:`instmix.synth.engines.model` (a
deterministic model of a continuous-batching vLLM server, vLLM's A100 defaults) on
``--texts`` texts (default 10,000) of a realistic length mix, M=3, twice in the same
process: with the scheduler as it was (``schedule: barrier``: one block at a time, each
round after the previous, longest first, calls of ``batch_size``) and as it is. It prints
slot occupancy (busy slot-steps / (steps x max_num_seqs)) and the prefix-cache hit rate
(cached prompt tokens / reusable prompt tokens, per ``stats.json``) of both, and ends with
one line ``occupancy X prefix_hit Y`` for the current scheduler (goals >= 0.90, >= 0.80).

``--engine vllm`` (CUDA, vLLM and the weights by path) runs the real synthesizer with the
published settings (max_model_len 4096, max_new_tokens 400), with and without n-gram
speculation (``--spec-k``, 0 to skip), and reports raw tokens/s per GPU, GPU-hours per 1B
raw tokens and the prefix-cache hit rate against the published figure (about 2 days per
1B raw tokens on one A100-80GB, ~5.8k raw tokens/s).

On CPU (``--engine transformers``) it builds a tiny random Mistral model, so the numbers
measure the pipeline, not a model: the goal is an overhead below 5% of engine time.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PUBLISHED_RAW_TOK_S = 1e9 / (2 * 86400)  # ~5.8k raw tokens/s on one A100-80GB
TOKENIZER = os.path.join(ROOT, "examples", "quickstart", "tokenizer.json")


def real_texts(max_chars: int | None = None) -> list[str]:
    from instmix.io.readers import iter_jsonl

    raw = sorted(glob.glob(os.path.join(ROOT, "examples", "quickstart", "data", "raw",
                                        "*.jsonl.zst")))
    texts = [obj["text"][:max_chars] for p in raw for _, obj in iter_jsonl(p)]
    if not texts:
        raise SystemExit("no input: examples/quickstart/data/raw/*.jsonl.zst is missing")
    return texts


def corpus(path: str, docs: int, max_chars: int) -> str:
    """Write ``docs`` documents of real text (cut to ``max_chars``) as JSON lines."""
    texts = real_texts(max_chars)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(docs):
            f.write(json.dumps({"text": texts[i % len(texts)]}) + "\n")
    return path


def mixed_corpus(path: str, docs: int, seed: int = 0) -> str:
    """``docs`` documents of real prose whose lengths follow a web-like mix: log-normal,
    median ~1,600 characters (~350 tokens), a long tail past the context (split later)."""
    words = " ".join(real_texts()).split()
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(docs):
            n = int(min(6000, max(40, rng.lognormvariate(math.log(260), 0.8))))
            at = rng.randrange(len(words) - n)
            f.write(json.dumps({"text": " ".join(words[at:at + n])}) + "\n")
    return path


def model_run(work: str, inp: str, schedule: str, args) -> dict:
    from dataclasses import replace

    from instmix.synth.block import Settings, make_encoder
    from instmix.synth.config import load_augment_config
    from instmix.synth.engines import create_engine
    from instmix.synth.runner import augment

    cfg = load_augment_config({
        "synthesizer": {"engine": "instmix.synth.engines.model:EngineModel", "model": "model",
                        "tokenizer": TOKENIZER, "bos_token": "<|padding|>",
                        "eos_token": "<|endoftext|>", "max_model_len": 4096,
                        "max_new_tokens": 400, "batch_size": 1024,
                        "options": {"max_num_seqs": args.max_num_seqs}},
        "rounds": args.rounds, "block_size": args.block_size, "checkpoint_every": 2048,
        "sources": [{"name": "bench", "paths": [inp]}],
        "output": os.path.join(work, f"out-{schedule}")})
    engine = create_engine(cfg.synthesizer, make_encoder(cfg.synthesizer).tok)
    t = time.perf_counter()
    stats = augment(cfg, engine=engine, settings=replace(Settings.of(cfg), schedule=schedule))
    wall = time.perf_counter() - t
    st = engine.stats
    raw = stats["totals"]["tokens"]["text"]
    return {"schedule": schedule, "texts": stats["totals"]["texts"],
            "occupancy": round(engine.occupancy, 4),
            "prefix_hit": stats["totals"].get("prefix_hit_rate", 0.0),
            "engine_cached_share": round(st["cached_tokens"] / st["prompt_tokens"], 4),
            "preemptions": st["preemptions"], "steps": st["steps"],
            "simulated_s": round(st["seconds"], 1),
            "raw_tokens_per_simulated_s": round(raw / st["seconds"], 1),
            "wall_s": round(wall, 1)}


def bench_model(args) -> int:
    work = tempfile.mkdtemp(prefix="instmix-bench-synth-model-")
    inp = mixed_corpus(os.path.join(work, "in.jsonl"), args.texts)
    rows = [model_run(work, inp, s, args) for s in ("barrier", "continuous")]
    keys = list(rows[0])
    print(" ".join(f"{k:>14}" for k in keys))
    for r in rows:
        print(" ".join(f"{r[k]!s:>14}" for k in keys))
    old, new = rows
    print(f"speed-up in simulated time: {old['simulated_s'] / new['simulated_s']:.2f}x "
          f"(same run, same texts)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    print(f"occupancy {new['occupancy']:.2f} prefix_hit {new['prefix_hit']:.2f}")
    return 0


def bench_vllm(args) -> int:
    """Real synthesizer on a GPU: without, then with n-gram speculation, each run in its own
    process (so each vLLM engine gets the whole GPU)."""
    import subprocess

    if args.variant is None:
        rows = []
        for variant in ["plain"] + ([f"ngram{args.spec_k}"] if args.spec_k else []):
            out = os.path.join(tempfile.mkdtemp(prefix="instmix-bench-vllm-"), "row.json")
            cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--variant",
                   variant, "--json", out]
            subprocess.run(cmd, check=True)
            with open(out, encoding="utf-8") as f:
                rows.append(json.load(f))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(rows, f, indent=1)
        return 0
    from instmix.synth.config import load_augment_config
    from instmix.synth.runner import augment

    work = tempfile.mkdtemp(prefix="instmix-bench-synth-vllm-")
    inp = mixed_corpus(os.path.join(work, "in.jsonl"), args.docs)
    engine_args = {"max_num_seqs": args.max_num_seqs}
    if args.variant.startswith("ngram"):
        engine_args["speculative_config"] = {
            "method": "ngram", "num_speculative_tokens": int(args.variant[5:]),
            "prompt_lookup_max": 4, "prompt_lookup_min": 2}
    cfg = load_augment_config({
        "synthesizer": {"engine": "vllm", "model": args.model, "max_model_len": 4096,
                        "max_new_tokens": 400, "engine_args": engine_args},
        "rounds": args.rounds, "block_size": args.block_size,
        "sources": [{"name": "bench", "paths": [inp]}],
        "output": os.path.join(work, "out")})
    t = time.perf_counter()
    stats = augment(cfg)
    wall = time.perf_counter() - t
    s = stats["sessions"][-1]
    raw_s = s["raw_tokens"] / s["seconds"]
    row = {"run": args.variant, "max_num_seqs": args.max_num_seqs, "texts": s["texts"],
           "wall_s": round(wall, 1), "session_s": s["seconds"],
           "raw_tokens_per_s_per_gpu": round(raw_s, 1),
           "gpu_hours_per_1B_raw": round(1e9 / raw_s / 3600, 1),
           "vs_published": round(raw_s / PUBLISHED_RAW_TOK_S, 2),
           "generated_tokens_per_s": s["generated_tokens_per_s"],
           "prefix_hit": stats["totals"].get("prefix_hit_rate"),
           "status": stats["totals"]["status"]}
    print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(row, f, indent=1)
    return 0


def bench_cpu(args) -> int:
    from instmix.synth.block import make_encoder
    from instmix.synth.config import load_augment_config
    from instmix.synth.engines import create_engine
    from instmix.synth.runner import augment
    from instmix.synth.testing import build_model

    work = tempfile.mkdtemp(prefix="instmix-bench-synth-")
    model = args.model or build_model(os.path.join(work, "model"), layers=args.layers,
                                      hidden=args.hidden)
    synth = {"engine": "transformers", "model": model, "max_model_len": 1024,
             "max_new_tokens": 64, "batch_size": args.batch_size or 8}
    if args.threads:
        synth["threads"] = args.threads
    inp = corpus(os.path.join(work, "in.jsonl"), args.docs, 2500)
    cfg = load_augment_config({
        "synthesizer": synth, "rounds": args.rounds, "block_size": args.docs,
        "checkpoint_every": 4 * synth["batch_size"],
        "sources": [{"name": "bench", "paths": [inp]}], "output": os.path.join(work, "out")})
    t = time.perf_counter()
    engine = create_engine(cfg.synthesizer, make_encoder(cfg.synthesizer).tok)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    stats = augment(cfg, engine=engine)
    wall = time.perf_counter() - t
    s = stats["sessions"][-1]
    engine_s = s["engine_seconds"]
    result = {
        "engine": "transformers", "model": "tiny random Mistral "
        f"({args.layers} layers, width {args.hidden})" if args.model is None else model,
        "docs": stats["totals"]["docs"], "texts": s["texts"], "rounds": args.rounds,
        "batch_size": synth["batch_size"], "load_s": round(load_s, 2),
        "wall_s": round(wall, 2), "engine_s": round(engine_s, 2),
        "overhead_pct": round(100 * (wall - engine_s) / engine_s, 2) if engine_s else None,
        "orchestration_ms_per_text": round(1000 * (wall - engine_s) / s["texts"], 2)
        if s["texts"] else None,
        "prompts_per_s": round(s["texts"] / wall, 3),
        "raw_tokens_per_s": round(s["raw_tokens"] / wall, 1),
    }
    for k, v in result.items():
        print(f"{k:>26}: {v}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    engine.close()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("model", "transformers", "vllm"),
                   default="transformers")
    p.add_argument("--model", help="synthesizer weights folder (vllm; CPU default: a tiny "
                   "random model)")
    p.add_argument("--texts", type=int, default=10_000, help="documents (engine model)")
    p.add_argument("--docs", type=int, default=None,
                   help="documents (default 48 on CPU, 3000 with vllm)")
    p.add_argument("--rounds", type=int, default=None, help="M (default 3; 2 on CPU)")
    p.add_argument("--block-size", type=int, default=256, help="documents per block")
    p.add_argument("--max-num-seqs", type=int, default=256,
                   help="engine slots (the engine model's, or vLLM's max_num_seqs)")
    p.add_argument("--spec-k", type=int, default=4,
                   help="n-gram speculative tokens for the second vllm run (0: skip it)")
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # one vllm run
    p.add_argument("--batch-size", type=int, default=None, help="CPU batch (default 8)")
    p.add_argument("--hidden", type=int, default=128, help="tiny model width (CPU)")
    p.add_argument("--layers", type=int, default=2, help="tiny model depth (CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.engine == "model":
        args.rounds = args.rounds or 3
        return bench_model(args)
    if args.engine == "vllm":
        if not args.model:
            raise SystemExit("--engine vllm needs --model PATH (the synthesizer's weights)")
        args.rounds, args.docs = args.rounds or 3, args.docs or 1200
        return bench_vllm(args)
    args.rounds, args.docs = args.rounds or 2, args.docs or 48
    return bench_cpu(args)


if __name__ == "__main__":
    sys.exit(main())
