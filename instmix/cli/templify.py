"""``instmix templify FILE_OR_CONFIG``: render a few augmented chains to the terminal."""

from __future__ import annotations

import os
import sys

import yaml

from instmix.config import load_config
from instmix.errors import ConfigError
from instmix.io.readers import resolve_paths
from instmix.synth.config import load_augment_config
from instmix.synth.kind import iter_chains, template_seed
from instmix.synth.templates import render_chain


def register(sub) -> None:
    p = sub.add_parser("templify", help="render a few augmented chains as training text",
                       description="Render the first chains of augment output with the "
                       "template bank, exactly as 'kind: augmented' feeds them to a build. "
                       "FILE_OR_CONFIG is an output file or folder of 'instmix augment', an "
                       "augment config (its output) or a build config (its augmented sources).")
    p.add_argument("target", metavar="FILE_OR_CONFIG")
    p.add_argument("-n", type=int, default=3, help="chains to render (default 3)")
    p.add_argument("--seed", type=int, help="template seed (default: the source's "
                   "options.template_seed, else 0)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="highlight answers (default: on a terminal)")
    p.set_defaults(func=run)


def _targets(target: str) -> list[tuple[str, list[str], int]]:
    """``(name, paths, template seed)`` for each augmented input named by ``target``."""

    if os.path.isdir(target):
        pattern = os.path.join(target, "*.jsonl.zst")
        return [(target, resolve_paths([pattern], where=target, key="FILE_OR_CONFIG"), 0)]
    if not target.endswith((".yaml", ".yml")):
        return [(target, resolve_paths([target], where=target, key="FILE_OR_CONFIG"), 0)]

    with open(target, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if isinstance(data, dict) and "synthesizer" in data:
        out = load_augment_config(target).output
        pattern = os.path.join(out, "*.jsonl.zst")
        return [(out, resolve_paths([pattern], where=target, key="output"), 0)]

    cfg = load_config(target)
    found = [(s.name, resolve_paths(s.paths, where=target, key=f"sources[{i}].paths"),
              template_seed(s)) for i, s in enumerate(cfg.sources) if s.kind == "augmented"]
    if not found:
        raise ConfigError(target, "sources", "no source has kind augmented")
    return found


def run(args) -> int:
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    shown = 0
    for name, paths, seed in _targets(args.target):
        seed = seed if args.seed is None else args.seed
        stats: dict = {}
        for chain_id, entries in iter_chains(paths, skip_bad=True, stats=stats):
            if shown >= args.n:
                return 0
            r = render_chain(entries, seed, chain_id)
            print(f"--- {name}: chain {chain_id} ({len(entries)} entries; layouts "
                  f"{', '.join(r.layouts)}; seed {seed})")
            print(_highlight(r.text, r.spans) if color else r.text)
            print()
            shown += 1
    return 0


def _highlight(text: str, spans) -> str:
    out, pos = [], 0
    for a, b in spans:
        out += [text[pos:a], "\033[1;32m", text[a:b], "\033[0m"]
        pos = b
    out.append(text[pos:])
    return "".join(out)
