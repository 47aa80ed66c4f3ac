"""``instmix.DataLoader``: batches in a seeded global order, with exact resume.

A thin layer over ``torch.utils.data.DataLoader`` (public API only): each worker builds
whole batches (one vectorised gather per batch instead of ``batch_size`` collations) for
the global steps assigned to it by :mod:`instmix.serve.sharding`, and the torch loader hands them
over in step order. The loader keeps a *cursor* (the resume point after the last batch it
gave out); ``state_dict()`` saves it with the data's fingerprint, and a new loader that
loads it yields exactly the batches an uninterrupted run would have yielded next, also
with another ``num_workers``, ``world_size`` or ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset

from instmix.errors import InstmixError

from .sharding import RuntimeContext, current_worker
from .state import STATE_VERSION, check_state

_CURSOR = "_instmix_cursor"
_PACKED = "_instmix_packed"


class _BatchStream(IterableDataset):
    """Runs in each worker: the batches of this rank and worker, each tagged with its cursor."""

    def __init__(self, dataset, cursor: dict, batch_size: int, drop_last: bool):
        self.dataset, self.cursor = dataset, cursor
        self.batch_size, self.drop_last = batch_size, drop_last

    def __iter__(self):
        worker, workers = current_worker()
        ds = self.dataset
        ctx = RuntimeContext(ds.rank, ds.world_size, worker, workers)
        in_worker = torch.utils.data.get_worker_info() is not None
        for cursor, batch in ds.iter_batches(self.cursor, self.batch_size, ctx, self.drop_last):
            if in_worker:
                batch = _pack(batch)
            batch[_CURSOR] = cursor
            yield batch


def _pack(batch: dict) -> dict:
    """A worker's batch as one tensor plus views to remake (:func:`_unpack`): torch sends
    every tensor's storage through its own shared-memory file and descriptor handshake
    with the worker, so one storage per batch instead of four saves most of the hand-over
    of small batches."""
    keys = [k for k, v in batch.items() if isinstance(v, torch.Tensor)]
    ts = [batch[k] for k in keys]
    if len(ts) < 2 or any(t.dtype != ts[0].dtype or t.device != ts[0].device for t in ts):
        return batch
    storage = ts[0].untyped_storage()
    if all(t.untyped_storage().data_ptr() == storage.data_ptr() for t in ts):
        flat = torch.empty(0, dtype=ts[0].dtype, device=ts[0].device).set_(storage)
        views = [(k, t.storage_offset(), list(t.shape), list(t.stride())) for k, t in zip(keys, ts)]
    else:
        flat = torch.cat([t.reshape(-1) for t in ts])
        views, at = [], 0
        for k, t in zip(keys, ts):
            views.append((k, at, list(t.shape), list(t.contiguous().stride())))
            at += t.numel()
    out = {k: v for k, v in batch.items() if k not in keys}
    out[_PACKED] = (flat, views)
    return out


def _unpack(batch: dict) -> dict:
    flat, views = batch.pop(_PACKED)
    for k, offset, shape, stride in views:
        batch[k] = flat.as_strided(shape, stride, offset)
    return batch


class DataLoader:
    """Resumable batches of an instmix dataset (``ShardDataset`` or ``StreamingMixture``).

    ``batch_size`` is per rank. Extra keyword arguments go to the torch DataLoader
    (``pin_memory``, ``prefetch_factor``, ``persistent_workers``, ...); ``drop_last`` drops
    the last global step of an epoch when it is incomplete, so every rank gets the same
    number of full batches.
    """

    def __init__(self, dataset, batch_size: int, num_workers: int = 0, *,
                 drop_last: bool = False, **torch_dataloader_kwargs: Any):
        if batch_size < 1:
            raise InstmixError(f"batch_size must be >= 1, got {batch_size}")
        for key in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn"):
            if key in torch_dataloader_kwargs:
                raise InstmixError(f"instmix.DataLoader sets {key} itself; do not pass it")
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.kwargs = torch_dataloader_kwargs
        self._cursor = dataset.initial_cursor()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """The rest of the current epoch; the next ``iter()`` starts the next epoch."""
        stream = _BatchStream(self.dataset, dict(self._cursor), self.batch_size, self.drop_last)
        loader = torch.utils.data.DataLoader(stream, batch_size=None,
                                             num_workers=self.num_workers, **self.kwargs)
        for batch in loader:
            self._cursor = _plain(batch.pop(_CURSOR))
            yield _unpack(batch) if _PACKED in batch else batch
        nxt = self.dataset.next_epoch(self._cursor)
        if nxt is not None:
            self._cursor = nxt

    def __len__(self) -> int:
        """Batches left in the current epoch for this rank (when the dataset knows)."""
        return self.dataset.batches_left(self._cursor, self.batch_size, self.drop_last)

    @property
    def epoch(self) -> int:
        return self._cursor.get("epoch", 0)

    def state_dict(self) -> dict:
        """Small, versioned and tied to the data: ``{version, fingerprint, seed, cursor}``."""
        ds = self.dataset
        return {"version": STATE_VERSION, "fingerprint": ds.fingerprint, "seed": ds.seed,
                "cursor": dict(self._cursor)}

    def load_state_dict(self, state: dict) -> None:
        check_state(state, self.dataset.fingerprint, self.dataset.seed)
        self._cursor = dict(state["cursor"])
        if "epoch" in self._cursor:
            self.dataset.set_epoch(self._cursor["epoch"])


def _plain(value):
    """Cursors come back from workers through default_convert: undo tensors."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
