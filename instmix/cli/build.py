"""``instmix build CONFIG``: tokenize, mix by tokens, write packed shards."""

from __future__ import annotations

import contextlib
import os

from instmix.builder.executor import EXECUTORS, make_executor
from instmix.builder.pipeline import build
from instmix.builder.summary import print_summary
from instmix.config import load_config
from instmix.io import fs
from instmix.io.progress import Progress


def add_executor_args(p) -> None:
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where tokenizing and shard writing run: this process (default) or "
                   "Ray tasks (same output, byte for byte)")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to use with --executor "
                   "ray (default: RAY_ADDRESS; without it a local Ray is started)")


def open_executor(args):
    """``--executor ray``: a Ray executor (a context manager); local: the build's own pool."""
    if args.executor == "local":
        return contextlib.nullcontext()
    return make_executor(args.executor, args.ray_address)


def local_or_url(path: str) -> str:
    return path if fs.is_url(path) else os.path.abspath(path)


def register(sub) -> None:
    p = sub.add_parser("build", help="build a token-counted mixture into packed shards",
                       description="Tokenize the sources of CONFIG, mix them by tokens at the "
                       "configured ratios and write packed token shards with a manifest.")
    p.add_argument("config", help="YAML config (see README)")
    p.add_argument("--out", help="output folder (overrides 'output' in the config)")
    p.add_argument("--seed", type=int, help="override 'seed'")
    p.add_argument("--total-tokens", type=int, help="override 'total_tokens'")
    p.add_argument("--cache-dir", help="token cache folder (default: .instmix-cache beside "
                   "the output)")
    p.add_argument("--workers", type=int, help="processes that tokenize and compute the "
                   "clean stage's signatures (override 'workers'; default: every available core)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_executor_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_config(args.config)
    changes = {}
    if args.out:
        changes["output"] = local_or_url(args.out)
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.total_tokens is not None:
        changes["total_tokens"] = args.total_tokens
    if args.workers is not None:
        changes["workers"] = args.workers
    if args.cache_dir:
        changes["cache_dir"] = local_or_url(args.cache_dir)
    cfg = cfg.with_overrides(**changes)
    stats: dict = {}
    with open_executor(args) as executor:
        manifest = build(cfg, progress=Progress(False if args.no_progress else None),
                         workers=args.workers, executor=executor, stats=stats)
    print_summary(manifest, title=f"built {cfg.output}")
    if stats.get("storage_retries"):
        print(f"storage: {stats['storage_retries']} request(s) retried (throttling or "
              "transient errors)")
    return 0
