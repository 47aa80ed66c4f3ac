"""Ratio sweeps: many mixtures of the same sources, tokenized once.

Every mixture of a sweep reuses the token caches of the first (one tokenization per input
file, whatever the number of mixtures), so an extra mixture costs only planning and
writing. With one seed, mixtures differ only where the ratios differ: the documents a
source contributes for a smaller share are a prefix of those it contributes for a larger
one (see :mod:`instmix.plan`), so ablations compare like with like.

Ratio sets are written ``name=value,name=value``; :func:`expand` turns per-source value
lists (``augmented=0,0.5,1``) into their product, the other sources keeping the config's
ratios.

The zero-copy variant (:func:`sweep_zero_copy`) writes tokens once: a ``per_source`` build
(``pool/``) holding, per source, its largest share over the sweep plus a margin, and for
each ratio set only an OLMo-core ``SourceMixtureDatasetConfig`` over the pool's files.
OLMo-core reads the first instances of each file, and the pool's files are in instmix's
draw order, so every mixture gets the prefix of each source that instmix would draw.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace

from .builder import Tokenized, build, tokenize
from .config import BuildConfig
from .errors import ConfigError
from .progress import Progress


def _number(where: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(where, "ratios", f"{text!r} is not a number") from None
    if value < 0:
        raise ConfigError(where, "ratios", f"ratio {value} is negative")
    return int(value) if value.is_integer() else value


def parse_set(cfg: BuildConfig, text: str) -> dict[str, float]:
    """``"a=1,b=0.5"`` -> ``{"a": 1, "b": 0.5}``; names must be sources of ``cfg``."""
    names = {s.name for s in cfg.sources}
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(cfg.where, "ratios", f"expected name=value, got {part!r}")
        if name not in names:
            raise ConfigError(cfg.where, "ratios", f"no source named {name!r} (sources: "
                              f"{', '.join(sorted(names))})")
        out[name] = _number(cfg.where, value)
    return out


def expand(cfg: BuildConfig, axes: Sequence[str]) -> list[dict[str, float]]:
    """``["a=0,0.5,1", "b=1,2"]`` -> the 6 ratio sets of the product."""
    names, values = [], []
    for axis in axes:
        name, sep, rest = axis.partition("=")
        if not sep:
            raise ConfigError(cfg.where, "ratios", f"expected name=v1,v2,..., got {axis!r}")
        parse_set(cfg, f"{name}=0")  # checks the name
        names.append(name)
        values.append([_number(cfg.where, v) for v in rest.split(",") if v.strip()])
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def label(ratios: dict[str, float]) -> str:
    """Folder name of a mixture: ``augmented=0.25,orca=1``."""
    return ",".join(f"{k}={v:g}" for k, v in ratios.items())


def with_ratios(cfg: BuildConfig, ratios: dict[str, float], output: str) -> BuildConfig:
    sources = tuple(replace(s, ratio=ratios.get(s.name, s.ratio)) for s in cfg.sources)
    if not any(s.ratio > 0 for s in sources):
        raise ConfigError(cfg.where, "ratios", f"{label(ratios)}: every ratio is 0")
    return replace(cfg, sources=sources, output=output)


def sweep(cfg: BuildConfig, ratio_sets: Sequence[dict[str, float]], *,
          out: str | None = None, progress: Progress | None = None) -> dict:
    """Build one mixture per ratio set under ``out`` (default: the config's output).

    Writes ``sweep.json`` (labels, ratios, folders, tokens and seconds per mixture) and
    returns it.
    """
    if not ratio_sets:
        raise ConfigError(cfg.where, "ratios", "no ratio sets to build")
    root = out or cfg.output
    os.makedirs(root, exist_ok=True)
    progress = progress or Progress(enabled=False)
    t0 = time.perf_counter()
    tokenized = tokenize(cfg, progress)
    t_tok = time.perf_counter() - t0
    runs = []
    seen = set()
    for ratios in ratio_sets:
        name = label(ratios)
        if name in seen:
            continue
        seen.add(name)
        mix_cfg = with_ratios(cfg, ratios, os.path.join(root, name))
        t = time.perf_counter()
        manifest = build(mix_cfg, progress=progress, tokenized=tokenized)
        runs.append({"label": name, "ratios": {s.name: s.ratio for s in mix_cfg.sources},
                     "output": name, "total_tokens": manifest["total_tokens"],
                     "sources": {s["name"]: s["tokens"] for s in manifest["sources"]},
                     "seconds": round(time.perf_counter() - t, 3)})
    summary = {"seed": cfg.seed, "requested_tokens": cfg.total_tokens,
               "tokenize_seconds": round(t_tok, 3), "mixtures": runs}
    tmp = os.path.join(root, "sweep.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(root, "sweep.json"))
    return summary


def _targets(cfg: BuildConfig, tokenized: Tokenized) -> tuple[int, dict[str, int]]:
    """``(total, {source: target tokens})`` of a mixture, without writing it."""
    from .plan import plan_targets

    by_loss = cfg.ratio_by == "loss_tokens"
    counted = [p.loss_lengths if by_loss else p.lengths for p in tokenized.pools]
    plans = plan_targets([s.name for s in cfg.sources], [s.ratio for s in cfg.sources],
                         [s.max_repetition for s in cfg.sources],
                         [int(c.sum()) for c in counted], cfg.total_tokens)
    return sum(p.target for p in plans), {p.name: p.target for p in plans}


def sweep_zero_copy(cfg: BuildConfig, ratio_sets: Sequence[dict[str, float]], *,
                    out: str | None = None, seq_len: int = 4096,
                    progress: Progress | None = None) -> dict:
    """One ``per_source`` pool build, then OLMo-core mixture configs only (see module doc).

    The pool gives each source ``max target + seq_len + its longest document`` tokens (at
    most its cap), which covers OLMo-core's rounding to whole instances and instmix's stop
    at the document boundary closest to a target.
    """
    from .export.files import write_atomic, yaml_block
    from .export.olmo_core import tokenizer_dict
    from .manifest import load_manifest

    if cfg.ratio_by != "tokens":
        raise ConfigError(cfg.where, "ratio_by", "OLMo-core mixes by tokens: a zero-copy "
                          "sweep needs ratio_by: tokens")
    root = out or cfg.output
    os.makedirs(root, exist_ok=True)
    progress = progress or Progress(enabled=False)
    t0 = time.perf_counter()
    tokenized = tokenize(cfg, progress)
    points = []
    for ratios in ratio_sets:
        mix_cfg = with_ratios(cfg, ratios, os.path.join(root, label(ratios)))
        total, targets = _targets(mix_cfg, tokenized)
        points.append((label(ratios), mix_cfg, total, targets))
    pool_tokens = {}
    for pool, src in zip(tokenized.pools, cfg.sources):
        need = max(t[src.name] for _, _, _, t in points)
        if need > 0:
            budget = int(src.max_repetition * int(pool.lengths.sum()))
            pool_tokens[src.name] = min(budget, need + seq_len + int(pool.lengths.max()))
    pool_cfg = replace(cfg, output=os.path.join(root, "pool"), layout="per_source",
                       total_tokens=sum(pool_tokens.values()),
                       sources=tuple(replace(s, ratio=pool_tokens.get(s.name, 0))
                                     for s in cfg.sources))
    build(pool_cfg, progress=progress, tokenized=tokenized)
    pool = load_manifest(pool_cfg.output)
    from .export.facts import load_facts

    facts = load_facts(pool_cfg.output)
    files = {s.name: [pool.path(p) for p in s.files] for s in facts.used_sources}
    held = {s["name"]: s["tokens"] for s in pool.sources}
    runs = []
    for name, mix_cfg, total, targets in points:
        weights = {s.name: s.weight for s in mix_cfg.sources if s.ratio > 0}
        norm = sum(weights.values())
        sources = []
        for src, w in weights.items():
            share = float(w / norm)
            needed = int(total * share)
            sources.append({"source_name": src, "target_ratio": share, "paths": files[src],
                            "max_repetition_ratio": max(1.0, -(-needed * 10_000 // held[src])
                                                        / 10_000)})
        body = {"tokenizer": tokenizer_dict(facts), "sequence_length": seq_len,
                "dtype": facts.dtype, "work_dir": None,
                "source_mixture_config": {
                    "source_list": {"sources": sources}, "requested_tokens": total,
                    "global_batch_size": seq_len, "seed": cfg.seed,
                    "render_tables": False, "quiet": True}}
        folder = os.path.join(root, name)
        head = (f"# OLMo-core NumpyFSLDatasetConfig: instmix sweep mixture {name}\n"
                f"# over the per-source token files of {pool_cfg.output} (nothing copied).\n"
                "# Load: NumpyFSLDatasetConfig.from_yaml(path, overrides=['work_dir=...'])\n")
        write_atomic(os.path.join(folder, "olmo_core_mixture.yaml"), head + yaml_block(body))
        info = {"label": name, "ratios": {s.name: s.ratio for s in mix_cfg.sources},
                "requested_tokens": total, "targets": targets, "pool": "../pool",
                "sequence_length": seq_len}
        write_atomic(os.path.join(folder, "mixture.json"), json.dumps(info, indent=2) + "\n")
        runs.append({**info, "output": name})
    summary = {"seed": cfg.seed, "requested_tokens": cfg.total_tokens, "zero_copy": True,
               "pool": "pool", "pool_tokens": held,
               "seconds": round(time.perf_counter() - t0, 3), "mixtures": runs}
    write_atomic(os.path.join(root, "sweep.json"), json.dumps(summary, indent=2) + "\n")
    return summary
