"""instmix: Instruction Pre-Training data, mixed by tokens and served to trainers."""

import importlib
import os

from .builder.pipeline import build as build_mixture
from .config import BuildConfig, SourceConfig, TokenizerSpec, load_config
from .errors import ConfigError, InputError, InstmixError, PlanError, VerifyError

__version__ = "0.1.0"

__all__ = [
    "BuildConfig", "ConfigError", "DataLoader", "InputError", "InstmixError", "PlanError",
    "ShardDataset", "SourceConfig", "StreamingMixture", "TokenizerSpec", "VerifyError", "build",
    "load_config",
]

_LAZY = {  # torch is imported only when a dataset is asked for
    "ShardDataset": "instmix.serve.shard_dataset",
    "DataLoader": "instmix.serve.loader",
    "StreamingMixture": "instmix.serve.streaming",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'instmix' has no attribute {name!r}")


def build(config, *, out=None, progress=None, executor=None, stats=None):
    """Build the mixture described by ``config`` (a YAML path, mapping or BuildConfig).

    ``executor`` (:func:`instmix.builder.executor.make_executor`, e.g. Ray) runs the
    tokenizing and shard tasks; ``stats`` receives ``storage_retries``."""
    cfg = config if isinstance(config, BuildConfig) else load_config(config)
    if out is not None:
        cfg = cfg.with_overrides(output=out if "://" in str(out) else os.path.abspath(out))
    return build_mixture(cfg, progress=progress, executor=executor, stats=stats)
