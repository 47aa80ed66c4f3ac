"""``instmix augment``: sources -> blocks -> M rounds of prompts -> checkpointed parts.

Documents are read in source order and grouped into blocks of ``block_size`` documents;
block k belongs to rank ``k % world_size``. A block is segmented and chained on its own
(:class:`BlockJob`); each round's prompts are sorted by length (longest first), cut into
batches of ``batch_size`` and checkpointed every ``ceil(checkpoint_every / batch_size)``
batches as one part file. On restart, finished blocks are skipped, finished parts are read
back (they rebuild the chains) and the remaining parts run exactly as they would have.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InstmixError
from .chain import Entry, chunk_bounds, make_entry, next_chains, plan_round
from .config import AugmentConfig, SynthesizerConfig
from .engines.base import BatchTimes, Engine, Request, create_engine, run_batches
from .output import OutputDir, part_name
from .prompt import PromptEncoder, build_prompt
from .segment import segment_documents
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


@dataclass(frozen=True)
class Settings:
    """What a block job needs from the config (small and picklable)."""

    synthesizer: SynthesizerConfig
    rounds: int
    batches_per_part: int
    where: str = "<dict>"

    @classmethod
    def of(cls, cfg: AugmentConfig) -> Settings:
        return cls(cfg.synthesizer, cfg.rounds, cfg.batches_per_part, cfg.where)


@dataclass(frozen=True)
class BlockInput:
    block: int
    docs: list[tuple[str, str]]
    done: Mapping[str, Sequence[Entry]] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """A finished checkpoint: the entries of some batches of one round of one block."""

    block: int
    round: int
    index: int
    entries: tuple[Entry, ...]
    engine_seconds: float = 0.0

    @property
    def name(self) -> str:
        return part_name(self.block, self.round, self.index)


@dataclass(frozen=True)
class BlockEnd:
    block: int
    docs: int
    split_docs: int


def make_encoder(synth: SynthesizerConfig, where: str = "<dict>") -> PromptEncoder:
    from .tokenizer import SynthTokenizer

    tok = SynthTokenizer(synth.tokenizer, bos_token=synth.bos_token, eos_token=synth.eos_token,
                         where=where)
    return PromptEncoder(tok, synth.prompt_limit)


class BlockJob:
    """Segment one block's documents, then run its rounds part by part."""

    def __init__(self, inp: BlockInput, settings: Settings, encoder: PromptEncoder):
        self.inp = inp
        self.settings = settings
        self.encoder = encoder
        self.texts, self.ctx_ids, self.split_docs = segment_documents(inp.docs, encoder)

    def run(self, engine: Engine) -> Iterator[Part | BlockEnd]:
        """Yield each part that had to be generated, then a :class:`BlockEnd`."""
        s = self.settings
        synth = s.synthesizer
        text_prompts = synth.engine == "openai" and synth.prompt_format == "text"
        chains: list[tuple[Entry, ...]] = []
        demo_cache: dict[str, list[int]] = {}
        for r, (a, b) in enumerate(chunk_bounds(len(self.texts), s.rounds)):
            plans = plan_round(self.texts[a:b], chains, self.ctx_ids, self.encoder, demo_cache)
            order = sorted(plans, key=lambda p: (-len(p.prompt_ids), p.position))
            bs = synth.batch_size
            batches = [order[i:i + bs] for i in range(0, len(order), bs)]
            entries: dict[str, Entry] = {}
            step = s.batches_per_part
            for index, k in enumerate(range(0, len(batches), step)):
                group = batches[k:k + step]
                name = part_name(self.inp.block, r, index)
                expected = {p.text.id for batch in group for p in batch}
                if name in self.inp.done:
                    got = self.inp.done[name]
                    if {e.id for e in got} != expected or len(got) != len(expected):
                        raise InstmixError(f"{name}: holds other texts than this run plans "
                                           "(did the inputs or settings change?)")
                    entries.update((e.id, e) for e in got)
                    continue
                requests = [[Request(p.text.id, p.prompt_ids,
                                     build_prompt(p.text.text, [d.demo for d in p.demos])
                                     if text_prompts else "") for p in batch] for batch in group]
                times = BatchTimes()
                results = run_batches(engine, requests, synth.prompt_limit, times)
                made = []
                for p in sorted((p for batch in group for p in batch), key=lambda p: p.position):
                    res = results[p.text.id]
                    made.append(make_entry(p, r, res.text, res.output_tokens,
                                           res.finish_reason, res.error))
                entries.update((e.id, e) for e in made)
                yield Part(self.inp.block, r, index, tuple(made), times.seconds)
            chains = next_chains(plans, entries)
        yield BlockEnd(self.inp.block, len(self.inp.docs), self.split_docs)


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


def iter_documents(cfg: AugmentConfig, skipped: dict) -> Iterator[tuple[str, str]]:
    """``(source_id, text)`` of every document, in source and file order."""
    from ..builder import source_units
    from ..kinds import get_kind

    for i, src in enumerate(cfg.sources):
        kind = get_kind(src.kind)
        stats = skipped.setdefault(src.name, {})
        for paths, label in source_units(src, cfg.where, i):
            for doc in kind.documents(src, paths, label, skip_bad=cfg.skip_bad_records,
                                      stats=stats):
                yield f"{src.name}/{doc.id}", doc.text


def iter_blocks(docs: Iterator[tuple[str, str]], size: int
                ) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    block: list[tuple[str, str]] = []
    k = 0
    for doc in docs:
        block.append(doc)
        if len(block) == size:
            yield k, block
            block, k = [], k + 1
    if block:
        yield k, block


def plan_fingerprint(cfg: AugmentConfig) -> dict:
    """Everything that decides which entries exist and which part holds them."""
    from ..builder import source_units
    from ..cache import format_key, hash_input
    from ..tokenizer import sha256_file, tokenizer_json_path

    s = cfg.synthesizer
    sources = []
    for i, src in enumerate(cfg.sources):
        units = source_units(src, cfg.where, i)
        sources.append({"name": src.name, "format": format_key(src),
                        "inputs": [[label, [hash_input(p) for p in paths]]
                                   for paths, label in units]})
    return {"format": "instmix-augment", "version": 1, "rounds": cfg.rounds,
            "block_size": cfg.block_size, "checkpoint_every": cfg.checkpoint_every,
            "batch_size": s.batch_size, "max_model_len": s.max_model_len,
            "max_new_tokens": s.max_new_tokens,
            "tokenizer_sha256": sha256_file(tokenizer_json_path(s.tokenizer)),
            "sources": sources}


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
    from ..progress import Progress

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
        from .ray_exec import RayExecutor

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
