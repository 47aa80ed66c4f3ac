"""Error types. Every message is one line that names where the problem is."""

from __future__ import annotations


class InstmixError(Exception):
    """Base class: a problem the user can fix; the CLI prints it as one line."""


class ConfigError(InstmixError):
    """A config value is missing or invalid.

    ``where`` is the config file (or ``<dict>``) and ``key`` a dotted path such as
    ``sources[1].kind``.
    """

    def __init__(self, where: str, key: str, message: str):
        self.where, self.key = where, key
        super().__init__(f"{where}: {key}: {message}")


class InputError(InstmixError):
    """A data record cannot be read: names the file, the line (1-based) and the field."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field = path, line, field
        loc = f"{path}:{line}" if line is not None else str(path)
        what = f" field '{field}':" if field else ""
        super().__init__(f"{loc}:{what} {message}")


class PlanError(InstmixError):
    """The requested ratios cannot be met within the repetition caps."""


class VerifyError(InstmixError):
    """A build output failed a check; the message names the first problem."""
