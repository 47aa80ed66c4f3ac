"""Synthesis throughput: prompts/s and raw tokens/s of ``instmix augment`` for the engine
in use, and the orchestration overhead (everything but the engine) as a share of engine
time.

    python bench/synth.py                        # CPU: transformers engine, tiny random model
    python bench/synth.py --engine vllm --model /models/instruction-synthesizer   # GPU

On CPU it builds a tiny random Mistral model (``instmix.synth.testing``), so the numbers
measure the pipeline, not a model: the goal is an overhead below 5% of engine time. With
``--engine vllm`` (CUDA and vLLM installed, weights given by path) it runs the real
synthesizer with the published settings (max_model_len 4096, max_new_tokens 400) and
compares raw tokens/s with the published figure (about 2 days per 1B raw tokens on one
A100-80GB, i.e. ~5.8k raw tokens/s).

Input: the quickstart's real documents (``examples/quickstart/data/raw``), repeated to
``--docs`` documents. The engine is built before the clock starts (model loading is not
throughput); everything else, reading, segmenting, chaining, generating, parsing, writing
and checkpointing, is timed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PUBLISHED_RAW_TOK_S = 1e9 / (2 * 86400)  # ~5.8k raw tokens/s on one A100-80GB


def corpus(path: str, docs: int, max_chars: int) -> str:
    """Write ``docs`` documents of real text (cut to ``max_chars``) as JSON lines."""
    from instmix.io.readers import iter_jsonl

    raw = sorted(glob.glob(os.path.join(ROOT, "examples", "quickstart", "data", "raw",
                                        "*.jsonl.zst")))
    texts = [obj["text"][:max_chars] for p in raw for _, obj in iter_jsonl(p)]
    if not texts:
        raise SystemExit("no input: examples/quickstart/data/raw/*.jsonl.zst is missing")
    with open(path, "w", encoding="utf-8") as f:
        for i in range(docs):
            f.write(json.dumps({"text": texts[i % len(texts)]}) + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("transformers", "vllm"), default="transformers")
    p.add_argument("--model", help="synthesizer weights folder (default: a tiny random model)")
    p.add_argument("--docs", type=int, default=48, help="documents to augment (default 48)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-model-len", type=int, default=None,
                   help="default: 4096 with vllm, 1024 on CPU")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default: 400 with vllm, 64 on CPU")
    p.add_argument("--max-chars", type=int, default=None,
                   help="cut documents to this many characters (default: 12000 with vllm, "
                   "2500 on CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 1024 vllm, 8 CPU")
    p.add_argument("--hidden", type=int, default=128, help="tiny model width (CPU)")
    p.add_argument("--layers", type=int, default=2, help="tiny model depth (CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)

    from instmix.synth.block import make_encoder
    from instmix.synth.config import load_augment_config
    from instmix.synth.engines import create_engine
    from instmix.synth.runner import augment

    gpu = args.engine == "vllm"
    if gpu and not args.model:
        raise SystemExit("--engine vllm needs --model PATH (the synthesizer's weights)")
    work = tempfile.mkdtemp(prefix="instmix-bench-synth-")
    model = args.model
    if model is None:
        from instmix.synth.testing import build_model

        model = build_model(os.path.join(work, "model"), layers=args.layers, hidden=args.hidden)
    synth = {"engine": args.engine, "model": model,
             "max_model_len": args.max_model_len or (4096 if gpu else 1024),
             "max_new_tokens": args.max_new_tokens or (400 if gpu else 64),
             "batch_size": args.batch_size or (1024 if gpu else 8)}
    if not gpu and args.threads:
        synth["threads"] = args.threads
    inp = corpus(os.path.join(work, "in.jsonl"), args.docs,
                 args.max_chars or (12000 if gpu else 2500))
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
        "engine": args.engine, "model": "tiny random Mistral "
        f"({args.layers} layers, width {args.hidden})" if args.model is None else model,
        "docs": stats["totals"]["docs"], "texts": s["texts"], "rounds": args.rounds,
        "max_model_len": synth["max_model_len"], "max_new_tokens": synth["max_new_tokens"],
        "batch_size": synth["batch_size"], "load_s": round(load_s, 2), "wall_s": round(wall, 2),
        "engine_s": round(engine_s, 2),
        "overhead_pct": round(100 * (wall - engine_s) / engine_s, 2) if engine_s else None,
        "orchestration_ms_per_text": round(1000 * (wall - engine_s) / s["texts"], 2)
        if s["texts"] else None,
        "prompts_per_s": round(s["texts"] / wall, 3),
        "raw_tokens_per_s": round(s["raw_tokens"] / wall, 1),
        "prompt_tokens_per_s": round(s["prompt_tokens"] / wall, 1),
        "generated_tokens_per_s": round(s["generated_tokens"] / wall, 1),
        "raw_tokens": s["raw_tokens"], "generated_tokens": s["generated_tokens"],
        "continued_chains": stats["totals"]["continued_chains"],
    }
    if gpu:
        result["vs_published"] = round(result["raw_tokens_per_s"] / PUBLISHED_RAW_TOK_S, 2)
    for k, v in result.items():
        print(f"{k:>24}: {v}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
