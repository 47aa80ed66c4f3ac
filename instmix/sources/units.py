"""A source's cache units: which input files are read (and tokenized) together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from instmix.errors import ConfigError
from instmix.io.readers import resolve_inputs

from .registry import get_kind

if TYPE_CHECKING:
    from instmix.config import SourceConfig


def source_units(src: SourceConfig, where: str, index: int, *, groups: bool = False
                 ) -> list[tuple[list[str], str]]:
    """Cache units of a source: ``(paths, label)`` per input file, or one for the source;
    with ``groups``, one per group of files its kind reads apart (:meth:`Kind.groups`,
    such as an ``augmented`` source's blocks), labelled by the source.

    A file's label is its path relative to its own pattern's fixed base
    (:func:`instmix.io.paths.resolve_inputs`), never to the other files of the source; the
    same files under a local folder or an object-store prefix get the same labels.
    """
    inputs = resolve_inputs(src.paths, where=where, key=f"sources[{index}].paths",
                            storage_options=src.storage_options)
    if get_kind(src.kind).per_file:
        seen: dict[str, str] = {}
        for p, label in inputs:
            if label in seen and src.id_field is None:
                raise ConfigError(where, f"sources[{index}].paths", f"{seen[label]} and {p} "
                                  f"would share document ids {label}:N (each is named relative "
                                  "to its pattern's folder); match both with one pattern such "
                                  "as 'data/**/*.jsonl', or set id_field")
            seen[label] = p
        return [([p], label) for p, label in inputs]
    paths = [p for p, _ in inputs]
    if groups:
        return [(list(g), src.name) for g in get_kind(src.kind).groups(paths)]
    return [(paths, src.name)]
