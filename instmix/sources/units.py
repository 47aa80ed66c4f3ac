"""A source's cache units: which input files are read (and tokenized) together."""

from __future__ import annotations

import os
import posixpath
from typing import TYPE_CHECKING

from instmix.io.fs import is_url
from instmix.io.readers import resolve_paths

from .registry import get_kind

if TYPE_CHECKING:
    from instmix.config import SourceConfig


def unit_labels(paths: list[str]) -> list[str]:
    """Each input's path relative to the inputs' common folder: document ids
    (``label:position``) then do not depend on where the inputs live (a local folder or an
    object-store prefix holding the same files give the same labels)."""
    keys = [p.partition("://")[2] if is_url(p) else os.path.abspath(p) for p in paths]
    parents = [posixpath.dirname(k) if is_url(p) else os.path.dirname(k)
               for p, k in zip(paths, keys)]
    common = os.path.commonpath(parents) if len(paths) > 1 else parents[0]
    return [os.path.relpath(k, common) for k in keys]


def source_units(src: SourceConfig, where: str, index: int) -> list[tuple[list[str], str]]:
    """Cache units of a source: ``(paths, label)`` per input file, or one for the source."""
    paths = resolve_paths(src.paths, where=where, key=f"sources[{index}].paths",
                          storage_options=src.storage_options)
    labels = unit_labels(paths)
    if get_kind(src.kind).per_file:
        return [([p], label) for p, label in zip(paths, labels)]
    return [(paths, src.name)]
