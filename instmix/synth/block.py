"""One block: segment its documents, then run its M rounds part by part.

Each round's prompts are sorted by length (longest first), cut into batches of
``batch_size`` and checkpointed every ``batches_per_part`` batches as one :class:`Part`.
Parts already on disk (``BlockInput.done``) are taken as they are: they rebuild the chains,
and only the missing parts are generated, exactly as they would have been.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from instmix.errors import InstmixError

from .chain import Entry, chunk_bounds, make_entry, next_chains, plan_round
from .config import AugmentConfig, SynthesizerConfig
from .engines.base import BatchTimes, Engine, Request, run_batches
from .output import part_name
from .prompt import PromptEncoder, build_prompt
from .segment import segment_documents
from .tokenizer import SynthTokenizer


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
