"""``instmix sweep CONFIG --ratios NAME=v1,v2,...``: one mixture per ratio set."""

from __future__ import annotations

from instmix.builder.sweep import expand, parse_set, sweep
from instmix.config import load_config
from instmix.export.zero_copy import sweep_zero_copy
from instmix.io.progress import Progress

from .build import add_executor_args, local_or_url, open_executor


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="build one mixture per ratio set, tokenizing the sources once",
        description="Build mixtures of CONFIG's sources that differ only in ratios. Each "
        "mixture goes to OUT/<name=value,...>/ with its own manifest; all share one "
        "tokenization. With one seed, the documents a source gives for a smaller share are "
        "a prefix of those it gives for a larger one.")
    p.add_argument("config", help="YAML config (as for instmix build)")
    p.add_argument("--ratios", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="values for one source's ratio (repeat for a product of sources)")
    p.add_argument("--set", action="append", default=[], dest="sets",
                   metavar="NAME=V,NAME=V", help="one full ratio set (repeatable)")
    p.add_argument("--out", help="folder for the mixtures (default: the config's output)")
    p.add_argument("--zero-copy", action="store_true",
                   help="write tokens once (a per-source pool build) and, per ratio set, only "
                   "an OLMo-core source-mixture config over the pool's files")
    p.add_argument("--seq-len", type=int, default=4096,
                   help="OLMo-core sequence length for --zero-copy configs (default 4096)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_executor_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_config(args.config)
    sets = (expand(cfg, args.ratios) if args.ratios else []) + \
        [parse_set(cfg, s) for s in args.sets]
    out = local_or_url(args.out) if args.out else cfg.output
    progress = Progress(False if args.no_progress else None)
    if args.zero_copy:
        summary = sweep_zero_copy(cfg, sets, out=out, seq_len=args.seq_len, progress=progress)
        print(f"{len(summary['mixtures'])} OLMo-core mixture config(s) in {out} over "
              f"{out}/pool ({sum(summary['pool_tokens'].values()):,} tokens written once)")
        for m in summary["mixtures"]:
            print(f"  {m['label']}/olmo_core_mixture.yaml  requested {m['requested_tokens']:,}")
        return 0
    with open_executor(args) as executor:
        summary = sweep(cfg, sets, out=out, progress=progress, executor=executor)
    names = [s.name for s in cfg.sources]
    width = max(len(m["label"]) for m in summary["mixtures"])
    print(f"{len(summary['mixtures'])} mixture(s) in {out} "
          f"(tokenized once in {summary['tokenize_seconds']:.1f} s)")
    print(f"{'mixture'.ljust(width)}  {'tokens':>12}  " +
          "  ".join(f"{n:>12}" for n in names) + "  seconds")
    for m in summary["mixtures"]:
        print(f"{m['label'].ljust(width)}  {m['total_tokens']:>12,}  " +
              "  ".join(f"{m['sources'][n]:>12,}" for n in names) + f"  {m['seconds']:>7.2f}")
    return 0
