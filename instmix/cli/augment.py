"""``instmix augment CONFIG``: synthesize instruction-response pairs for raw text."""

from __future__ import annotations

import os
from dataclasses import replace

from instmix.io import fs
from instmix.io.progress import Progress
from instmix.synth.config import load_augment_config
from instmix.synth.runner import RunContext, augment


def register(sub) -> None:
    p = sub.add_parser("augment", help="synthesize instruction-response pairs (resumable)",
                       description="Run the instruction synthesizer over the sources of CONFIG "
                       "in M chained rounds and write checkpointed .jsonl.zst parts. Rerun the "
                       "same command to resume after an interruption.")
    p.add_argument("config", help="augment YAML config (see docs/synthesis.md)")
    p.add_argument("--out", help="output folder (overrides 'output')")
    p.add_argument("--rank", type=int, default=0, help="this process's rank (default 0)")
    p.add_argument("--world-size", type=int, default=1,
                   help="number of processes sharing the blocks (default 1)")
    p.add_argument("--retry-failed", action="store_true",
                   help="make failed entries again (and what followed them in their block)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_augment_config(args.config)
    if args.out:
        cfg = replace(cfg, output=args.out if fs.is_url(args.out) else os.path.abspath(args.out))
    stats = augment(cfg, ctx=RunContext(args.rank, args.world_size),
                    progress=Progress(False if args.no_progress else None),
                    retry_failed=args.retry_failed)
    t = stats["totals"]
    status = ", ".join(f"{k} {v:,}" for k, v in t.get("status", {}).items())
    print(f"augmented {cfg.output}: {t.get('texts', 0):,} texts from {t.get('docs', 0):,} "
          f"documents, {t.get('pairs', 0):,} pairs ({status}); blocks "
          f"{stats['blocks_done']}/{stats['blocks_total']}")
    if stats["sessions"]:
        s = stats["sessions"][-1]
        print(f"this run: {s['texts_per_s']:.2f} texts/s, {s['raw_tokens_per_s']:,.0f} raw "
              f"tok/s, {s['generated_tokens_per_s']:,.0f} generated tok/s")
    print(f"stats: {fs.join(cfg.output, 'stats.json')}")
    return 0
