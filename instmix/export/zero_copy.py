"""Zero-copy sweeps for OLMo-core: one pool build, and per ratio set only a
``SourceMixtureDatasetConfig`` over the pool's per-source files (see
:mod:`instmix.builder.sweep`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

from instmix.builder.sweep import build_pool
from instmix.config import BuildConfig
from instmix.format.manifest import load_manifest
from instmix.io.atomic import write_atomic
from instmix.io.progress import Progress

from .facts import load_facts
from .files import yaml_block
from .olmo_core import tokenizer_dict


def sweep_zero_copy(cfg: BuildConfig, ratio_sets: Sequence[dict[str, float]], *,
                    out: str | None = None, seq_len: int = 4096,
                    progress: Progress | None = None) -> dict:
    """One ``per_source`` pool build, then OLMo-core mixture configs only; returns and
    writes ``sweep.json``."""
    root = out or cfg.output
    built = build_pool(cfg, ratio_sets, root=root, seq_len=seq_len, progress=progress)
    pool = load_manifest(built.output)
    facts = load_facts(built.output)
    files = {s.name: [pool.path(p) for p in s.files] for s in facts.used_sources}
    held = {s["name"]: s["tokens"] for s in pool.sources}
    runs = []
    for name, mix_cfg, total, targets in built.points:
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
                f"# over the per-source token files of {built.output} (nothing copied).\n"
                "# Load: NumpyFSLDatasetConfig.from_yaml(path, overrides=['work_dir=...'])\n")
        write_atomic(os.path.join(folder, "olmo_core_mixture.yaml"), head + yaml_block(body))
        info = {"label": name, "ratios": {s.name: s.ratio for s in mix_cfg.sources},
                "requested_tokens": total, "targets": targets, "pool": "../pool",
                "sequence_length": seq_len}
        write_atomic(os.path.join(folder, "mixture.json"), json.dumps(info, indent=2) + "\n")
        runs.append({**info, "output": name})
    summary = {"seed": cfg.seed, "requested_tokens": cfg.total_tokens, "zero_copy": True,
               "pool": "pool", "pool_tokens": held,
               "seconds": round(time.perf_counter() - built.seconds_start, 3), "mixtures": runs}
    write_atomic(os.path.join(root, "sweep.json"), json.dumps(summary, indent=2) + "\n")
    return summary
