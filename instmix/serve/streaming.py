"""``StreamingMixture``: packed sequences straight from text, no build step.

Takes the same config as ``instmix build``. Every DataLoader worker runs the same
deterministic pipeline and materialises only the sequences assigned to it
(:mod:`instmix.serve.sharding`):

1. Each source streams its documents pass after pass: the files (cache units) of a pass in
   an order seeded by ``(seed, epoch, source, pass)``, each file read in blocks of
   ``block_size`` documents, each block tokenized in one batch and served in a seeded order.
   Memory holds one block per source, whatever the corpus size.
2. The deficit schedule of the builder (:class:`~instmix.mix.schedule.DeficitScheduler`) picks
   the source of the next document, so the running token share of every source stays
   within about one document of its target at every prefix.
3. Documents are packed back to back into ``seq_len`` sequences (``doc_lens`` records the
   pieces; a document may continue into the next sequence).

The stream ends when every source has reached its share of ``total_tokens`` (a source stops
at the document boundary closest to its target), or, without ``total_tokens``, when the
first source reaches its repetition cap (``max_repetition`` passes, counted in tokens once
the first pass is known; caps below 1 need a build). Resume states are snapshots of the
pipeline at a sequence boundary (positions in the files, the scheduler's counts, the offset
into the current document): small, and restored by re-reading at most one block per source.

Every worker reads and tokenizes the whole stream, so throughput is that of one tokenizer
(about 1-3 M tokens/s with the tiktoken backend) whatever the worker count; build shards
for more.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from fractions import Fraction
from math import floor

import numpy as np
import torch

from instmix.config import BuildConfig, load_config
from instmix.errors import ConfigError, InstmixError
from instmix.io import fs
from instmix.mix.plan import name_seed
from instmix.mix.schedule import DeficitScheduler
from instmix.sources.registry import get_kind
from instmix.sources.units import source_units
from instmix.tokenize.encoder import Encoder
from instmix.tokenize.facts import TokenizerInfo, load_tokenizer_info
from instmix.tokenize.framing import encode_documents

from .packer import END, Packer, stack
from .sharding import RuntimeContext, current_worker, distributed_defaults
from .state import CursorDataset


def _rng(*parts: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(parts))))


class _SourceStream:
    """One source's tokenized documents in stream order, with a small restorable state."""

    def __init__(self, index: int, cfg: BuildConfig, units: list, info: TokenizerInfo,
                 encoder: Encoder, seed: int, epoch: int, block: int):
        self.src = cfg.sources[index]
        self.units = units
        self.info, self.encoder = info, encoder
        self.seed, self.epoch, self.block = seed, epoch, block
        self.skip_bad = cfg.skip_bad_records
        self.kind = get_kind(self.src.kind)
        self.cap = Fraction(str(self.src.max_repetition))
        self.state = {"pass": 0, "unit": 0, "block": 0, "in_block": 0, "emitted": 0,
                      "pass_tokens": 0, "available": None}
        self._docs: Iterator | None = None
        self._buf: list | None = None  # the current block, in serving order

    # The order of units in a pass and of documents in a block are seeded permutations.
    def _unit_order(self, pass_no: int) -> np.ndarray:
        return _rng(self.seed, self.epoch, name_seed(self.src.name), pass_no).permutation(
            len(self.units))

    def _load_block(self) -> bool:
        """Read and tokenize the block at the state's position; False past the unit's end."""
        st = self.state
        if self._docs is None:
            paths, label = self.units[int(self._unit_order(st["pass"])[st["unit"]])]
            self._docs = self.kind.documents(self.src, paths, label, skip_bad=self.skip_bad,
                                             stats={})
            for _ in range(st["block"] * self.block):  # re-reading to a block: no tokenizing
                if next(self._docs, None) is None:
                    return False
        docs = []
        for doc in self._docs:
            docs.append(doc)
            if len(docs) == self.block:
                break
        if not docs:
            return False
        pieces = encode_documents(docs, self.encoder, self.info, self.src.loss).split()
        order = _rng(self.seed, self.epoch, name_seed(self.src.name), st["pass"], st["unit"],
                     st["block"]).permutation(len(pieces))
        self._buf = [pieces[i] for i in order]
        return True

    def _next_unit(self) -> None:
        st = self.state
        self._docs, self._buf = None, None
        st["unit"] += 1
        st["block"] = st["in_block"] = 0
        if st["unit"] == len(self.units):
            if st["pass_tokens"] == 0:
                raise InstmixError(f"source '{self.src.name}': no documents")
            if st["available"] is None:
                st["available"] = st["pass_tokens"]
            st["pass"] += 1
            st["unit"] = 0
            st["pass_tokens"] = 0

    def peek(self):
        """The next document ``(tokens, mask)`` without taking it; None at the cap."""
        st = self.state
        while True:
            if self._buf is None and not self._load_block():
                self._next_unit()
                continue
            if st["in_block"] < len(self._buf):
                break
            st["block"] += 1  # block used up
            st["in_block"] = 0
            self._buf = None
        doc = self._buf[st["in_block"]]
        avail = st["available"]
        if avail is not None and st["emitted"] + len(doc[0]) > floor(self.cap * avail):
            return None  # the repetition cap
        return doc

    def restore(self, state: dict) -> None:
        self.state = dict(state)
        self._docs = self._buf = None

    def take(self):
        doc = self.peek()
        st = self.state
        st["in_block"] += 1
        st["emitted"] += len(doc[0])
        st["pass_tokens"] += len(doc[0])
        return doc


class _Pipeline:
    """Sources -> deficit schedule -> documents, restorable at document starts."""

    def __init__(self, mix: StreamingMixture, epoch: int):
        cfg = mix.config
        encoder = mix.encoder()
        self.streams = [_SourceStream(i, cfg, mix.units[i], mix.info, encoder, mix.seed, epoch,
                                      mix.block_size) for i in range(len(cfg.sources))]
        self.weights = [s.weight for s in cfg.sources]
        self.sched = DeficitScheduler(self.weights)
        total = cfg.total_tokens
        norm = sum(self.weights, Fraction(0))
        self.targets = [None if total is None else floor(w / norm * total) for w in self.weights]
        self.done = [w == 0 for w in self.weights]
        self.finished = False

    def snapshot(self) -> dict:
        return {"sources": [dict(s.state) for s in self.streams],
                "emitted": list(self.sched.emitted), "done": list(self.done),
                "finished": self.finished}

    def restore(self, snap: Mapping) -> None:
        for s, st in zip(self.streams, snap["sources"]):
            s.restore(st)
        self.sched.load({"emitted": snap["emitted"]})
        self.done = list(snap["done"])
        self.finished = snap["finished"]

    def next_doc(self):
        """(source index, tokens, mask) of the next document, or None at the stream's end."""
        while not self.finished:
            s = self.sched.pick([not d for d in self.done])
            if s < 0:
                self.finished = True
                return None
            doc = self.streams[s].peek()
            if doc is None:  # cap reached
                if self.targets[s] is None:
                    self.finished = True  # without total_tokens the first cap ends the mix
                    return None
                self.done[s] = True
                continue
            target, have = self.targets[s], self.sched.emitted[s]
            if target is not None and have + len(doc[0]) > target and have > 0 and \
                    have + len(doc[0]) - target > target - have:
                self.done[s] = True  # stopping here lands closer to the target
                continue
            self.streams[s].take()
            self.sched.emit(s, len(doc[0]))
            if target is not None and self.sched.emitted[s] >= target:
                self.done[s] = True
            return s, doc[0], doc[1]
        return None


class StreamingMixture(CursorDataset):
    """Packed ``seq_len`` sequences mixed by tokens from the sources of a build config."""

    def __init__(self, config: str | os.PathLike | Mapping | BuildConfig, seq_len: int, *,
                 seed: int | None = None, rank: int | None = None,
                 world_size: int | None = None, block_size: int = 256, drop_last: bool = True):
        cfg = config if isinstance(config, BuildConfig) else load_config(config)
        if seq_len < 1:
            raise InstmixError(f"seq_len must be >= 1, got {seq_len}")
        cleaning = [k for k, on in (("dedup", cfg.dedup), ("decontaminate", cfg.decontaminate))
                    if on] + [f"sources[{i}].filters" for i, s in enumerate(cfg.sources)
                              if s.filters]
        if cleaning:
            raise ConfigError(cfg.where, cleaning[0], "StreamingMixture does not clean (dedup "
                              "and decontamination need the whole corpus): use instmix build")
        for i, src in enumerate(cfg.sources):
            if src.ratio > 0 and src.max_repetition < 1:
                raise ConfigError(cfg.where, f"sources[{i}].max_repetition",
                                  "StreamingMixture needs >= 1 (a fractional pass below one "
                                  "needs the source's size: use instmix build)")
        self.config = cfg
        self.seq_len = seq_len
        self.seed = cfg.seed if seed is None else seed
        self.rank, self.world_size = distributed_defaults(rank, world_size)
        RuntimeContext(self.rank, self.world_size)
        self.block_size = block_size
        self.drop_last = drop_last
        self.epoch = 0
        self.units = [source_units(s, cfg.where, i) for i, s in enumerate(cfg.sources)]
        self.info = load_tokenizer_info(cfg.tokenizer, cfg.dtype, cfg.where, cfg.storage_options)
        digest = hashlib.sha256(repr((seq_len, self.seed, block_size, drop_last,
                                      cfg.total_tokens, self.info.sha256)).encode())
        for src, units in zip(cfg.sources, self.units):
            digest.update(repr((src.name, src.kind, src.ratio, src.max_repetition, src.loss,
                                src.text_field, src.question_field, src.response_field)).encode())
            for paths, _ in units:
                for p in paths:
                    digest.update(fs.stamp(p, cfg.storage_options).encode())
        self.fingerprint = digest.hexdigest()[:32]
        self._encoder: Encoder | None = None
        self._skip = self._yielded = 0

    def encoder(self) -> Encoder:
        if self._encoder is None:  # per process: workers build their own
            self._encoder = Encoder(self.info, self.config.tokenizer.backend,
                                    self.config.tokenizer.check_rate, threads=1)
        return self._encoder

    def __getstate__(self):
        return {**self.__dict__, "_encoder": None}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    # -- the sequence stream ---------------------------------------------------------------
    def _packer(self, cursor: dict) -> Packer:
        packer = Packer(self, _Pipeline(self, cursor["epoch"]), cursor["consumed"])
        if cursor.get("snapshot"):
            packer.restore(cursor["snapshot"])
        return packer

    def iter_batches(self, cursor: dict, batch_size: int, ctx: RuntimeContext,
                     drop_last: bool = False) -> Iterator[tuple[dict, dict]]:
        """This rank's and worker's batches from ``cursor``, each with the cursor at the end
        of its global step (see :class:`instmix.DataLoader`)."""
        packer = self._packer(cursor)
        per_step = ctx.world_size * batch_size
        start = cursor["consumed"]
        k = ctx.worker
        while True:
            base = start + k * per_step
            lo, hi = base + ctx.rank * batch_size, base + (ctx.rank + 1) * batch_size
            items = []
            while packer.pos < base + per_step:
                p = packer.pos
                item = packer.next_sequence(lo <= p < hi)
                if item is END:
                    break
                if item is not None:
                    items.append(item)
            ended = packer.pos < base + per_step
            if items and not (drop_last and ended):
                end = {"epoch": cursor["epoch"], "consumed": packer.pos,
                       "snapshot": packer.snapshot()}
                yield end, stack(items)
            if ended:
                return
            k += ctx.num_workers

    def initial_cursor(self) -> dict:
        return {"epoch": self.epoch, "consumed": 0, "snapshot": None}

    def next_epoch(self, cursor: dict) -> dict:
        self.set_epoch(cursor["epoch"] + 1)
        return {"epoch": cursor["epoch"] + 1, "consumed": 0, "snapshot": None}

    def batches_left(self, cursor: dict, batch_size: int, drop_last: bool = False) -> int:
        raise TypeError("a StreamingMixture does not know its length before it has run")

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """Items of this rank and DataLoader worker, in stream order. ``doc_lens`` is
        zero-padded to ``seq_len`` (the most pieces a sequence can hold), so the default
        torch collate stacks items; batches from :class:`instmix.DataLoader` are padded to
        the widest row instead."""
        worker, workers = current_worker()
        ctx = RuntimeContext(self.rank, self.world_size, worker, workers)
        skip, self._skip = self._skip, 0
        self._yielded = 0
        for _, batch in self.iter_batches(self.initial_cursor(), 1, ctx):
            self._yielded += 1
            if self._yielded <= skip:
                continue  # resumed by a per-worker state: the stream is replayed up to here
            item = {k: v[0] for k, v in batch.items()}
            doc_lens = torch.zeros(self.seq_len, dtype=torch.int64)
            doc_lens[:len(item["doc_lens"])] = item["doc_lens"]
            item["doc_lens"] = doc_lens
            yield item
