"""One block's chains: which prompt each slot needs next, and which parts are complete.

A block's N texts are cut into M round chunks of ``B = ceil(N/M)``; slot j holds text j of
every chunk (see :mod:`.chain`). A slot's round r+1 prompt can be planned as soon as its
round-r entry exists, whatever the rest of the round is doing. Parts are positional: part
p of round r holds the entries of positions ``[p*C, (p+1)*C)`` of that round
(``C = checkpoint_every``), in position order, so a part's name and content depend only on
the plan and the engine's answers, never on timing. Parts already on disk
(``BlockInput.done``) are taken as they are: they rebuild the chains, and only missing
entries are generated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from instmix.errors import InstmixError

from .chain import Entry, Planned, chunk_bounds, extend_chain, make_entry, missing_demos, plan_one
from .config import AugmentConfig, SynthesizerConfig
from .engines.base import Result
from .output import PART_RE, part_name
from .prompt import PromptEncoder
from .segment import Text, segment_documents
from .tokenizer import SynthTokenizer

SCHEDULES = ("continuous", "barrier")


@dataclass(frozen=True)
class Settings:
    """What a block needs from the config (small and picklable).

    ``schedule`` ``barrier`` is the scheduler as it was before continuous chains (one block
    at a time, each round after the previous one, prompts longest first in calls of
    ``batch_size``); it is kept for benchmarks only.
    """

    synthesizer: SynthesizerConfig
    rounds: int
    checkpoint_every: int
    where: str = "<dict>"
    max_failure_rate: float = 0.1
    schedule: str = "continuous"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")

    @classmethod
    def of(cls, cfg: AugmentConfig) -> Settings:
        return cls(cfg.synthesizer, cfg.rounds, cfg.checkpoint_every, cfg.where,
                   cfg.max_failure_rate)


@dataclass(frozen=True)
class BlockInput:
    block: int
    docs: list[tuple[str, str]]
    done: Mapping[str, Sequence[Entry]] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """A finished checkpoint: the entries of some positions of one round of one block.
    ``cache[i]`` is ``(cached_tokens, reusable_tokens)`` of entry i (None: unknown);
    timing facts, kept out of the part file."""

    block: int
    round: int
    index: int
    entries: tuple[Entry, ...]
    cache: tuple[tuple[int | None, int | None], ...] = ()

    @property
    def name(self) -> str:
        return part_name(self.block, self.round, self.index)


@dataclass(frozen=True)
class BlockEnd:
    """A block is complete; ``parts`` names all of its part files."""

    block: int
    docs: int
    split_docs: int
    parts: tuple[str, ...] = ()


def make_encoder(synth: SynthesizerConfig, where: str = "<dict>") -> PromptEncoder:
    tok = SynthTokenizer(synth.tokenizer, bos_token=synth.bos_token, eos_token=synth.eos_token,
                         where=where)
    return PromptEncoder(tok, synth.prompt_limit)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


Segmented = tuple[list[Text], dict[str, list[int]], int]


class BlockState:
    """The chains of one block. ``barrier``: a round's prompts are released only when the
    previous round is complete (the old scheduler)."""

    def __init__(self, inp: BlockInput, settings: Settings, encoder: PromptEncoder,
                 segmented: Segmented | None = None, *, barrier: bool = False):
        self.block = inp.block
        self.docs = len(inp.docs)
        self.encoder = encoder
        self.barrier = barrier
        texts, self.ctx, self.split_docs = segmented or segment_documents(inp.docs, encoder)
        self.texts = texts
        bounds = chunk_bounds(len(texts), settings.rounds)
        self.starts = [a for a, _ in bounds]
        self.lens = [b - a for a, b in bounds]
        self.every = settings.checkpoint_every
        self.entries: dict[tuple[int, int], Entry] = {}
        self.cache: dict[tuple[int, int], tuple[int | None, int | None]] = {}
        self.part_left: dict[tuple[int, int], int] = {}
        for r, n in enumerate(self.lens):
            for p in range(-(-n // self.every)):
                self.part_left[(r, p)] = min(self.every, n - p * self.every)
        self.on_disk: set[tuple[int, int]] = set()
        size = self.lens[0] if self.lens else 0
        self.chains: list[tuple[Entry, ...]] = [()] * size
        self.prev_prompt: list[list[int] | None] = [None] * size
        self.demo_cache: dict[str, list[int]] = {}
        self.deferred: list[int] = []
        self._load(inp.done)
        self.round_done = [sum((r, j) in self.entries for j in range(n))
                           for r, n in enumerate(self.lens)]

    def _load(self, done: Mapping[str, Sequence[Entry]]) -> None:
        for name, got in done.items():
            m = PART_RE.match(name)
            r, p = int(m.group(2)), int(m.group(3))
            want = [self.texts[self.starts[r] + j].id for j in self._positions(r, p)] \
                if (r, p) in self.part_left else []
            if [e.id for e in got] != want:
                raise InstmixError(f"{name}: holds other texts than this run plans "
                                   "(did the inputs or settings change?)")
            for j, e in zip(self._positions(r, p), got):
                self.entries[(r, j)] = e
            self.part_left[(r, p)] = 0
            self.on_disk.add((r, p))

    def _positions(self, r: int, p: int) -> range:
        return range(p * self.every, min((p + 1) * self.every, self.lens[r]))

    def end(self) -> BlockEnd:
        return BlockEnd(self.block, self.docs, self.split_docs,
                        tuple(part_name(self.block, r, p) for r, p in sorted(self.part_left)))

    @property
    def complete(self) -> bool:
        return all(v == 0 for v in self.part_left.values())

    def start(self) -> list[int]:
        """Replay the entries already on disk; the slots that need a prompt now."""
        slots = []
        for j in range(len(self.chains)):
            r = 0
            while (r, j) in self.entries:
                self.chains[j] = extend_chain(self.chains[j], self.entries[(r, j)])
                r += 1
            if r < len(self.lens) and j < self.lens[r]:
                slots.append(j)
        if self.barrier:
            first = min((self._round(j) for j in slots), default=0)
            self.deferred = [j for j in slots if self._round(j) != first]
            slots = [j for j in slots if self._round(j) == first]
        return slots

    def _round(self, j: int) -> int:
        r = 0
        while (r, j) in self.entries:
            r += 1
        return r

    def plan(self, slots: Sequence[int]) -> list[Planned]:
        """The next prompt of each slot; demonstrations encoded in one batch."""
        chains = [self.chains[j] for j in slots]
        todo = missing_demos(chains, self.demo_cache)
        for e, ids in zip(todo, self.encoder.demo_ids([e.demo for e in todo])):
            self.demo_cache[e.id] = ids
        plans = []
        for j, chain in zip(slots, chains):
            text = self.texts[self.starts[self._round(j)] + j]
            plans.append(plan_one(j, text, chain, self.ctx[text.id], self.encoder,
                                  self.demo_cache))
        return plans

    def round_of(self, plan: Planned) -> int:
        return self._round(plan.position)

    def finish(self, r: int, plan: Planned, res: Result) -> tuple[list[Part], list[int]]:
        """Record the result of slot ``plan.position``'s round-``r`` prompt; returns the
        parts it completes and the slots that now need a prompt."""
        j = plan.position
        e = make_entry(plan, r, res.text, res.output_tokens, res.finish_reason, res.error)
        self.entries[(r, j)] = e
        prev = self.prev_prompt[j]
        reusable = common_prefix(plan.prompt_ids, prev) if plan.fresh is None and prev \
            else (0 if plan.fresh is not None else None)
        self.cache[(r, j)] = (res.cached_tokens, reusable)
        self.prev_prompt[j] = list(plan.prompt_ids)
        self.chains[j] = extend_chain(self.chains[j], e)
        parts = []
        key = (r, j // self.every)
        self.part_left[key] -= 1
        if self.part_left[key] == 0 and key not in self.on_disk:
            pos = self._positions(*key)
            parts.append(Part(self.block, r, key[1], tuple(self.entries[(r, i)] for i in pos),
                              tuple(self.cache.get((r, i), (None, None)) for i in pos)))
            for i in pos:
                self.cache.pop((r, i), None)
        self.round_done[r] += 1
        while (r + 1, j) in self.entries:  # a later entry already on disk
            r += 1
            self.chains[j] = extend_chain(self.chains[j], self.entries[(r, j)])
        nxt = [j] if r + 1 < len(self.lens) and j < self.lens[r + 1] else []
        if not nxt:
            self._release(j)
        if self.barrier:
            self.deferred.extend(nxt)
            nxt = []
            if self.round_done[e.round] == self.lens[e.round]:
                nxt, self.deferred = self.deferred, []
        return parts, nxt

    def _release(self, j: int) -> None:
        """Slot j's chain is over: drop what only it needed."""
        for e in self.chains[j]:
            self.demo_cache.pop(e.id, None)
        self.prev_prompt[j] = None
