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



def resolve_path(base: Path, path: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(str(base / path))
