"""Ratio sweeps: many mixtures of the same sources, tokenized once.

Every mixture of a sweep reuses the token caches of the first (one tokenization per input
file, whatever the number of mixtures), so an extra mixture costs only planning and
writing. With one seed, mixtures differ only where the ratios differ: the documents a
source contributes for a smaller share are a prefix of those it contributes for a larger
one (see :mod:`instmix.mix.plan`), so ablations compare like with like.

Ratio sets are written ``name=value,name=value``; :func:`expand` turns per-source value
lists (``augmented=0,0.5,1``) into their product, the other sources keeping the config's
ratios.

The zero-copy variant (:func:`build_pool` here, the OLMo-core configs in
:mod:`instmix.export.zero_copy`) writes tokens once: a ``per_source`` build
(``pool/``) holding, per source, its largest share over the sweep plus a margin, and for
each ratio set only an OLMo-core ``SourceMixtureDatasetConfig`` over the pool's files.
OLMo-core reads the first instances of each file, and the pool's files are in instmix's
draw order, so every mixture gets the prefix of each source that instmix would draw.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from instmix.config import BuildConfig
from instmix.errors import ConfigError
from instmix.io import fs
from instmix.io.atomic import write_atomic
from instmix.io.progress import Progress
from instmix.mix.plan import plan_targets

from .executor import Executor
from .pipeline import Tokenized, build, mixture_pools, tokenize


def _number(where: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(where, "ratios", f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(where, "ratios", f"{text!r}: expected a finite number")
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
    """Folder name of a mixture: ``augmented=0.25,orca=1``. Values are written with
    ``repr`` (the shortest text that reads back as the same number), so two different
    ratios never share a folder: 0.1234567 and 0.1234568 stay apart."""
    return ",".join(f"{k}={v!r}" for k, v in ratios.items())


def unique_labels(cfg: BuildConfig, ratio_sets: Sequence[dict[str, float]]) -> list[str]:
    """The folder name of every ratio set; raises on a set given twice (``a=0.5`` and
    ``a=.5`` are one set), since its second build would overwrite the first."""
    if not ratio_sets:
        raise ConfigError(cfg.where, "ratios", "no ratio sets to build")
    names: list[str] = []
    for ratios in ratio_sets:
        name = label(ratios)
        if name in names:
            raise ConfigError(cfg.where, "ratios", f"the ratio set {name} is given twice "
                              "(as --ratios values or --set); give each set once")
        names.append(name)
    return names


def check_seq_len(cfg: BuildConfig, seq_len) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ConfigError(cfg.where, "--seq-len", f"expected a whole number >= 1 (the "
                          f"OLMo-core sequence length), got {seq_len!r}")
    return seq_len


def with_ratios(cfg: BuildConfig, ratios: dict[str, float], output: str) -> BuildConfig:
    sources = tuple(replace(s, ratio=ratios.get(s.name, s.ratio)) for s in cfg.sources)
    if not any(s.ratio > 0 for s in sources):
        raise ConfigError(cfg.where, "ratios", f"{label(ratios)}: every ratio is 0")
    return replace(cfg, sources=sources, output=output)


def sweep(cfg: BuildConfig, ratio_sets: Sequence[dict[str, float]], *,
          out: str | None = None, progress: Progress | None = None,
          executor: Executor | None = None) -> dict:
    """Build one mixture per ratio set under ``out`` (default: the config's output; a
    folder or an object-store prefix). ``executor`` runs the tasks (e.g. on Ray).

    Writes ``sweep.json`` (labels, ratios, folders, tokens and seconds per mixture) and
    returns it.
    """
    names = unique_labels(cfg, ratio_sets)
    root = out or cfg.output
    if not fs.is_url(root):
        os.makedirs(root, exist_ok=True)
    progress = progress or Progress(enabled=False)
    t0 = time.perf_counter()
    tokenized = tokenize(cfg, progress, executor)
    t_tok = time.perf_counter() - t0
    runs = []
    for name, ratios in zip(names, ratio_sets):
        mix_cfg = with_ratios(cfg, ratios, fs.join(root, name))
        t = time.perf_counter()
        manifest = build(mix_cfg, progress=progress, tokenized=tokenized, executor=executor)
        runs.append({"label": name, "ratios": {s.name: s.ratio for s in mix_cfg.sources},
                     "output": name, "total_tokens": manifest["total_tokens"],
                     "sources": {s["name"]: s["tokens"] for s in manifest["sources"]},
                     "seconds": round(time.perf_counter() - t, 3)})
    summary = {"seed": cfg.seed, "requested_tokens": cfg.total_tokens,
               "tokenize_seconds": round(t_tok, 3), "mixtures": runs}
    data = (json.dumps(summary, indent=2) + "\n").encode()
    if fs.is_url(root):
        fs.put_bytes(fs.join(root, "sweep.json"), data, cfg.storage_options)
    else:
        write_atomic(os.path.join(root, "sweep.json"), data)
    return summary


def _targets(cfg: BuildConfig, tokenized: Tokenized) -> tuple[int, dict[str, int]]:
    """``(total, {source: target tokens})`` of a mixture, without writing it."""
    by_loss = cfg.ratio_by == "loss_tokens"
    pools, _ = mixture_pools(cfg, tokenized)  # what the clean stage keeps, if configured
    counted = [p.loss_lengths if by_loss else p.lengths for p in pools]
    plans = plan_targets([s.name for s in cfg.sources], [s.ratio for s in cfg.sources],
                         [s.max_repetition for s in cfg.sources],
                         [int(c.sum()) for c in counted], cfg.total_tokens)
    return sum(p.target for p in plans), {p.name: p.target for p in plans}


@dataclass
class Pool:
    """A zero-copy sweep's pool build and the mixtures it serves."""

    output: str
    seconds_start: float
    points: list[tuple[str, BuildConfig, int, dict[str, int]]]  # (label, config, total, targets)


def build_pool(cfg: BuildConfig, ratio_sets: Sequence[dict[str, float]], *, root: str,
               seq_len: int, progress: Progress | None = None) -> Pool:
    """One ``per_source`` build under ``root/pool`` that every ratio set can read a prefix of.

    The pool gives each source ``max target + seq_len + its longest document`` tokens (at
    most its cap), which covers OLMo-core's rounding to whole instances and instmix's stop
    at the document boundary closest to a target.
    """
    check_seq_len(cfg, seq_len)
    if cfg.ratio_by != "tokens":
        raise ConfigError(cfg.where, "ratio_by", "OLMo-core mixes by tokens: a zero-copy "
                          "sweep needs ratio_by: tokens")
    names = unique_labels(cfg, ratio_sets)
    os.makedirs(root, exist_ok=True)
    progress = progress or Progress(enabled=False)
    t0 = time.perf_counter()
    tokenized = tokenize(cfg, progress)
    points = []
    for name, ratios in zip(names, ratio_sets):
        mix_cfg = with_ratios(cfg, ratios, os.path.join(root, name))
        total, targets = _targets(mix_cfg, tokenized)
        points.append((name, mix_cfg, total, targets))
    pool_tokens = {}
    for pool, src in zip(mixture_pools(cfg, tokenized)[0], cfg.sources):
        need = max(t[src.name] for _, _, _, t in points)
        if need > 0:
            budget = int(src.max_repetition * int(pool.lengths.sum()))
            pool_tokens[src.name] = min(budget, need + seq_len + int(pool.lengths.max()))
    pool_cfg = replace(cfg, output=os.path.join(root, "pool"), layout="per_source",
                       total_tokens=sum(pool_tokens.values()),
                       sources=tuple(replace(s, ratio=pool_tokens.get(s.name, 0))
                                     for s in cfg.sources))
    build(pool_cfg, progress=progress, tokenized=tokenized)
    return Pool(pool_cfg.output, t0, points)
