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

import torch

HANDOVER_TOKENS = 1 << 16  # a worker's item holds steps until about this many tokens
MAX_STEPS = 16


def steps_per_item(batch_size: int, seq_len: int) -> int:
    """Steps per worker item: the same in every worker (their items must align)."""
    return max(1, min(MAX_STEPS, HANDOVER_TOKENS // max(1, batch_size * seq_len)))


class Handover:
    """Consecutive steps of one worker: ``steps`` is a list of ``(cursor, batch)``. torch's
    default_convert leaves it alone (a cursor is no tensor), and its pin-memory thread
    calls :meth:`pin_memory`."""

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
                views.append((k, len(buf), list(t.shape), t.dtype))
                if t.numel():
                    buf += memoryview(t.reshape(-1).view(torch.uint8).numpy())
            out.append((cursor, rest, views))
        return out, buf

    def __setstate__(self, state):
        steps, buf = state
        flat = torch.frombuffer(buf, dtype=torch.uint8) if buf else \
            torch.zeros(0, dtype=torch.uint8)
        self.steps = []
        for cursor, rest, views in steps:
            batch = dict(rest)
            for k, at, shape, dtype in views:
                n = math.prod(shape) * dtype.itemsize
                batch[k] = flat[at:at + n].view(dtype).reshape(shape)
            self.steps.append((cursor, batch))

    def pin_memory(self, device=None):
        self.steps = [(c, {k: v.pin_memory() if isinstance(v, torch.Tensor) else v
                           for k, v in b.items()}) for c, b in self.steps]
        return self
