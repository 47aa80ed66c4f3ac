"""Progress bars (tqdm on stderr), off when disabled or when stderr is not a terminal."""

from __future__ import annotations

import sys

from tqdm import tqdm


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    """Factory for bars; ``enabled=None`` shows them only on an interactive terminal."""

    def __init__(self, enabled: bool | None = None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = enabled

    def bar(self, desc: str, *, unit: str = "it", total: int | None = None):
        if not self.enabled:
            return _NullBar()

        return tqdm(desc=desc, unit=unit, total=total, unit_scale=True, dynamic_ncols=True,
                    file=sys.stderr, leave=False)
