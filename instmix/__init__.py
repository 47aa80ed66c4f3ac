"""instmix: Instruction Pre-Training data, mixed by tokens and served to trainers."""

from .config import BuildConfig, SourceConfig, TokenizerSpec, load_config
from .errors import ConfigError, InputError, InstmixError, PlanError, VerifyError

__version__ = "0.1.0"

__all__ = [
    "BuildConfig", "ConfigError", "InputError", "InstmixError", "PlanError", "SourceConfig",
    "TokenizerSpec", "VerifyError", "build", "load_config",
]


def build(config, *, out=None, progress=None):
    """Build the mixture described by ``config`` (a YAML path, mapping or BuildConfig)."""
    from .builder import build as _build

    cfg = config if isinstance(config, BuildConfig) else load_config(config)
    if out is not None:
        import os

        cfg = cfg.with_overrides(output=os.path.abspath(out))
    return _build(cfg, progress=progress)
