"""Who reads what: global sequence positions -> ranks -> DataLoader workers.

An epoch is a sequence of ``n`` global positions. Starting at ``start``, global step ``k``
covers ``[start + k*R*B, start + (k+1)*R*B)`` for ``R`` ranks and ``B`` sequences per rank
and step; rank ``r`` reads its slice ``[.. + r*B, .. + (r+1)*B)`` and DataLoader worker
``w`` of ``W`` produces the steps ``k = w (mod W)``. The torch DataLoader takes batches
from its workers in turn, so the batches reach the trainer in step order whatever ``W``
is, and every position is read exactly once across ranks and workers. ``start`` is the
resume point: the number of global positions already consumed.

Equal steps: an epoch ends at a global step boundary (:func:`epoch_end`), so every rank
gets the same number of full batches. ``tail="drop"`` (the default) leaves out the
positions that do not fill a last global step; ``tail="wrap"`` fills it from the start
of the epoch's order (position ``p`` reads ``p mod n``), so a few sequences are read twice.

Data parallelism: ``rank``/``world_size`` are the data-parallel rank and size. With a
``DeviceMesh`` they come from its ``dp_dim`` dimension, so the ranks of one tensor- or
pipeline-parallel group read the same data (:func:`data_parallel`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch.distributed as dist
from torch.utils.data import get_worker_info

from instmix.errors import InstmixError

TAILS = ("drop", "wrap")


@dataclass(frozen=True)
class RuntimeContext:
    """Where this reader sits: rank in the job, and DataLoader worker in the rank."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")
        if not 0 <= self.worker < self.num_workers:
            raise ValueError(f"worker {self.worker} is not in [0, {self.num_workers})")


def data_parallel(rank: int | None, world_size: int | None, device_mesh=None,
                  dp_dim: str = "dp") -> tuple[int, int]:
    """The data-parallel ``(rank, world_size)``.

    Explicit values win (they mean the DP rank and size); else the ``dp_dim`` dimension of
    ``device_mesh``; else torch.distributed's global rank and size when it is initialised
    (with a warning when the world has more than one process: under tensor or pipeline
    parallelism the global rank gives peers different data, pass ``device_mesh``); else
    ``(0, 1)``.
    """
    if device_mesh is not None:
        names = tuple(device_mesh.mesh_dim_names or ())
        if dp_dim not in names:
            raise InstmixError(f"device_mesh has dimensions {names}, not dp_dim={dp_dim!r}; "
                               "name the data-parallel dimension with dp_dim=")
        dim = names.index(dp_dim)
        dp_rank, dp_size = device_mesh.get_local_rank(dim), device_mesh.size(dim)
        return (dp_rank if rank is None else rank), (dp_size if world_size is None
                                                      else world_size)
    if rank is not None and world_size is not None:
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if world > 1 and rank is None and world_size is None:
            warnings.warn("instmix: rank/world_size default to the global rank and world "
                          f"size ({world}); with tensor or pipeline parallelism pass "
                          "device_mesh= (and dp_dim=) so peers read the same data",
                          stacklevel=3)
        return (dist.get_rank() if rank is None else rank,
                world if world_size is None else world_size)
    return (0 if rank is None else rank), (1 if world_size is None else world_size)


def check_tail(tail: str) -> str:
    if tail not in TAILS:
        raise InstmixError(f"tail must be one of {TAILS}, got {tail!r}")
    return tail


def epoch_end(n: int, start: int, per_step: int, tail: str) -> int:
    """The end of an epoch of ``n`` positions resumed at ``start``: a whole number of
    global steps of ``per_step`` positions after ``start``."""
    left = max(n - start, 0)
    whole = left // per_step if tail == "drop" else -(-left // per_step)
    return start + whole * per_step


def current_worker() -> tuple[int, int]:
    """(worker id, number of workers) of the torch DataLoader worker running this code."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def steps(n: int, start: int, ctx: RuntimeContext, batch: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(step, lo, hi)``: this rank's and worker's position slices, in step order.

    With ``n`` from :func:`epoch_end` every slice is ``batch`` long; otherwise a slice is
    cut at ``n`` and a rank whose slice of the last step is empty gets nothing for it.
    """
    per_step = ctx.world_size * batch
    k = ctx.worker
    while True:
        base = start + k * per_step
        lo = base + ctx.rank * batch
        if base >= n:
            return
        hi = min(lo + batch, n)
        if lo < hi:
            yield k, lo, hi
        k += ctx.num_workers


LOOKAHEAD = 8192  # positions whose window ids are computed in one call


def positions(n: int, ctx: RuntimeContext, chunk: int, skip: int = 0,
               block: int = LOOKAHEAD) -> Iterator[np.ndarray]:
    """The positions of ``steps(n, 0, ctx, chunk)`` in order, less the first ``skip``, as
    arrays of about ``block`` positions (computed without a Python step per position)."""
    per_step = ctx.world_size * chunk
    m = max(1, block // chunk)  # steps per array
    k = ctx.worker
    while True:
        base = (k + ctx.num_workers * np.arange(m, dtype=np.int64)) * per_step
        base = base[base < n]
        if not len(base):
            return
        lo = base + ctx.rank * chunk
        hi = np.minimum(lo + chunk, n)
        lo, hi = lo[lo < hi], hi[lo < hi]
        if chunk == 1:
            pos = lo
        else:
            lens = hi - lo
            pos = np.repeat(lo - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
        if skip:
            cut = min(skip, len(pos))
            pos, skip = pos[cut:], skip - cut
        if len(pos):
            yield pos
        k += ctx.num_workers * m
