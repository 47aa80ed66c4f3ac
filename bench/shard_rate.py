"""ShardDataset read speed, shared by the object-store benchmarks."""

from __future__ import annotations

import time


def shard_rate(path: str, items: int, **kw):
    """``(tokens/s over items, seconds to open, the dataset)`` for ``items`` shuffled
    ``seq_len`` 2048 items of the build at ``path`` (``kw``: ShardDataset options)."""
    from instmix.serve.shard_dataset import ShardDataset

    t = time.perf_counter()
    ds = ShardDataset(path, 2048, seed=1, **kw)
    opened = time.perf_counter() - t
    n = 0
    t = time.perf_counter()
    for _, item in zip(range(items), ds):
        n += item["input_ids"].numel()
    return n / (time.perf_counter() - t), opened, ds
