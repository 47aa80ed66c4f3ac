"""``instmix build``: sources -> token caches -> plan -> interleave -> shards + manifest."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from instmix.config import BuildConfig, SourceConfig
from instmix.format.manifest import MANIFEST, check_replaceable, dump_manifest, seal
from instmix.format.publish import commit, discard, new_generation
from instmix.io import fs
from instmix.io.atomic import clean_stale, clean_stale_in, make_temp_dir, swap_dir, write_atomic
from instmix.io.hashing import HashMemo
from instmix.io.progress import Progress
from instmix.mix.plan import SourcePlan, check_drawn, draw_documents, plan_targets
from instmix.mix.schedule import interleave
from instmix.sources.registry import get_kind
from instmix.sources.units import source_units
from instmix.tokenize.cache import CacheUnit, build_unit, format_key, open_unit, unit_key
from instmix.tokenize.encoder import Encoder
from instmix.tokenize.facts import TokenizerInfo, load_tokenizer_info
from instmix.tokenize.jobs import UnitJob, UnitTokenizer, preload

from . import cleaning
from .executor import Executor, LocalExecutor, available_cores
from .loss import loss_lengths
from .tasks import shard_tasks, write_shards
from .unit_groups import repeated_ids

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class SourcePool:
    """A source's tokenized documents: cache units viewed as one sequence."""

    config: SourceConfig
    units: list[CacheUnit]
    files: int
    inputs: list = field(default_factory=list)  # (paths, label) of each unit
    lengths: np.ndarray = field(init=False)
    loss_lengths: np.ndarray = field(init=False)
    unit_starts: np.ndarray = field(init=False)
    skipped: dict = field(init=False)
    composition: dict = field(init=False)
    # after the clean stage (see instmix.builder.cleaning): the documents kept (indices into
    # the units' documents), token ranges of documents that lost parts, removal counts
    index: np.ndarray | None = field(init=False, default=None)
    splices: dict = field(init=False, default_factory=dict)
    removed: dict | None = field(init=False, default=None)

    def __post_init__(self):
        self.lengths = np.concatenate([u.lengths for u in self.units]).astype(np.int64)
        self.unit_starts = np.cumsum([0] + [u.meta.documents for u in self.units])
        skipped: dict = {}
        for u in self.units:
            for k, v in u.meta.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
        self.skipped = dict(sorted(skipped.items()))
        composition: dict = {}
        for u in self.units:
            for key, values in u.meta.composition.items():
                per = composition.setdefault(key, {})
                for v, n in values.items():
                    per[v] = per.get(v, 0) + n
        self.composition = {k: dict(sorted(v.items())) for k, v in sorted(composition.items())}
        if any(u.mask is not None for u in self.units):
            self.loss_lengths = np.concatenate([loss_lengths(u) for u in self.units])
        else:
            self.loss_lengths = self.lengths

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def documents(self) -> int:
        return len(self.lengths)

    @property
    def documents_total(self) -> int:
        """Documents in the units, before any removal."""
        return int(self.unit_starts[-1])

    def locate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Document indices (of the kept documents) -> (unit number, index in the unit)."""
        if self.index is not None:
            index = self.index[index]
        unit = np.searchsorted(self.unit_starts, index, side="right") - 1
        return unit, index - self.unit_starts[unit]

    def doc_id(self, i: int) -> str:
        """Id of document ``i`` of the units (before removal)."""
        unit = int(np.searchsorted(self.unit_starts, i, side="right") - 1)
        return self.units[unit].doc_id(int(i - self.unit_starts[unit]))


def choose_backend(requested: str, todo_bytes: int) -> str:
    """``auto`` with less than :data:`SMALL_WORK_BYTES` to tokenize takes the reference,
    already loaded: loading a fast backend (0.5-2 s) would cost more than it saves. Every
    backend gives the same ids, so this changes speed only."""
    if requested == "auto" and todo_bytes < SMALL_WORK_BYTES:
        return "hf"
    return requested


SMALL_WORK_BYTES = 4 << 20


def tokenize_sources(cfg: BuildConfig, info: TokenizerInfo, progress: Progress,
                     encoder_factory: Callable[[], Encoder] | None = None,
                     units: list | None = None,
                     executor: Executor | None = None, counts: dict | None = None
                     ) -> list[SourcePool]:
    """Make sure every input has a token cache; return the sources' pools.

    ``units`` (from :func:`source_units`, per source) are resolved here when not given.
    Missing units are tokenized by ``executor`` (default: a local process pool of
    ``cfg.workers`` processes), largest first; the output does not depend on how many.
    ``encoder_factory`` (tests) builds the encoder, in this process, one unit at a time.
    A remote executor (Ray) tokenizes them as its tasks into ``cache_dir``, which may be
    an object store; ``counts["remote_retries"]`` grows by the workers' storage retries.
    """
    root = cfg.resolved_cache_dir
    so = cfg.storage_options
    if not fs.is_url(root):
        clean_stale_in(root)
        os.makedirs(root, exist_ok=True)
    if units is None:
        units = [source_units(src, cfg.where, i) for i, src in enumerate(cfg.sources)]
    memo = HashMemo(root, so)
    keyed = [[(unit_key(src, paths, label, info, memo, skip_bad=cfg.skip_bad_records), paths,
               label) for paths, label in plan] for src, plan in zip(cfg.sources, units)]
    memo.save()
    intact: dict[str, CacheUnit] = {}  # existing units whose checksums hold
    for plan in keyed:
        for key, _, _ in plan:
            if key not in intact and (unit := open_unit(root, key, info.dtype, so)) is not None:
                intact[key] = unit
    jobs = [UnitJob(root, key, src, tuple(paths), label)
            for src, plan in zip(cfg.sources, keyed) for key, paths, label in plan
            if key not in intact]
    if jobs:
        _run_jobs(cfg, info, jobs, progress, encoder_factory, executor, counts)
    fresh = set() if fs.is_url(root) else {job.key for job in jobs}
    return [SourcePool(src, [intact.get(key) or _open_unit(root, key, info, so, key in fresh)
                             for key, _, _ in plan], sum(len(p) for p, _ in upl), list(upl))
            for src, plan, upl in zip(cfg.sources, keyed, units)]


def _open_unit(root: str, key: str, info: TokenizerInfo, storage_options,
               fresh: bool = False) -> CacheUnit:
    """A unit just built (a remote cache's: its local mirror). ``fresh``: published by
    this build's workers moments ago, its files hashed as they were written: opened
    without reading them again."""
    folder = os.path.join(root, key)
    if fresh and os.path.isdir(folder):
        return CacheUnit(folder, info.dtype, check=False)
    unit = open_unit(root, key, info.dtype, storage_options)
    if unit is None:
        raise FileNotFoundError(fs.join(root, key))
    return unit


def _count(counts: dict | None, retries: int) -> None:
    if counts is not None:
        counts["remote_retries"] = counts.get("remote_retries", 0) + retries


def _run_jobs(cfg: BuildConfig, info: TokenizerInfo, jobs: list[UnitJob], progress: Progress,
              encoder_factory: Callable[[], Encoder] | None, executor: Executor | None,
              counts: dict | None = None) -> None:
    sizes = {id(job): job.input_bytes for job in jobs}
    bar = progress.bar("tokenize", unit="B", total=sum(sizes.values()))
    spec = cfg.tokenizer
    if encoder_factory is not None:
        encoder = encoder_factory()
        for job in jobs:
            build_unit(job.root, job.key, job.src, job.paths, job.label, info, encoder,
                       skip_bad=cfg.skip_bad_records, batch_bytes=cfg.batch_bytes)
            bar.update(sizes[id(job)])
    else:
        executor = executor or LocalExecutor(cfg.workers or None)
        order = sorted(jobs, key=lambda j: -sizes[id(j)])  # largest first: even finishing times
        remote = getattr(executor, "remote", False)  # Ray: workers get the task pickled
        if remote:
            executor.check_storage(cfg.resolved_cache_dir, cfg.storage_options)
        inline = executor.plan(len(order)) == 1 and not remote
        task = UnitTokenizer(info, choose_backend(spec.backend, sum(sizes.values())),
                             spec.check_rate, available_cores() if inline else 1,
                             cfg.skip_bad_records, cfg.batch_bytes, ship_tokenizer=remote)
        results = executor.map(task, order, progress=lambda job, _: bar.update(sizes[id(job)]))
        if not inline:  # retries made in the worker processes
            _count(counts, sum(r.storage_retries for r in results))
    bar.close()


def plan_mixture(cfg: BuildConfig, pools: list[SourcePool]
                 ) -> tuple[list[SourcePlan], list[np.ndarray], np.ndarray, np.ndarray]:
    """Targets, per-source draws and the interleaved order ``(source, draw position)``."""
    by_loss = cfg.ratio_by == "loss_tokens"
    counted = [p.loss_lengths if by_loss else p.lengths for p in pools]
    plans = plan_targets([p.config.name for p in pools], [p.config.ratio for p in pools],
                         [p.config.max_repetition for p in pools],
                         [int(c.sum()) for c in counted], cfg.total_tokens)
    draws = [draw_documents(cfg.seed, plan, c) for plan, c in zip(plans, counted)]
    check_drawn(cfg.where, cfg.total_tokens, draws, counted)
    src, pos = interleave([p.weight for p in plans], [c[d] for c, d in zip(counted, draws)])
    return plans, draws, src, pos


def source_summary(pools: list[SourcePool], plans: list[SourcePlan], draws: list[np.ndarray],
                   total: int) -> list[dict]:
    rows = []
    loss_total = sum(int(p.loss_lengths[d].sum()) for p, d in zip(pools, draws))
    for pool, plan, draw in zip(pools, plans, draws):
        tokens = int(pool.lengths[draw].sum())
        loss = int(pool.loss_lengths[draw].sum())
        rows.append({
            "name": pool.config.name, "kind": pool.config.kind,
            "target_ratio": float(plan.weight), "tokens": tokens, "documents": len(draw),
            "available_tokens": pool.tokens, "available_documents": pool.documents,
            "repetitions": tokens / pool.tokens if pool.tokens else 0.0,
            "achieved_ratio": tokens / total if total else 0.0,
            "loss_tokens": loss,
            "achieved_loss_ratio": loss / loss_total if loss_total else 0.0,
            "target_tokens": plan.target, "max_repetition": pool.config.max_repetition,
            "loss": pool.config.loss, "files": pool.files, "skipped": pool.skipped,
            "composition": pool.composition,
        })
        if pool.removed is not None:
            rows[-1]["removed"] = pool.removed
    return rows


@dataclass
class Tokenized:
    """A config's sources, tokenized: what every mixture of those sources starts from."""

    info: TokenizerInfo
    pools: list[SourcePool]
    cleaned: dict = field(default_factory=dict)  # clean settings -> (removals, listing)

    def removals(self, cfg: BuildConfig, pools: list[SourcePool], progress: Progress,
                 workers: int) -> tuple:
        """What the clean stage removes under ``cfg``'s settings (computed once per
        settings: a sweep over ratios cleans once)."""
        key = (cfg.seed, cfg.dedup, cfg.decontaminate, cfg.skip_bad_records,
               tuple(s.filters for s in cfg.sources))
        if key not in self.cleaned:
            found = cleaning.find(cfg, pools, progress, workers)
            self.cleaned[key] = (found, cleaning.listing(pools, found))
        return self.cleaned[key]


def tokenize(cfg: BuildConfig, progress: Progress | None = None,
             executor: Executor | None = None, counts: dict | None = None) -> Tokenized:
    """Resolve inputs, load the tokenizer and make sure every input has a token cache."""
    progress = progress or Progress(enabled=False)
    if getattr(executor, "remote", False):  # its workers load the tokenizer meanwhile
        spec = cfg.tokenizer
        executor.warm(preload, spec, cfg.dtype, cfg.where, cfg.storage_options, spec.backend,
                      spec.check_rate)
    units = [source_units(src, cfg.where, i, groups=True) for i, src in enumerate(cfg.sources)]
    info = load_tokenizer_info(cfg.tokenizer, cfg.dtype, cfg.where, cfg.storage_options)
    grouped = [i for i, src in enumerate(cfg.sources)
               if len(units[i]) > 1 and not get_kind(src.kind).per_file]
    try:
        pools = tokenize_sources(cfg, info, progress, units=units, executor=executor,
                                 counts=counts)
    except Exception:
        if not grouped:
            raise
        pools = None  # read the grouped sources whole: the error they give read together
    redo = grouped if pools is None else [i for i in grouped if repeated_ids(pools[i].units)]
    if redo:  # see instmix.builder.unit_groups
        for i in redo:
            units[i] = source_units(cfg.sources[i], cfg.where, i)
        pools = tokenize_sources(cfg, info, progress, units=units, executor=executor,
                                 counts=counts)
    return Tokenized(info, pools)


def build(cfg: BuildConfig, *, progress: Progress | None = None,
          tokenized: Tokenized | None = None, workers: int | None = None,
          executor: Executor | None = None, stats: dict | None = None) -> dict:
    """Run the whole build; returns the manifest written to ``cfg.output``.

    ``tokenized`` (from :func:`tokenize` on a config with the same sources) skips straight
    to planning: a sweep tokenizes once and builds many mixtures from it. ``workers``:
    processes for the clean stage's signatures (default: ``cfg.workers``, 0: one per CPU).
    ``executor`` runs the tokenization of cache units (default: local processes,
    ``cfg.workers``); a remote one (Ray) also writes the shards, with the same bytes.
    ``stats`` receives ``storage_retries``. An object-store ``output`` is published as a
    generation committed by its manifest (:mod:`instmix.format.publish`).
    """
    progress = progress or Progress(enabled=False)
    so = cfg.storage_options
    before, counts = fs.retry_count(), {}
    check_replaceable(cfg.output, so)
    if tokenized is None:
        tokenized = tokenize(cfg, progress, executor, counts)
    info = tokenized.info
    pools, listing = mixture_pools(cfg, tokenized, progress, workers)
    plans, draws, src, pos = plan_mixture(cfg, pools)
    remote = fs.is_url(cfg.output)
    if remote:
        generation = new_generation()
        stage, dest = tempfile.mkdtemp(prefix="instmix-build-"), fs.join(cfg.output, generation)
    else:
        clean_stale(cfg.output)
        stage = dest = make_temp_dir(cfg.output)
    try:
        shard_dest = dest
        if getattr(executor, "remote", False):
            for where in (cfg.resolved_cache_dir, dest):  # what its shard tasks read, write
                executor.check_storage(where, so)
        else:
            executor = executor or LocalExecutor(cfg.workers or None)
            shard_dest = stage  # local workers write into the staging folder (then uploaded)
        tasks = shard_tasks(cfg, info, pools, draws, src, pos, shard_dest)
        shards = write_shards(tasks, pools, progress, executor, counts)
        shutil.copyfile(info.path, os.path.join(stage, TOKENIZER_FILE))
        removed_index = None
        if listing is not None:
            data = cleaning.dump_listing(listing)
            write_atomic(os.path.join(stage, cleaning.REMOVED_FILE), data)
            removed_index = {"path": cleaning.REMOVED_FILE, "records": len(listing),
                             "sha256": hashlib.sha256(data).hexdigest()}
        total = sum(s.tokens for s in shards)
        manifest = seal({
            "tokenizer": info.manifest_dict(TOKENIZER_FILE),
            "dtype": info.dtype,
            "seed": cfg.seed,
            "total_tokens": total,
            "loss_tokens": sum(s.loss_tokens if s.mask else s.tokens for s in shards),
            "documents": sum(s.documents for s in shards),
            "requested_tokens": cfg.total_tokens,
            "ratio_by": cfg.ratio_by,
            "layout": cfg.layout,
            "sources": source_summary(pools, plans, draws, total),
            "shards": [s.manifest_dict() for s in shards],
        })
        if removed_index is not None:
            manifest["removed_index"] = removed_index
            manifest = seal(manifest)
        write_atomic(os.path.join(stage, MANIFEST), dump_manifest(manifest))  # written last
        if remote:
            fs.upload_tree(stage, dest, so, last=(MANIFEST,))  # what the shards did not send
            commit(cfg.output, generation, manifest, so)
        else:
            swap_dir(stage, cfg.output, check=check_replaceable)
    except BaseException:
        if remote:
            discard(dest, so)
        else:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        if remote:
            shutil.rmtree(stage, ignore_errors=True)
    if stats is not None:
        stats["storage_retries"] = fs.retry_count() - before + counts.get("remote_retries", 0)
    return manifest


def mixture_pools(cfg: BuildConfig, tokenized: Tokenized, progress: Progress | None = None,
                  workers: int | None = None) -> tuple[list[SourcePool], list[dict] | None]:
    """The pools a mixture of ``cfg`` draws from (what the clean stage keeps, when it is
    configured) and the listing of what it removed (None without cleaning)."""
    pools = [_with_config(p, s) for p, s in zip(tokenized.pools, cfg.sources)]
    if not cleaning.enabled(cfg):
        return pools, None
    found, listing = tokenized.removals(cfg, pools, progress or Progress(enabled=False),
                                        workers or cfg.workers or os.cpu_count() or 1)
    add_bos = tokenized.info.add_bos
    return [cleaning.cleaned_pool(p, r, add_bos) for p, r in zip(pools, found)], listing


def _with_config(pool: SourcePool, src: SourceConfig) -> SourcePool:
    """The pool under this config's ratio and cap (a sweep changes only those)."""
    if pool.config.name != src.name or format_key(pool.config) != format_key(src) or \
            pool.config.paths != src.paths:
        raise ValueError(f"tokenized sources do not match the config at source {src.name!r}")
    if pool.config == src:
        return pool
    clone = copy.copy(pool)
    clone.config = src
    return clone
