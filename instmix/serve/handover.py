"""Handing batches from DataLoader workers to the main process.

A worker's result travels through its torch result queue as one pickle. Tensors inside a
:class:`Handover` travel as the bytes of one buffer in that pickle: torch would send every
tensor storage through a shared-memory file and a descriptor handshake with the worker,
which costs more than copying a small batch. A worker of a split-steps dataset (each
worker serves a part of every step) hands over :func:`steps_per_item` steps at a time, so
the main process pays torch's per-item cost once for several steps, and a worker that
stops to tokenize a block does not stall the others while the loader waits for its part.
In one process nothing is pickled or copied.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import torch

HANDOVER_TOKENS = 1 << 16  # a worker's item holds steps until about this many tokens
MAX_STEPS = 16


def steps_per_item(batch_size: int, seq_len: int) -> int:
    """Steps per worker item: the same in every worker (their items must align)."""
    return max(1, min(MAX_STEPS, HANDOVER_TOKENS // max(1, batch_size * seq_len)))


def cursor_of(cursor) -> dict:
    """A step's cursor as handed over (pickled by the worker, opened only when needed)."""
    return pickle.loads(cursor) if isinstance(cursor, bytes) else cursor


def as_tensors(batch: dict) -> dict:
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
            for k, v in batch.items()}


class Handover:
    """Consecutive steps of one worker: ``steps`` is a list of ``(cursor, batch)``. After
    the hand-over a cursor is the worker's pickle of it (the main process opens it only
    for ``state_dict()`` or the epoch's end: :func:`cursor_of`) and a batch's tensors are
    numpy arrays over the received buffer, for a join without small torch ops
    (:func:`as_tensors`). torch's default_convert leaves a Handover alone and its
    pin-memory thread calls :meth:`pin_memory`."""

    __slots__ = ("steps",)

    def __init__(self, steps: list[tuple[dict, dict]]):
        self.steps = steps

    def __getstate__(self):
        buf, out = bytearray(), []
        for cursor, batch in self.steps:
            rest, views = {}, []
            for k, v in batch.items():
                if not isinstance(v, torch.Tensor):
                    rest[k] = v
                    continue
                t = v.detach().cpu().contiguous()
                buf += bytes(-len(buf) % 8)  # each tensor at an 8-byte boundary
                views.append((k, len(buf), tuple(t.shape), t.dtype))
                if t.numel():
                    buf += memoryview(t.reshape(-1).view(torch.uint8).numpy())
            out.append((pickle.dumps(cursor, pickle.HIGHEST_PROTOCOL), rest, views))
        return out, buf

    def __setstate__(self, state):
        steps, buf = state
        raw = np.frombuffer(buf, dtype=np.uint8)
        self.steps = []
        for cursor, rest, views in steps:
            batch = dict(rest)
            for k, at, shape, dtype in views:
                n = math.prod(shape) * dtype.itemsize
                if dtype in _NUMPY:
                    batch[k] = raw[at:at + n].view(_NUMPY[dtype]).reshape(shape)
                else:  # no numpy dtype (bfloat16, ...)
                    batch[k] = torch.frombuffer(buf, dtype=torch.uint8, offset=at, count=n
                                                ).view(dtype).reshape(shape)
            self.steps.append((cursor, batch))

    def pin_memory(self, device=None):
        self.steps = [(c, {k: v.pin_memory() if isinstance(v, torch.Tensor) else v
                           for k, v in as_tensors(b).items()}) for c, b in self.steps]
        return self


_NUMPY = {torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16,
          torch.int8: np.int8, torch.uint8: np.uint8, torch.bool: np.bool_,
          torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}
