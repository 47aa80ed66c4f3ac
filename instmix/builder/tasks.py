"""A build's per-unit tasks: tokenize one cache unit, write one shard.

Each task is a picklable item and a pure function of it, so it runs the same in this
process or on any worker of a cluster (:mod:`instmix.builder.executor`), and a retried task
writes the same bytes. Shard tasks are planned on the driver from document lengths only:
:func:`plan_shards` cuts the stream where :class:`~instmix.format.writer.ShardWriter` would.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from instmix.config import BuildConfig, SourceConfig
from instmix.format.writer import ShardStats, open_shard
from instmix.io import fs
from instmix.io.progress import Progress
from instmix.tokenize.cache import CacheUnit, build_unit, unit_folder, unit_present
from instmix.tokenize.encoder import Encoder
from instmix.tokenize.facts import TokenizerInfo

from .executor import Executor


@dataclass(frozen=True)
class TokenizeTask:
    """Tokenize ``paths`` of ``src`` into cache unit ``key`` under ``root``."""

    root: str
    key: str
    src: SourceConfig
    paths: tuple[str, ...]
    label: str
    info: TokenizerInfo
    tokenizer_json: bytes  # the tokenizer itself, for workers that cannot see info.path
    backend: str
    check_rate: float
    skip_bad: bool
    batch_bytes: int


def _local_info(info: TokenizerInfo, data: bytes) -> TokenizerInfo:
    """``info`` with a path this process can read (a copy when the driver's is not here)."""
    if os.path.isfile(info.path):
        return info
    folder = os.path.join(tempfile.gettempdir(), f"instmix-{os.getuid()}", "tokenizers",
                          info.sha256)
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.part-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return dataclasses.replace(info, path=path)


_encoders: dict[tuple, Encoder] = {}  # per worker process: loading a tokenizer takes time


def tokenize_unit(task: TokenizeTask) -> tuple[int, int]:
    """Run a :class:`TokenizeTask`; returns ``(tokens, storage retries)``."""
    before = fs.retry_count()
    info = _local_info(task.info, task.tokenizer_json)
    ek = (info.sha256, info.path, task.backend, task.check_rate)
    if ek not in _encoders:
        _encoders[ek] = Encoder(info, task.backend, task.check_rate)
    unit = build_unit(task.root, task.key, task.src, list(task.paths), task.label, info,
                      _encoders[ek], skip_bad=task.skip_bad, batch_bytes=task.batch_bytes)
    return unit.meta.tokens, fs.retry_count() - before


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
    units = []
    for root, key in task.units:
        if (root, key) not in cache:
            folder = unit_folder(root, key, task.storage_options)
            if folder is None:
                raise FileNotFoundError(fs.join(root, key))
            cache[(root, key)] = CacheUnit(folder, task.dtype)
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
        done = 0
        for row, (u, i) in enumerate(zip(task.unit_ix.tolist(), task.local.tolist())):
            unit = units[u]
            ranges = task.splices.get(row) if task.splices else None
            if ranges is None:
                a, b = int(unit.offsets[i]), int(unit.offsets[i + 1])
                tokens = unit.tokens[a:b]
                mask = unit.mask[a:b] if unit.mask is not None else None
            else:  # parts removed by the clean stage: the kept token ranges, joined
                tokens = np.concatenate([unit.tokens[x:y] for x, y in ranges])
                mask = (np.concatenate([unit.mask[x:y] for x, y in ranges])
                        if unit.mask is not None else None)
            shard.add(tokens, mask, unit.doc_id(i), task.unit_source[u])
            done += len(tokens)
            if progress is not None and done >= 1 << 20:
                progress(done)
                done = 0
        if progress is not None:
            progress(done)
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


def tokenize_remote(cfg: BuildConfig, info: TokenizerInfo, progress: Progress,
                    executor: Executor, keyed_all: list) -> int:
    """Tokenize the units of ``keyed_all`` (per source: ``(key, paths, label)``) missing
    from the cache as ``executor`` tasks; returns the storage retries they made."""
    root, so = cfg.resolved_cache_dir, cfg.storage_options
    with open(info.path, "rb") as f:
        tok_json = f.read()
    tasks = [TokenizeTask(root, key, src, tuple(paths), label, info, tok_json,
                          cfg.tokenizer.backend, cfg.tokenizer.check_rate,
                          cfg.skip_bad_records, cfg.batch_bytes)
             for src, keyed in zip(cfg.sources, keyed_all) for key, paths, label in keyed
             if not unit_present(root, key, so)]
    if not tasks:
        return 0
    executor.check_storage(root, so)
    bar = progress.bar(f"tokenize ({executor.name})", unit="tok", total=None)
    results = executor.map(tokenize_unit, tasks, progress=lambda _, r: bar.update(r[0]))
    bar.close()
    return sum(r[1] for r in results)


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
            used = np.unique(unit_ix[lo:hi])  # ship only the units this shard reads
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
    """Run the shard tasks: in this process (the pools' open units), or on ``executor``
    (``counts["remote_retries"]`` grows by its tasks' storage retries)."""
    bar = progress.bar("write shards", unit="tok", total=sum(t.tokens for t in tasks))
    try:
        if getattr(executor, "remote", False):
            results = executor.map(write_shard_task, tasks, progress=lambda _, r: bar.update(
                r[0].tokens))
            if counts is not None:
                counts["remote_retries"] = counts.get("remote_retries", 0) + sum(
                    r[1] for r in results)
            return [r[0] for r in results]
        opened = {(os.path.basename(u.folder)): u for p in pools for u in p.units}
        return [write_shard(t, [opened[k] for _, k in t.units], bar.update) for t in tasks]
    finally:
        bar.close()
