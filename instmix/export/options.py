"""Validated export settings and the result every exporter returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from instmix.errors import ConfigError


def positive_int(where: str, key: str, value, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(where, key, f"expected a whole number >= 1, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """Settings every exporter takes.

    ``seq_len``: the trainer's sequence length (OLMo ``model.max_sequence_length``, OLMo-core
    ``sequence_length``, LLaMA-Factory ``cutoff_len``). ``data_root``: where the trainer will
    find the build folder (a path or URL prefix); default: its absolute local path.
    """

    seq_len: int
    data_root: str | None = None
    where: str = "export"

    def __post_init__(self):
        positive_int(self.where, "seq_len", self.seq_len)
        if self.data_root is not None and (not isinstance(self.data_root, str)
                                           or not self.data_root):
            raise ConfigError(self.where, "data_root", "expected a non-empty path or URL prefix")


@dataclass
class ExportResult:
    """What an export wrote (``files``: paths), what it printed, and its report."""

    out: str
    files: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
