"""Config schema of the clean stage: ``dedup``, ``decontaminate`` and per-source ``filters``.

```yaml
dedup:
  exact: true               # identical text after normalisation (default true)
  near: {threshold: 0.8}    # estimated Jaccard of word 5-grams >= threshold (default off)
decontaminate:
  paths: ["evals/*.jsonl"]  # every string field of every record is eval text
  ngram: 13
sources:
  - name: augmented
    kind: augmented
    filters: true           # every pair filter with its default, or a mapping of them
```

The defaults and their sources are listed in :mod:`instmix.clean.filters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instmix.errors import ConfigError
from instmix.io.readers import resolve_paths

from .validate import check_keys, number, resolve_path, string


@dataclass(frozen=True)
class NearDedup:
    """MinHash LSH settings: ``threshold`` on the estimated Jaccard of word ``ngram``-gram
    sets, ``num_perm`` permutations (datasketch's default)."""

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5

    def __post_init__(self):  # load_config validated the file; this guards code
        if not 0 < self.threshold <= 1:
            raise ConfigError("config", "dedup.near.threshold", f"must be in (0, 1], got "
                              f"{self.threshold}")


@dataclass(frozen=True)
class Dedup:
    exact: bool = True
    near: NearDedup | None = None


@dataclass(frozen=True)
class Decontaminate:
    paths: tuple[str, ...]   # resolved eval files
    ngram: int = 13


@dataclass(frozen=True)
class PairFilters:
    """Filters for a source's synthesized pairs; ``None`` turns one off."""

    grounded: float | None = 0.2
    question_words: tuple[int, int | None] | None = (4, 150)
    answer_words: tuple[int, int | None] | None = (1, None)
    repeated_ngrams: bool = True
    duplicate_questions: float | None = 0.7

    def key(self) -> dict:
        return {"grounded": self.grounded, "question_words": self.question_words,
                "answer_words": self.answer_words, "repeated_ngrams": self.repeated_ngrams,
                "duplicate_questions": self.duplicate_questions}


def _flag(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, key, f"expected true or false, got {value!r}")
    return value


def _share(where: str, key: str, value: Any) -> float:
    value = number(where, key, value, minimum=0)
    if value > 1:
        raise ConfigError(where, key, f"must be between 0 and 1, got {value!r}")
    return value


def parse_dedup(where: str, value: Any) -> Dedup | None:
    if value is None or value is False:
        return None
    if value is True:
        return Dedup()
    if not isinstance(value, Mapping):
        raise ConfigError(where, "dedup", "expected a mapping such as {exact: true, near: "
                          "{threshold: 0.8}}")
    check_keys(where, "dedup.", value, {"exact", "near"})
    exact = _flag(where, "dedup.exact", value.get("exact", True))
    near = value.get("near")
    if near is None or near is False:
        near_cfg = None
    else:
        if near is True:
            near = {}
        if not isinstance(near, Mapping):
            raise ConfigError(where, "dedup.near", "expected a mapping such as {threshold: 0.8}")
        check_keys(where, "dedup.near.", near, {"threshold", "num_perm", "ngram"})
        threshold = number(where, "dedup.near.threshold", near.get("threshold", 0.8),
                           minimum=0, strict=True)
        if threshold > 1:
            raise ConfigError(where, "dedup.near.threshold", f"must be <= 1, got {threshold!r}")
        near_cfg = NearDedup(threshold,
                             number(where, "dedup.near.num_perm", near.get("num_perm", 128),
                                    minimum=2, integer=True),
                             number(where, "dedup.near.ngram", near.get("ngram", 5), minimum=1,
                                    integer=True))
    if not exact and near_cfg is None:
        return None
    return Dedup(exact, near_cfg)


def parse_decontaminate(where: str, value: Any, base: Path) -> Decontaminate | None:
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(where, "decontaminate", "expected a mapping such as {paths: "
                          "[\"evals/*.jsonl\"], ngram: 13}")
    check_keys(where, "decontaminate.", value, {"paths", "ngram"})
    paths = value.get("paths")
    if isinstance(paths, str):
        paths = [paths]
    if not paths or not isinstance(paths, list):
        raise ConfigError(where, "decontaminate.paths", "expected a non-empty list of eval "
                          "files or globs")
    patterns = [resolve_path(base, string(where, "decontaminate.paths", p)) for p in paths]
    files = resolve_paths(patterns, where=where, key="decontaminate.paths")
    ngram = number(where, "decontaminate.ngram", value.get("ngram", 13), minimum=1,
                   integer=True)
    return Decontaminate(tuple(files), ngram)


def _bounds(where: str, key: str, value: Any) -> tuple[int, int | None] | None:
    if value is False or value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(where, key, f"expected [min, max] words (max may be null), got "
                          f"{value!r}")
    lo = number(where, key, value[0], minimum=0, integer=True)
    hi = None if value[1] is None else number(where, key, value[1], minimum=lo, integer=True)
    return lo, hi


def parse_filters(where: str, key: str, value: Any, has_parts: bool, kind: str
                  ) -> PairFilters | None:
    if value is None or value is False:
        return None
    if not has_parts:
        raise ConfigError(where, key, f"kind {kind} has no synthesized pairs to filter "
                          "(filters apply to kind augmented)")
    if value is True:
        return PairFilters()
    if not isinstance(value, Mapping):
        raise ConfigError(where, key, "expected true or a mapping of filters")
    default = PairFilters()
    check_keys(where, key + ".", value, set(default.key()))

    def share(name):
        v = value.get(name, getattr(default, name))
        return None if v is False or v is None else _share(where, f"{key}.{name}", v)

    def bounds(name):
        if name not in value:
            return getattr(default, name)
        return _bounds(where, f"{key}.{name}", value[name])

    return PairFilters(
        grounded=share("grounded"),
        question_words=bounds("question_words"),
        answer_words=bounds("answer_words"),
        repeated_ngrams=_flag(where, f"{key}.repeated_ngrams",
                              value.get("repeated_ngrams", default.repeated_ngrams)),
        duplicate_questions=share("duplicate_questions"),
    )
