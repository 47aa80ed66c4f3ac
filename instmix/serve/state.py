"""The cursor-dataset protocol :class:`instmix.DataLoader` relies on, and the per-worker
resume state both datasets share.

A *cursor dataset* serves whole batches of one rank and worker from a small cursor
(``{"epoch", "consumed", ...}``), so the loader owns global order, rank and worker
slicing and resume, while the dataset only maps positions to sequences. Both
:class:`~instmix.serve.shard_dataset.ShardDataset` and
:class:`~instmix.serve.streaming.StreamingMixture` implement it.

For plain loaders (torch's DataLoader, torchdata's ``StatefulDataLoader``), items are
counted per worker and :meth:`CursorDataset.state_dict` saves that count.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset

from instmix.errors import InstmixError

from .sharding import RuntimeContext

IGNORE = -100  # the label of tokens that carry no loss (torch's cross-entropy default)
STATE_VERSION = 1
# a split-steps dataset's batch part: its rows' global positions (the loader joins the
# workers' parts by it and removes it); not ``index``, which a wrapped row repeats
POSITIONS = "_instmix_positions"


class CursorDataset(IterableDataset):
    """Base of instmix's datasets. Subclasses set ``fingerprint``, ``seed`` and ``epoch``
    and implement the four cursor methods; ``__iter__`` counts ``_yielded`` and skips
    ``_skip`` items after :meth:`load_state_dict`."""

    fingerprint: str
    seed: int
    epoch: int
    _skip: int = 0
    _yielded: int = 0

    def iter_batches(self, cursor: dict, batch_size: int, ctx: RuntimeContext, tail: str
                     ) -> Iterator[tuple[dict, dict[str, torch.Tensor]]]:
        """Batches of ``ctx``'s rank and worker from ``cursor``, each with the cursor after
        its global step; the epoch ends at a global step boundary (``tail``: see
        :func:`~instmix.serve.sharding.epoch_end`). A dataset with ``split_steps`` serves
        each worker's part of every step, with its rows' global positions under
        :data:`POSITIONS`."""
        raise NotImplementedError

    def batches_left(self, cursor: dict, batch_size: int, ctx: RuntimeContext, tail: str
                     ) -> int:
        """Batches left in the epoch for ``ctx``'s rank (the same on every rank)."""
        raise NotImplementedError

    def check_cursor(self, cursor: dict) -> None:
        """Refuse a cursor this dataset cannot have produced (InstmixError naming the key)."""
        raise NotImplementedError

    def initial_cursor(self) -> dict:
        raise NotImplementedError

    def next_epoch(self, cursor: dict) -> dict:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "fingerprint": self.fingerprint, "seed": self.seed,
                "epoch": self.epoch, "yielded": self._yielded}

    def load_state_dict(self, state: dict) -> None:
        check_state(state, self.fingerprint, self.seed)
        self.epoch = count(state, "epoch")
        self._skip = self._yielded = count(state, "yielded")


def count(d: dict, key: str, where: str = "loader state") -> int:
    """``d[key]`` when it is an integer >= 0 (bools refused), else an InstmixError naming
    the key."""
    value = d.get(key) if isinstance(d, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InstmixError(f"{where}: {key}: {value!r} is not an integer >= 0; load a state "
                           "saved by this loader, unedited")
    return value


def check_state(state: dict, fingerprint: str, seed: int) -> None:
    """Refuse a state saved for other data, another seed or another format version."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise InstmixError(f"loader state version {state.get('version') if isinstance(state, dict) else state!r} "
                           f"is not {STATE_VERSION}")
    if state.get("fingerprint") != fingerprint:
        raise InstmixError(f"loader state was saved for other data (fingerprint "
                           f"{state.get('fingerprint')}, this data is {fingerprint}): same "
                           "builds, seq_len and drop_last are needed to resume")
    if state.get("seed") != seed:
        raise InstmixError(f"loader state was saved with seed {state.get('seed')}, this dataset "
                           f"has seed {seed}")

