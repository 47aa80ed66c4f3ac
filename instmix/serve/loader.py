"""``instmix.DataLoader``: batches in a seeded global order, with exact resume.

A thin layer over ``torch.utils.data.DataLoader`` (public API only): each worker builds
whole batches (one vectorised gather per batch instead of ``batch_size`` collations) for
the global steps assigned to it by :mod:`instmix.serve.sharding`, and the torch loader hands them
over in step order. The loader keeps a *cursor* (the resume point after the last batch it
gave out); ``state_dict()`` saves it with the data's fingerprint, and a new loader that
loads it yields exactly the batches an uninterrupted run would have yielded next, also
with another ``num_workers``, ``world_size`` or ``batch_size``.

Every rank gets the same number of batches each epoch: the epoch ends at a global step
boundary (``tail``: ``"drop"`` leaves out the sequences that do not fill a last global
step, ``"wrap"`` fills it from the start of the epoch), and ``len()`` is that number.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset

from instmix.errors import InstmixError

from .handover import Handover, as_tensors, cursor_of, steps_per_item
from .sharding import RuntimeContext, check_tail, current_worker, data_parallel
from .state import POSITIONS, STATE_VERSION, check_state


class _BatchStream(IterableDataset):
    """Runs in each worker: the batches of this rank and worker with their cursors, handed
    over ``group`` steps at a time (one step at a time in the main process)."""

    def __init__(self, dataset, cursor: dict, batch_size: int, tail: str, rank: int,
                 world_size: int, group: int):
        self.dataset, self.cursor = dataset, cursor
        self.batch_size, self.tail = batch_size, tail
        self.rank, self.world_size, self.group = rank, world_size, group

    def __iter__(self):
        worker, workers = current_worker()
        ctx = RuntimeContext(self.rank, self.world_size, worker, workers)
        group = self.group if torch.utils.data.get_worker_info() is not None else 1
        steps = []
        for step in self.dataset.iter_batches(self.cursor, self.batch_size, ctx, self.tail):
            steps.append(step)
            if len(steps) == group:
                yield Handover(steps)
                steps = []
        if steps:
            yield Handover(steps)


class DataLoader:
    """Resumable batches of an instmix dataset (``ShardDataset`` or ``StreamingMixture``).

    ``batch_size`` is per rank. ``tail`` (default: the dataset's, ``"drop"``) says what
    happens to the sequences that do not fill a last global step of ``world_size x
    batch_size``: dropped, or ``"wrap"``: the step is completed from the start of the
    epoch. ``rank``/``world_size`` (the data-parallel ones) default to the dataset's;
    ``device_mesh``/``dp_dim`` take them from a ``DeviceMesh``'s data-parallel dimension.
    Extra keyword arguments go to the torch DataLoader (``pin_memory``,
    ``prefetch_factor``, ``persistent_workers``, ...).
    """

    def __init__(self, dataset, batch_size: int, num_workers: int = 0, *,
                 tail: str | None = None, rank: int | None = None,
                 world_size: int | None = None, device_mesh=None, dp_dim: str = "dp",
                 **torch_dataloader_kwargs: Any):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InstmixError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for key in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn"):
            if key in torch_dataloader_kwargs:
                raise InstmixError(f"instmix.DataLoader sets {key} itself; do not pass it")
        if "drop_last" in torch_dataloader_kwargs:
            raise InstmixError("drop_last: instmix.DataLoader always ends an epoch at a whole "
                               "global step; pass tail='drop' (the default) or tail='wrap'")
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.tail = check_tail(dataset.tail if tail is None else tail)
        if rank is None and world_size is None and device_mesh is None:
            self.rank, self.world_size = dataset.rank, dataset.world_size
        else:
            self.rank, self.world_size = data_parallel(rank, world_size, device_mesh, dp_dim)
        RuntimeContext(self.rank, self.world_size)  # validates
        self.kwargs = torch_dataloader_kwargs
        if device_mesh is None and rank is None and world_size is None and \
                getattr(dataset, "mesh", None) is not None:
            device_mesh, dp_dim = dataset.mesh  # the dataset's data-parallel group
        self._mesh, self._dp_dim = device_mesh, dp_dim
        self._cursor = dataset.initial_cursor()

    @property
    def _cursor(self) -> dict:
        """The resume point after the last batch given out."""
        if self._cursor_parts is not None:
            self._cursor_value = _join_cursors([cursor_of(c) for c in self._cursor_parts])
            self._cursor_parts = None
        return self._cursor_value

    @_cursor.setter
    def _cursor(self, cursor: dict) -> None:
        self._cursor_value, self._cursor_parts = cursor, None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """The rest of the current epoch; the next ``iter()`` starts the next epoch."""
        split = getattr(self.dataset, "split_steps", False)
        group = steps_per_item(self.batch_size, getattr(self.dataset, "seq_len", 1)) \
            if split else 1  # whole steps go to workers in turn: one per item keeps order
        stream = _BatchStream(self.dataset, dict(self._cursor), self.batch_size, self.tail,
                              self.rank, self.world_size, group)
        loader = torch.utils.data.DataLoader(stream, batch_size=None,
                                             num_workers=self.num_workers, **self.kwargs)
        parts = max(self.num_workers, 1) if split else 1
        got: list[list] = []
        for item in loader:
            got.append(item.steps)
            if len(got) < parts:
                continue
            for step in zip(*got, strict=True):  # each worker's part of one step
                if parts > 1:
                    batch = _join_parts([b for _, b in step])
                else:
                    batch = as_tensors(step[0][1])
                    batch.pop(POSITIONS, None)
                self._cursor_parts = [c for c, _ in step]  # joined when needed
                yield batch
            got = []
        nxt = self.dataset.next_epoch(self._cursor)
        if nxt is not None:
            self._cursor = nxt

    def __len__(self) -> int:
        """Batches left in the current epoch, the same on every rank."""
        return self.dataset.batches_left(self._cursor, self.batch_size,
                                         RuntimeContext(self.rank, self.world_size), self.tail)

    @property
    def epoch(self) -> int:
        return self._cursor.get("epoch", 0)

    def state_dict(self) -> dict:
        """Small, versioned and tied to the data: ``{version, fingerprint, seed, cursor}``.

        A ``StreamingMixture``'s cursor holds a snapshot per stream, and a rank has only its
        own streams': under torch.distributed with ``world_size > 1`` this call gathers them
        over the data-parallel group (call it on every rank, as when checkpointing);
        otherwise join the ranks' states with :func:`merge_states`."""
        ds = self.dataset
        state = {"version": STATE_VERSION, "fingerprint": ds.fingerprint, "seed": ds.seed,
                 "cursor": copy.deepcopy(self._cursor)}  # the caller's to change
        if getattr(ds, "split_steps", False) and self.world_size > 1 and dist.is_available() \
                and dist.is_initialized():
            group = None if self._mesh is None else self._mesh.get_group(self._dp_dim)
            if group is not None or dist.get_world_size() == self.world_size:
                states: list = [None] * self.world_size
                dist.all_gather_object(states, state, group=group)
                state = merge_states(states)
        return state

    def load_state_dict(self, state: dict) -> None:
        check_state(state, self.dataset.fingerprint, self.dataset.seed)
        if not isinstance(state.get("cursor"), dict):
            raise InstmixError(f"loader state: cursor: {state.get('cursor')!r} is not a "
                               "mapping; load a state saved by this loader, unedited")
        self.dataset.check_cursor(state["cursor"])
        self._cursor = dict(state["cursor"])
        if "epoch" in self._cursor:
            self.dataset.set_epoch(self._cursor["epoch"])


def merge_states(states: list[dict]) -> dict:
    """One state from the states of all data-parallel ranks saved at the same step (the
    union of their streams' snapshots)."""
    first = states[0]
    for st in states[1:]:
        for key in ("version", "fingerprint", "seed"):
            if st.get(key) != first.get(key):
                raise InstmixError(f"loader states differ in {key}: saved for other data")
        if st["cursor"].get("consumed") != first["cursor"].get("consumed"):
            raise InstmixError("loader states were saved at different steps "
                               f"({first['cursor'].get('consumed')} and "
                               f"{st['cursor'].get('consumed')} sequences)")
    return {**first, "cursor": _join_cursors([s["cursor"] for s in states])}


def _join_cursors(cursors: list[dict]) -> dict:
    out = dict(cursors[-1])
    if any(c.get("streams") for c in cursors):
        out["streams"] = {k: v for c in cursors for k, v in (c.get("streams") or {}).items()}
    return out


def _join_parts(parts: list[dict]) -> dict[str, torch.Tensor]:
    """The workers' parts of one step (numpy arrays) as the rank's batch, rows in global
    position order. In numpy: small torch ops cost tens of microseconds each, and some
    (advanced indexing, padding) wake torch's intra-op thread pool while the workers hold
    the cores."""
    order = np.argsort(np.concatenate([np.asarray(p[POSITIONS]) for p in parts]))
    dl = np.zeros((len(order), max(p["doc_lens"].shape[1] for p in parts)), dtype=np.int64)
    at = 0
    for p in parts:
        n, w = p["doc_lens"].shape
        dl[at:at + n, :w] = p["doc_lens"]
        at += n

    def rows(key: str) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([np.asarray(p[key]) for p in parts])[order])

    return {"input_ids": rows("input_ids"), "labels": rows("labels"),
            "doc_lens": torch.from_numpy(dl[order]), "index": rows("index")}
