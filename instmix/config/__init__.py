"""Configuration: frozen dataclass schemas, the validators they share, and YAML loading."""

from .clean import Decontaminate, Dedup, NearDedup, PairFilters
from .schema import (
    BuildConfig,
    SourceConfig,
    TokenizerSpec,
    load_config,
    parse_sources,
    read_config,
)

__all__ = ["BuildConfig", "Decontaminate", "Dedup", "NearDedup", "PairFilters", "SourceConfig", "TokenizerSpec", "load_config", "parse_sources",
           "read_config"]
