"""Ratio sweeps: many mixtures of the same sources, tokenized once.

Every mixture of a sweep reuses the token caches of the first (one tokenization per input
file, whatever the number of mixtures), so an extra mixture costs only planning and
writing. With one seed, mixtures differ only where the ratios differ: the documents a
source contributes for a smaller share are a prefix of those it contributes for a larger
one (see :mod:`instmix.plan`), so ablations compare like with like.

Ratio sets are written ``name=value,name=value``; :func:`expand` turns per-source value
lists (``augmented=0,0.5,1``) into their product, the other sources keeping the config's
ratios.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace

from .builder import build, tokenize
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
