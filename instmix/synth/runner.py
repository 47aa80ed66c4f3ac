"""``instmix augment``: sources -> blocks -> M rounds of prompts -> checkpointed parts.

Documents are read in source order and grouped into blocks of ``block_size`` documents;
block k belongs to rank ``k % world_size``. Each block runs as a
:class:`~instmix.synth.block.BlockJob` (here, or on Ray); this module writes what comes
back. On restart, finished blocks are skipped and finished parts are read back.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from instmix.errors import InstmixError
from instmix.io.progress import Progress

from .block import BlockEnd, BlockInput, Part, Settings, make_encoder
from .chain import Entry
from .config import AugmentConfig
from .engines.base import Engine, create_engine
from .inputs import iter_blocks, iter_documents, plan_fingerprint
from .output import OutputDir
from .ray_exec import RayExecutor
from .schedule import Scheduler
from .stats import block_stats, cache_stats, merge, rates
from .writer import Writer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """Which share of the blocks this process runs."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self):
        if not (self.world_size >= 1 and 0 <= self.rank < self.world_size):
            raise InstmixError(f"rank {self.rank} is not in [0, world size {self.world_size})")

    def owns(self, block: int) -> bool:
        return block % self.world_size == self.rank


class LocalExecutor:
    """Runs the scheduler in this process; the engine is created when there is work."""

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self.engine = engine
        self._own = engine is None
        self.scheduler: Scheduler | None = None

    @property
    def engine_seconds(self) -> float:
        return self.scheduler.engine_seconds if self.scheduler else 0.0

    def run(self, inputs: Iterator[BlockInput]) -> Iterator[Part | BlockEnd]:
        first = next(inputs, None)
        if first is None:
            return
        encoder = make_encoder(self.settings.synthesizer, self.settings.where)
        if self.engine is None:
            self.engine = create_engine(self.settings.synthesizer, encoder.tok,
                                        self.settings.where)
        self.scheduler = Scheduler(self.settings, encoder, self.engine)
        yield from self.scheduler.run(itertools.chain([first], inputs))

    def close(self) -> None:
        if self._own and self.engine is not None:
            self.engine.close()


class _Session:
    """Throughput counters of this run, saved beside the block markers."""

    def __init__(self, ctx: RunContext):
        self.start = time.time()
        self.t0 = time.perf_counter()
        stamp = _dt.datetime.fromtimestamp(self.start, _dt.timezone.utc)
        self.file = f"session-{ctx.rank:04d}-{stamp:%Y%m%dT%H%M%S%f}.json"
        self.info = {"rank": ctx.rank, "world_size": ctx.world_size,
                     "started": stamp.isoformat(timespec="seconds"), "seconds": 0.0,
                     "texts": 0, "prompts": 0, "raw_tokens": 0, "prompt_tokens": 0,
                     "generated_tokens": 0, "engine_seconds": 0.0}

    def add(self, part: Part) -> None:
        i = self.info
        i["texts"] += len(part.entries)
        i["prompts"] += len(part.entries)
        i["raw_tokens"] += sum(e.text_tokens for e in part.entries)
        i["prompt_tokens"] += sum(e.prompt_tokens for e in part.entries)
        i["generated_tokens"] += sum(e.output_tokens for e in part.entries)

    def snapshot(self, engine_seconds: float) -> dict:
        self.info["seconds"] = round(time.perf_counter() - self.t0, 3)
        self.info["engine_seconds"] = round(engine_seconds, 3)
        return {**self.info, **rates(self.info)}


def augment(cfg: AugmentConfig, *, ctx: RunContext | None = None, progress=None,
            engine: Engine | None = None, retry_failed: bool = False,
            settings: Settings | None = None) -> dict:
    """Run (or resume) the augment step; returns the stats written to ``stats.json``.

    ``engine`` replaces the configured one (tests, notebooks); it is not closed here.
    ``retry_failed``: make the failed entries again, and what followed them in their block.
    ``settings`` replaces the ones derived from ``cfg`` (benchmarks).
    """
    ctx = ctx or RunContext()
    progress = progress or Progress(enabled=False)
    out = OutputDir(cfg.output)
    out.prepare(plan_fingerprint(cfg), cfg.where)
    done_blocks = recheck_done(out, ctx, retry_failed)
    skipped: dict = {}
    pending_entries: dict[int, list[Entry]] = {}
    pending_cache: dict[int, list[dict]] = {}
    seen = {"blocks": 0}

    def pending() -> Iterator[BlockInput]:
        for k, docs in iter_blocks(iter_documents(cfg, skipped), cfg.block_size):
            seen["blocks"] = k + 1
            if not ctx.owns(k) or k in done_blocks:
                continue
            done = out.block_parts(k, skip_failed_from=retry_failed)
            pending_entries[k] = [e for entries in done.values() for e in entries]
            pending_cache[k] = [c for n in done if (c := out.read_cache(n)) is not None]
            yield BlockInput(k, docs, done)

    settings = settings or Settings.of(cfg)
    if cfg.ray is not None:
        if engine is not None:
            raise InstmixError("a given engine cannot run on Ray; drop 'ray' from the config")
        executor = RayExecutor(settings, cfg.ray)
    else:
        executor = LocalExecutor(settings, engine)
    session = _Session(ctx)
    bar = progress.bar("augment", unit="text")
    writer = Writer()
    finished = False
    last = time.perf_counter()
    try:
        for item in executor.run(pending()):
            if isinstance(item, Part):
                info = cache_stats(item)
                # the cache figures first: a part on storage always has its figures
                writer.put(lambda item=item, info=info: (out.write_cache(item.name, info),
                                                         out.write_part(item.name, item.entries)))
                pending_entries.setdefault(item.block, []).extend(item.entries)
                pending_cache.setdefault(item.block, []).append(info)
                session.add(item)
                bar.update(len(item.entries))
            else:
                stats = {"block": item.block, **block_stats(
                    pending_entries.pop(item.block, []), docs=item.docs,
                    split_docs=item.split_docs)}
                stats["prefix_cache"] = merge(
                    {k: v for k, v in c.items() if k != "entries"}
                    for c in pending_cache.pop(item.block, []))
                writer.put(lambda k=item.block, st=stats, names=item.parts: out.mark_done(
                    k, {**st, "parts": out.part_digests(names)}))
            if time.perf_counter() - last > 1.0:  # the session file, about once a second
                last = time.perf_counter()
                snap = session.snapshot(executor.engine_seconds)
                bar.set_postfix_str(f"{snap['generated_tokens_per_s']:,.0f} gen tok/s")
                writer.put(lambda snap=snap: out.write_session(session.file, snap))
        finished = True
    finally:
        bar.close()
        try:
            writer.close()
        except BaseException:
            if finished:
                raise
            log.exception("while writing the last parts")
        executor.close()
        out.write_session(session.file, session.snapshot(executor.engine_seconds))
    stats = collect_stats(out, skipped if finished else None, seen["blocks"] if finished
                          else None)
    out.write_stats(stats)
    return stats


def recheck_done(out: OutputDir, ctx: RunContext, retry_failed: bool) -> set[int]:
    """Finished blocks of this rank whose parts are intact (and, with ``retry_failed``,
    hold no failed entry); the others are sent back to work."""
    done = set()
    for k in sorted(out.done_blocks()):
        if not ctx.owns(k):
            done.add(k)
            continue
        why = out.check_done(k)
        if why is None and retry_failed and out.block_info(k).get("status", {}).get("failed"):
            why = "holds failed entries (--retry-failed)"
        if why is None:
            done.add(k)
        else:
            log.warning("block %d is made again: %s", k, why)
            out.unmark(k)
    return done


def collect_stats(out: OutputDir, skipped: dict | None, blocks: int | None) -> dict:
    """``stats.json``: totals over finished blocks, the input's skipped records and the
    throughput of every session."""
    done = out.read_state("block-")
    sessions = out.read_state("session-")
    totals = merge({k: v for k, v in b.items() if k not in ("block", "parts")} for b in done)
    pc = totals.get("prefix_cache", {})
    if pc.get("reusable_tokens"):
        totals["prefix_hit_rate"] = round(pc.get("hit_tokens", 0) / pc["reusable_tokens"], 4)
    return {
        "blocks_done": len(done),
        "blocks_total": blocks,
        "complete": blocks is not None and len(done) == blocks,
        "totals": totals,
        "input_skipped": skipped,
        "sessions": sessions,
    }
