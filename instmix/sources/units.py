"""A source's cache units: which input files are read (and tokenized) together."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from instmix.io.readers import resolve_paths

from .registry import get_kind

if TYPE_CHECKING:
    from instmix.config import SourceConfig


def source_units(src: SourceConfig, where: str, index: int) -> list[tuple[list[str], str]]:
    """Cache units of a source: ``(paths, label)`` per input file, or one for the source."""
    paths = resolve_paths(src.paths, where=where, key=f"sources[{index}].paths")
    parents = [os.path.dirname(os.path.abspath(p)) for p in paths]
    common = os.path.commonpath(parents) if len(paths) > 1 else parents[0]
    labels = [os.path.relpath(os.path.abspath(p), common) for p in paths]
    if get_kind(src.kind).per_file:
        return [([p], label) for p, label in zip(paths, labels)]
    return [(paths, src.name)]
