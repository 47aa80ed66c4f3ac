"""A build's shards as tasks: one picklable item per shard, for executors whose workers
are other processes or machines (Ray). Cache units are tokenized as tasks too, by
:class:`~instmix.tokenize.jobs.UnitTokenizer`.

Each task is a pure function of its item, so it runs the same in this process or on any
worker of a cluster (:mod:`instmix.builder.executor`), and a retried task writes the same
bytes. Shard tasks are planned on the driver from document lengths only:
:func:`plan_shards` cuts the stream where :class:`~instmix.format.writer.ShardWriter` would.
An item names its cache units by ``(root, key)`` and carries its documents as
``(unit, index)`` arrays; tokens go from the cache to the output by the worker, never
through the driver or Ray's object store.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from instmix.config import BuildConfig
from instmix.format.writer import ShardStats, open_shard
from instmix.io import fs
from instmix.io.progress import Progress
from instmix.tokenize.cache import CacheUnit, open_unit
from instmix.tokenize.facts import TokenizerInfo

from .executor import Executor, LocalExecutor
from .shard_rows import present, write_rows


@dataclass(frozen=True)
class ShardTask:
    """One shard: its documents as ``(unit, index in unit)`` pairs, in stream order.

    ``units`` are ``(cache root, key)``; ``unit_source`` names each unit's source. ``dest``
    is the build's staging folder, or the generation prefix of an object-store build.
    """

    index: int
    prefix: str
    dest: str
    dtype: str
    with_mask: bool
    units: tuple[tuple[str, str], ...]
    unit_source: tuple[str, ...]
    unit_ix: np.ndarray
    local: np.ndarray
    tokens: int
    storage_options: Mapping = dataclasses.field(default_factory=dict)
    # rows whose document lost parts in the clean stage: row -> kept (start, end) token
    # ranges inside its unit
    splices: Mapping[int, tuple] = dataclasses.field(default_factory=dict)


def plan_shards(lengths: np.ndarray, shard_tokens: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` document ranges per shard: a shard ends before the document that would
    overflow ``shard_tokens`` (a longer document gets a shard of its own)."""
    n = len(lengths)
    csum = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    out, lo = [], 0
    while lo < n:
        hi = int(np.searchsorted(csum, csum[lo] + shard_tokens, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        out.append((lo, hi))
        lo = hi
    return out


def _open_units(task: ShardTask, cache: dict) -> list[CacheUnit]:
    """The task's cache units, opened once per worker process. A unit in a local (shared)
    cache was checked by the driver moments ago and is opened without re-hashing it; one
    of a remote cache is fetched to this machine's mirror and checked there."""
    units = []
    for root, key in task.units:
        if (root, key) not in cache:
            if fs.is_url(root):
                unit = open_unit(root, key, task.dtype, task.storage_options)
            else:
                folder = os.path.join(root, key)
                unit = CacheUnit(folder, task.dtype, check=False) \
                    if os.path.isdir(folder) else None
            if unit is None:
                raise FileNotFoundError(fs.join(root, key))
            cache[(root, key)] = unit
        units.append(cache[(root, key)])
    return units


_units: dict = {}  # per worker process: opened cache units (memory maps)


def write_shard(task: ShardTask, units: Sequence[CacheUnit] | None = None,
                progress: Callable[[int], None] | None = None) -> ShardStats:
    """Write one shard (into ``dest``, or a local folder then uploaded to a URL ``dest``)."""
    units = list(units) if units is not None else _open_units(task, _units)
    remote = fs.is_url(task.dest)
    folder = tempfile.mkdtemp(prefix="instmix-shard-") if remote else task.dest
    try:
        if task.prefix:
            os.makedirs(os.path.join(folder, task.prefix), exist_ok=True)
        shard = open_shard(folder, task.index, task.dtype, task.with_mask, task.prefix)
        write_rows(shard, units, task.unit_source, task.unit_ix, task.local, task.splices,
                   progress)
        stats = shard.close()
        if remote:
            for rel in shard.files():
                fs.put_file(os.path.join(folder, rel), fs.join(task.dest, rel),
                            task.storage_options)
        return stats
    finally:
        if remote:
            shutil.rmtree(folder, ignore_errors=True)


def write_shard_task(task: ShardTask) -> tuple[ShardStats, int]:
    """:func:`write_shard` on a worker; returns ``(stats, storage retries)``."""
    before = fs.retry_count()
    stats = write_shard(task)
    return stats, fs.retry_count() - before


def shard_tasks(cfg: BuildConfig, info: TokenizerInfo, pools: list,
                draws: list[np.ndarray], src: np.ndarray, pos: np.ndarray, dest: str
                ) -> list[ShardTask]:
    """The mixture as shard tasks. ``interleaved``: one shard set in schedule order.
    ``per_source``: ``sources/<name>/`` per source, each in its draw order (for trainers
    that mix by themselves, such as OLMo-core source mixtures)."""
    with_mask = any(u.mask is not None for p in pools for u in p.units)
    root = cfg.resolved_cache_dir
    refs, owners, base = [], [], []
    for p in pools:
        base.append(len(refs))
        refs += [(root, os.path.basename(u.folder)) for u in p.units]
        owners += [p.config.name] * len(p.units)
    # per source, per draw: flat unit number, index inside the unit, length
    per, spliced = [], {}  # spliced: (flat unit, index in unit) -> kept token ranges
    for s, (p, d) in enumerate(zip(pools, draws)):
        unit_no, local = p.locate(d)
        per.append((unit_no + base[s], local, p.lengths[d]))
        for doc, ranges in p.splices.items():
            u = int(np.searchsorted(p.unit_starts, doc, side="right") - 1)
            spliced[(base[s] + u, int(doc - p.unit_starts[u]))] = tuple(ranges)

    def cut(prefix: str, unit_ix: np.ndarray, local: np.ndarray, lengths: np.ndarray):
        out = []
        for k, (lo, hi) in enumerate(plan_shards(lengths, cfg.shard_tokens)):
            used = np.array(present(unit_ix[lo:hi]), np.int64)  # the units it reads
            cuts = {r: spliced[(u, i)] for r, (u, i) in enumerate(
                zip(unit_ix[lo:hi].tolist(), local[lo:hi].tolist())) if (u, i) in spliced} \
                if spliced else {}
            out.append(ShardTask(k, prefix, dest, info.dtype, with_mask,
                                 tuple(refs[u] for u in used),
                                 tuple(owners[u] for u in used),
                                 np.searchsorted(used, unit_ix[lo:hi]), local[lo:hi],
                                 int(lengths[lo:hi].sum()), dict(cfg.storage_options), cuts))
        return out

    if cfg.layout == "per_source":
        tasks = []
        for s, p in enumerate(pools):
            if len(draws[s]):
                tasks += cut(os.path.join("sources", p.config.name), *per[s])
        return tasks
    n = len(src)
    unit_ix, local = np.empty(n, np.int64), np.empty(n, np.int64)
    lengths = np.empty(n, np.int64)
    for s, (u, lc, ln) in enumerate(per):
        at = src == s
        unit_ix[at], local[at], lengths[at] = u[pos[at]], lc[pos[at]], ln[pos[at]]
    return cut("", unit_ix, local, lengths)


def write_shards(tasks: list[ShardTask], pools: list, progress: Progress,
                 executor: Executor | None = None, counts: dict | None = None) -> list:
    """Run the shard tasks on ``executor`` (default: local processes, one per core).

    A local executor's forked workers inherit the pools' open cache units; one shard (or
    one process) is written in this process, its tokens counted as they go. A remote
    executor's workers open the units themselves (``counts["remote_retries"]`` grows by
    their storage retries). Each shard's bytes depend only on its task.
    """
    bar = progress.bar("write shards", unit="tok", total=sum(t.tokens for t in tasks))
    try:
        if getattr(executor, "remote", False):
            results = executor.map(write_shard_task, tasks, progress=lambda _, r: bar.update(
                r[0].tokens))
            if counts is not None:
                counts["remote_retries"] = counts.get("remote_retries", 0) + sum(
                    r[1] for r in results)
            return [r[0] for r in results]
        local = executor if isinstance(executor, LocalExecutor) else LocalExecutor()
        opened = {os.path.basename(u.folder): u for p in pools for u in p.units}
        if local.plan(len(tasks)) == 1:
            return [write_shard(t, [opened[k] for _, k in t.units], bar.update) for t in tasks]
        return local.map(LocalShardWriter(opened), tasks,
                         progress=lambda _, stats: bar.update(stats.tokens))
    finally:
        bar.close()


class LocalShardWriter:
    """Task function ``(ShardTask) -> ShardStats`` over cache units already open in this
    process (forked workers inherit them; never pickled)."""

    def __init__(self, opened: Mapping[str, CacheUnit]):
        self.opened = opened

    def __call__(self, task: ShardTask) -> ShardStats:
        return write_shard(task, [self.opened[k] for _, k in task.units])
