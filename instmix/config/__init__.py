"""Configuration: frozen dataclass schemas, the validators they share, and YAML loading."""

from .schema import (
    BuildConfig,
    SourceConfig,
    TokenizerSpec,
    load_config,
    parse_sources,
    read_config,
)

__all__ = ["BuildConfig", "SourceConfig", "TokenizerSpec", "load_config", "parse_sources",
           "read_config"]
