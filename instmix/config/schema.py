"""Build configuration: YAML (or a dict) -> validated, frozen dataclasses.

Relative paths in a config file are resolved against the file's folder, so a config
works from any working directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from instmix.errors import ConfigError
from instmix.io import fs
from instmix.sources.registry import get_kind, known_kinds

from .clean import (
    Decontaminate,
    Dedup,
    PairFilters,
    parse_decontaminate,
    parse_dedup,
    parse_filters,
)
from .validate import check_keys, choice, number, resolve_path, storage_options, string

DEFAULT_SHARD_TOKENS = 1 << 28  # 256 Mi tokens: 512 MiB as uint16, 1 GiB as uint32
TXT_UNITS = ("file", "paragraph")
BACKENDS = ("auto", "hf", "gigatoken", "tiktoken")
RANK_CACHE = "~/.cache/instmix/tokenizers"
DTYPES = ("auto", "uint16", "uint32")
LOSS_MODES = ("all", "responses", "none")
RATIO_BY = ("tokens", "loss_tokens")
LAYOUTS = ("interleaved", "per_source")


def _rank_cache(where: str, value: Any, base_dir: Path) -> str | None:
    """The rank cache folder: kept with its ``~`` (each process expands it), a relative
    path resolved against the config's folder, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(where, "tokenizer.rank_cache",
                          f"expected a folder, or null for none, got {value!r}")
    if fs.is_url(value):
        raise ConfigError(where, "tokenizer.rank_cache", f"{value}: expected a local folder")
    return value if value.startswith("~") else resolve_path(base_dir, value)


@dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer to use and how documents are delimited.

    ``path`` is a ``tokenizer.json`` file or a folder holding one (plus, optionally,
    ``tokenizer_config.json`` naming the BOS/EOS tokens). ``eos_token``/``bos_token``
    override detection; ``add_bos`` forces BOS on or off (default: on when the
    tokenizer defines one). ``rank_cache``: the folder where the fast backends keep the
    tokenizer's rank table (:mod:`instmix.tokenize.ranks`), built once per machine; ``~``
    is expanded by the process that uses it; None builds it in memory at each load.
    """

    path: str
    eos_token: str | None = None
    bos_token: str | None = None
    add_bos: bool | None = None
    backend: str = "auto"
    check_rate: float = 0.002
    rank_cache: str | None = RANK_CACHE

    @classmethod
    def parse(cls, where: str, value: Any, base_dir: Path) -> TokenizerSpec:
        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, Mapping):
            raise ConfigError(where, "tokenizer", "expected a path or a mapping with 'path'")
        check_keys(where, "tokenizer.", value, {f.name for f in fields(cls)})
        if "path" not in value:
            raise ConfigError(where, "tokenizer.path", "missing")
        path = resolve_path(base_dir, string(where, "tokenizer.path", value["path"]))
        spec = cls(
            path=path,
            eos_token=value.get("eos_token"),
            bos_token=value.get("bos_token"),
            add_bos=value.get("add_bos"),
            backend=choice(where, "tokenizer.backend", value.get("backend", "auto"), BACKENDS),
            check_rate=number(where, "tokenizer.check_rate", value.get("check_rate", 0.002),
                               minimum=0),
            rank_cache=_rank_cache(where, value.get("rank_cache", RANK_CACHE), base_dir),
        )
        if spec.check_rate > 1:
            raise ConfigError(where, "tokenizer.check_rate", "must be between 0 and 1")
        if spec.add_bos is not None and not isinstance(spec.add_bos, bool):
            raise ConfigError(where, "tokenizer.add_bos", "expected true or false")
        return spec


@dataclass(frozen=True)
class SourceConfig:
    """One named input: files, how records become text, and its share of the mixture."""

    name: str
    paths: tuple[str, ...]
    kind: str = "text"
    ratio: float = 1.0
    max_repetition: float = 1.0
    text_field: str = "text"
    question_field: str = "question"
    response_field: str = "response"
    id_field: str | None = None
    txt_unit: str = "file"
    loss: str = "all"
    options: Mapping[str, Any] = field(default_factory=dict)
    filters: PairFilters | None = None  # for sources whose documents have parts (augmented)
    # the build's storage_options, so readers of this source's URLs get them (not a format
    # option: caches and equality ignore it)
    storage_options: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def weight(self) -> Fraction:
        """The ratio as an exact fraction (so plans do not depend on float rounding)."""
        return Fraction(str(self.ratio))

    @classmethod
    def parse(cls, where: str, index: int, value: Any, base_dir: Path) -> SourceConfig:
        key = f"sources[{index}]"
        if not isinstance(value, Mapping):
            raise ConfigError(where, key, "expected a mapping")
        check_keys(where, key + ".", value, {f.name for f in fields(cls)})
        if "name" not in value:
            raise ConfigError(where, key + ".name", "missing")
        name = string(where, key + ".name", value["name"])
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(where, key + ".name",
                              f"use letters, digits, '-', '_' or '.' only; got {name!r}")
        paths = value.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if not paths or not isinstance(paths, list):
            raise ConfigError(where, key + ".paths", "expected a non-empty list of paths or globs")
        paths = tuple(resolve_path(base_dir, string(where, key + ".paths", p)) for p in paths)
        kinds = known_kinds()
        kind = choice(where, key + ".kind", value.get("kind", "text"), tuple(kinds))
        options = value.get("options", {})
        if not isinstance(options, Mapping):
            raise ConfigError(where, key + ".options", "expected a mapping")
        id_field = value.get("id_field")
        if value.get("loss") == "responses" and kind == "text":
            raise ConfigError(where, key + ".loss", "kind text has no responses to train on "
                              "(use all or none, or kind openorca/augmented)")
        filters = None
        if value.get("filters") not in (None, False):
            filters = parse_filters(where, key + ".filters", value["filters"],
                                    get_kind(kind).has_parts, kind)
        return cls(
            name=name,
            paths=paths,
            kind=kind,
            ratio=number(where, key + ".ratio", value.get("ratio", 1.0), minimum=0),
            max_repetition=number(where, key + ".max_repetition",
                                   value.get("max_repetition", 1.0), minimum=0, strict=True),
            text_field=string(where, key + ".text_field", value.get("text_field", "text")),
            question_field=string(where, key + ".question_field",
                                   value.get("question_field", "question")),
            response_field=string(where, key + ".response_field",
                                   value.get("response_field", "response")),
            id_field=None if id_field is None else string(where, key + ".id_field", id_field),
            txt_unit=choice(where, key + ".txt_unit", value.get("txt_unit", "file"), TXT_UNITS),
            loss=choice(where, key + ".loss", value.get("loss", "all"), LOSS_MODES),
            options=dict(options),
            filters=filters,
        )


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``instmix build`` needs. Build with :func:`load_config`."""

    tokenizer: TokenizerSpec
    sources: tuple[SourceConfig, ...]
    output: str
    seed: int = 0
    total_tokens: int | None = None
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    dtype: str = "auto"
    cache_dir: str | None = None
    skip_bad_records: bool = False
    ratio_by: str = "tokens"
    layout: str = "interleaved"
    batch_bytes: int = 8 << 20
    dedup: Dedup | None = None
    decontaminate: Decontaminate | None = None
    workers: int = 0  # processes that tokenize cache units; 0: every available core
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    where: str = "<dict>"

    def __post_init__(self):
        # load_config validated the file; this guards values set in code or on the CLI
        if self.seed < 0:
            raise ConfigError(self.where, "seed", f"must be >= 0, got {self.seed}")
        if self.total_tokens is not None and self.total_tokens < 1:
            raise ConfigError(self.where, "total_tokens", f"must be >= 1, got {self.total_tokens}")
        if self.shard_tokens < 1:
            raise ConfigError(self.where, "shard_tokens", f"must be >= 1, got {self.shard_tokens}")
        if self.workers < 0:
            raise ConfigError(self.where, "workers", f"must be >= 0 (0: every core), got "
                              f"{self.workers}")

    @property
    def resolved_cache_dir(self) -> str:
        """Token caches live beside the output by default, so sibling builds share them."""
        if self.cache_dir:
            return self.cache_dir
        return fs.join(fs.dirname(self.output), ".instmix-cache")

    def with_overrides(self, **changes: Any) -> BuildConfig:
        return replace(self, **changes)


_TOP_KEYS = {f.name for f in fields(BuildConfig)} - {"where"}


def read_config(source: str | os.PathLike | Mapping, base_dir: str | None = None
                ) -> tuple[Mapping, str, Path]:
    """``(data, where, base folder)`` of a YAML file path or an already-parsed mapping.

    ``where`` names the file in error messages; relative paths resolve against ``base``.
    """
    if isinstance(source, Mapping):
        data, where, base = source, "<dict>", Path(base_dir or os.getcwd())
    else:
        where = str(source)
        try:
            with open(source, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except FileNotFoundError:
            raise ConfigError(where, "file", "not found") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f"line {mark.line + 1}: " if mark is not None else ""
            raise ConfigError(where, "yaml", f"{line}{getattr(e, 'problem', e)}") from None
        base = Path(base_dir) if base_dir else Path(source).resolve().parent
    if not isinstance(data, Mapping):
        raise ConfigError(where, "top level", "expected a mapping of keys")
    return data, where, base


def parse_sources(where: str, data: Mapping, base: Path) -> tuple[SourceConfig, ...]:
    """The ``sources`` list: parsed, with unique names."""
    raw = data["sources"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(where, "sources", "expected a non-empty list")
    opts = storage_options(where, data.get("storage_options"))
    sources = tuple(replace(SourceConfig.parse(where, i, s, base), storage_options=opts)
                    for i, s in enumerate(raw))
    names = [s.name for s in sources]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise ConfigError(where, f"sources[{i}].name", f"duplicate source name {n!r}")
    return sources


def load_config(source: str | os.PathLike | Mapping, *, base_dir: str | None = None) -> BuildConfig:
    """Parse a YAML file path or an already-parsed mapping into a :class:`BuildConfig`."""
    data, where, base = read_config(source, base_dir)
    check_keys(where, "", data, _TOP_KEYS)
    for required in ("tokenizer", "sources", "output"):
        if required not in data:
            raise ConfigError(where, required, "missing")
    sources = parse_sources(where, data, base)
    if not any(s.ratio > 0 for s in sources):
        raise ConfigError(where, "sources", "at least one source needs a ratio > 0")
    total = data.get("total_tokens")
    if total is not None:
        total = number(where, "total_tokens", total, minimum=1, integer=True)
    cache_dir = data.get("cache_dir")
    skip = data.get("skip_bad_records", False)
    if not isinstance(skip, bool):
        raise ConfigError(where, "skip_bad_records", "expected true or false")
    return BuildConfig(
        tokenizer=TokenizerSpec.parse(where, data["tokenizer"], base),
        sources=sources,
        output=resolve_path(base, string(where, "output", data["output"])),
        seed=number(where, "seed", data.get("seed", 0), minimum=0, integer=True),
        total_tokens=total,
        shard_tokens=number(where, "shard_tokens", data.get("shard_tokens", DEFAULT_SHARD_TOKENS),
                             minimum=1, integer=True),
        dtype=choice(where, "dtype", data.get("dtype", "auto"), DTYPES),
        cache_dir=None if cache_dir is None else resolve_path(base, string(where, "cache_dir",
                                                                          cache_dir)),
        skip_bad_records=skip,
        ratio_by=choice(where, "ratio_by", data.get("ratio_by", "tokens"), RATIO_BY),
        layout=choice(where, "layout", data.get("layout", "interleaved"), LAYOUTS),
        batch_bytes=number(where, "batch_bytes", data.get("batch_bytes", 8 << 20), minimum=1,
                            integer=True),
        dedup=parse_dedup(where, data.get("dedup")),
        decontaminate=parse_decontaminate(where, data.get("decontaminate"), base),
        workers=number(where, "workers", data.get("workers", 0), minimum=0, integer=True),
        storage_options=storage_options(where, data.get("storage_options")),
        where=where,
    )
