"""``instmix augment``: sources -> blocks -> M rounds of prompts -> checkpointed parts.

Documents are read in source order and grouped into blocks of ``block_size`` documents;
block k belongs to rank ``k % world_size``. Each block runs as a
:class:`~instmix.synth.block.BlockJob` (here, or on Ray); this module writes what comes
back. On restart, finished blocks are skipped and finished parts are read back.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterator
from dataclasses import dataclass

from instmix.errors import InstmixError
from instmix.io.progress import Progress

from .block import BlockEnd, BlockInput, BlockJob, Part, Settings, make_encoder
from .chain import Entry
from .config import AugmentConfig
from .engines.base import Engine, create_engine
from .inputs import iter_blocks, iter_documents, plan_fingerprint
from .output import OutputDir
from .prompt import PromptEncoder
from .ray_exec import RayExecutor
from .stats import block_stats, merge, rates


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
    """Runs block jobs in this process; the engine is created on the first block."""

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self.engine = engine
        self._own = engine is None
        self.encoder: PromptEncoder | None = None

    def run(self, inputs: Iterator[BlockInput]) -> Iterator[Part | BlockEnd]:
        for inp in inputs:
            if self.encoder is None:
                self.encoder = make_encoder(self.settings.synthesizer, self.settings.where)
            if self.engine is None:
                self.engine = create_engine(self.settings.synthesizer, self.encoder.tok,
                                            self.settings.where)
            yield from BlockJob(inp, self.settings, self.encoder).run(self.engine)

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
        i["engine_seconds"] += part.engine_seconds

    def snapshot(self) -> dict:
        self.info["seconds"] = round(time.perf_counter() - self.t0, 3)
        self.info["engine_seconds"] = round(self.info["engine_seconds"], 3)
        return {**self.info, **rates(self.info)}


def augment(cfg: AugmentConfig, *, ctx: RunContext | None = None, progress=None,
            engine: Engine | None = None) -> dict:
    """Run (or resume) the augment step; returns the stats written to ``stats.json``.

    ``engine`` replaces the configured one (tests, notebooks); it is not closed here.
    """

    ctx = ctx or RunContext()
    progress = progress or Progress(enabled=False)
    out = OutputDir(cfg.output)
    out.prepare(plan_fingerprint(cfg), cfg.where)
    done_blocks = out.done_blocks()
    skipped: dict = {}
    pending_entries: dict[int, list[Entry]] = {}
    seen = {"blocks": 0}

    def pending() -> Iterator[BlockInput]:
        for k, docs in iter_blocks(iter_documents(cfg, skipped), cfg.block_size):
            seen["blocks"] = k + 1
            if not ctx.owns(k) or k in done_blocks:
                continue
            done = out.block_parts(k)
            pending_entries[k] = [e for entries in done.values() for e in entries]
            yield BlockInput(k, docs, done)

    settings = Settings.of(cfg)
    if cfg.ray is not None:
        if engine is not None:
            raise InstmixError("a given engine cannot run on Ray; drop 'ray' from the config")

        executor = RayExecutor(settings, cfg.ray)
    else:
        executor = LocalExecutor(settings, engine)
    session = _Session(ctx)
    bar = progress.bar("augment", unit="text")
    finished = False
    try:
        for item in executor.run(pending()):
            if isinstance(item, Part):
                out.write_part(item.name, item.entries)
                pending_entries.setdefault(item.block, []).extend(item.entries)
                session.add(item)
                snap = session.snapshot()
                bar.update(len(item.entries))
                bar.set_postfix_str(f"{snap['generated_tokens_per_s']:,.0f} gen tok/s")
                out.write_session(session.file, snap)
            else:
                entries = pending_entries.pop(item.block)
                out.mark_done(item.block, {"block": item.block, **block_stats(
                    entries, docs=item.docs, split_docs=item.split_docs)})
                out.write_session(session.file, session.snapshot())
        finished = True
    finally:
        bar.close()
        executor.close()
        out.write_session(session.file, session.snapshot())
    stats = collect_stats(out, skipped if finished else None, seen["blocks"] if finished
                          else None)
    out.write_stats(stats)
    return stats


def collect_stats(out: OutputDir, skipped: dict | None, blocks: int | None) -> dict:
    """``stats.json``: totals over finished blocks, the input's skipped records and the
    throughput of every session."""
    done = out.read_state("block-")
    sessions = out.read_state("session-")
    totals = merge({k: v for k, v in b.items() if k != "block"} for b in done)
    return {
        "blocks_done": len(done),
        "blocks_total": blocks,
        "complete": blocks is not None and len(done) == blocks,
        "totals": totals,
        "input_skipped": skipped,
        "sessions": sessions,
    }
