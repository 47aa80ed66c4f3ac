"""Validators shared by every config schema: each raises a ConfigError naming the file
and the key, so a bad value becomes one line of output."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from instmix.errors import ConfigError
from instmix.io.fs import is_url


def check_keys(where: str, prefix: str, data: Mapping, allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(where, f"{prefix}{key}", f"unknown key{hint}")


def number(where: str, key: str, value: Any, *, minimum: float | None = None,
            strict: bool = False, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(where, key, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(where, key, f"expected a finite number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ConfigError(where, key, f"expected a whole number, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        op = ">" if strict else ">="
        raise ConfigError(where, key, f"must be {op} {minimum}, got {value!r}")
    return int(value) if integer else value


def string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(where, key, f"expected a non-empty string, got {value!r}")
    return value


def choice(where: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(where, key, f"expected one of {', '.join(choices)}; got {value!r}")
    return value



def storage_options(where: str, value: Any) -> dict[str, dict[str, Any]]:
    """``storage_options``: ``{protocol: {option: value}}``, passed to that protocol's fsspec
    filesystem (e.g. ``s3: {endpoint_url: ..., anon: false}``)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(where, "storage_options", "expected a mapping of protocol -> options "
                          "(e.g. s3: {endpoint_url: 'http://...'})")
    out = {}
    for proto, opts in value.items():
        if not isinstance(proto, str) or not proto.isidentifier() or "://" in proto:
            raise ConfigError(where, "storage_options", f"{proto!r} is not a protocol name "
                              "(use s3, gs, ...)")
        if not isinstance(opts, Mapping) or not all(isinstance(k, str) for k in opts):
            raise ConfigError(where, f"storage_options.{proto}", "expected a mapping of "
                              "option names to values")
        out[proto] = dict(opts)
    return out


def resolve_path(base: Path, path: str) -> str:
    """Relative local paths resolve against ``base``; URLs (``s3://...``) stay as given."""
    if is_url(path):
        return path
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(str(base / path))
