"""One virtual stream of a :class:`~instmix.serve.streaming.StreamingMixture`.

A mixture has ``S`` virtual streams. Each input record belongs to exactly one: record
``j`` (0-based, in file order) of a source's unit ``u`` belongs to stream
``(j + offset(seed, source, u)) mod S``, so the streams partition every source into
disjoint, nearly equal parts (records of other streams are not parsed). A stream is the
builder's exact deficit-scheduled mixture over its parts, restorable at document starts:

1. Each part streams its documents pass after pass: the units of a pass in an order seeded
   by ``(seed, epoch, source, pass)``, each unit read in blocks of ``block_size`` of the
   stream's documents, each block tokenized in one batch and served in a seeded order.
   Memory holds one block per source and stream, whatever the corpus size.
2. :class:`~instmix.mix.schedule.DeficitScheduler` picks the source of the next document.
   A part that reaches its repetition cap (``max_repetition`` passes over the part, counted
   in tokens once its first pass is known) leaves the stream; without ``total_tokens`` the
   first cap ends the stream.

Tokenizer checks (a sample of every block re-encoded with the reference tokenizer, see
:mod:`instmix.tokenize.encoder`) count per stream, and a fallback to the reference is part
of the stream's state, so every reader of a stream packs the same tokens.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Iterator, Mapping
from fractions import Fraction
from math import floor

import numpy as np

from instmix.config import BuildConfig
from instmix.errors import InstmixError
from instmix.mix.plan import name_seed
from instmix.mix.schedule import DeficitScheduler
from instmix.sources.registry import get_kind
from instmix.tokenize.encoder import Encoder
from instmix.tokenize.facts import TokenizerInfo
from instmix.tokenize.framing import encode_documents

log = logging.getLogger(__name__)


def _rng(*parts: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(parts))))


def part_offset(seed: int, source: str, label: str, streams: int) -> int:
    """The stream of record 0 of a unit; record ``j`` goes to ``(offset + j) mod streams``."""
    digest = hashlib.sha256(f"instmix-streams:{seed}:{source}:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % streams


class _StreamEncoder:
    """The encoder as one stream uses it: checks counted in the stream's state
    (``{"checked", "reference"}``), a fallback to the reference kept there."""

    def __init__(self, encoder: Encoder, state: dict):
        self.encoder, self.state = encoder, state

    def encode(self, texts: list[str], strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        enc, st = self.encoder, self.state
        if st["reference"] or enc.fast is None or not texts:
            return enc.encode_ref(texts)
        ids, lengths = enc.fast.encode(texts)
        if enc.check_stride:
            enc.checked = st["checked"]
            ok = enc._sample_ok(texts, ids, lengths)
            st["checked"] = enc.checked
            if not ok:
                st["reference"] = True
                log.warning("the tiktoken backend disagreed with tokenizers on %s; this "
                            "stream uses tokenizers from now on", enc.info.path)
                return enc.encode_ref(texts)
        return ids, lengths


class SourcePart:
    """One stream's part of one source: its documents in stream order, with a small state."""

    def __init__(self, index: int, cfg: BuildConfig, units: list, info: TokenizerInfo,
                 encoder: _StreamEncoder, seed: int, epoch: int, block: int, stream: int,
                 streams: int):
        self.src = cfg.sources[index]
        self.units = units
        self.info, self.encoder = info, encoder
        self.seed, self.epoch, self.block = seed, epoch, block
        self.stream, self.streams = stream, streams
        self.skip_bad = cfg.skip_bad_records
        self.kind = get_kind(self.src.kind)
        # kinds that read records themselves (not Kind.documents) are split by document
        self.by_record = "select" in inspect.signature(self.kind.documents).parameters
        self.cap = Fraction(str(self.src.max_repetition))
        self.state = {"pass": 0, "unit": 0, "block": 0, "in_block": 0, "emitted": 0,
                      "pass_tokens": 0, "available": None, "counted": 0, "skipped": {}}
        self._docs: Iterator | None = None
        self._buf: list | None = None  # the current block, in serving order
        self._io: dict = {}  # records skipped since the last block was loaded

    def _unit_order(self, pass_no: int) -> np.ndarray:
        return _rng(self.seed, self.epoch, name_seed(self.src.name), pass_no).permutation(
            len(self.units))

    def _open_unit(self) -> Iterator:
        paths, label = self.units[int(self._unit_order(self.state["pass"])[self.state["unit"]])]
        off, S, mine = part_offset(self.seed, self.src.name, label, self.streams), \
            self.streams, self.stream
        if self.by_record:
            return self.kind.documents(self.src, paths, label, skip_bad=self.skip_bad,
                                       stats=self._io,
                                       select=lambda j: (j + off) % S == mine)
        docs = self.kind.documents(self.src, paths, label, skip_bad=self.skip_bad,
                                   stats=self._io)
        return (d for j, d in enumerate(docs) if (j + off) % S == mine)

    def _load_block(self) -> bool:
        """Read and tokenize the block at the state's position; False past the unit's end."""
        st = self.state
        if self._docs is None:
            self._docs = self._open_unit()
            for _ in range(st["block"] * self.block):  # re-reading to a block: no tokenizing
                if next(self._docs, None) is None:
                    return False
            self._io.clear()  # counted when those blocks were first read
        docs = []
        for doc in self._docs:
            docs.append(doc)
            if len(docs) == self.block:
                break
        if st["block"] >= st["counted"]:  # a block read again after a restore counts once
            for k, v in self._io.items():
                st["skipped"][k] = st["skipped"].get(k, 0) + v
            st["counted"] = st["block"] + 1
        self._io.clear()
        if not docs:
            return False
        pieces = encode_documents(docs, self.encoder, self.info, self.src.loss).split()
        order = _rng(self.seed, self.epoch, name_seed(self.src.name), st["pass"], st["unit"],
                     st["block"], self.stream).permutation(len(pieces))
        self._buf = [pieces[i] for i in order]
        return True

    def _next_unit(self) -> None:
        st = self.state
        self._docs, self._buf = None, None
        st["unit"] += 1
        st["block"] = st["in_block"] = st["counted"] = 0
        if st["unit"] == len(self.units):
            if st["pass_tokens"] == 0:
                raise InstmixError(f"source '{self.src.name}': no documents in stream "
                                   f"{self.stream} of {self.streams} (a source needs at least "
                                   "as many records as streams: use fewer streams)")
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
        self.state = {**state, "skipped": dict(state["skipped"])}
        self._docs = self._buf = None

    def take(self):
        doc = self.peek()
        st = self.state
        st["in_block"] += 1
        st["emitted"] += len(doc[0])
        st["pass_tokens"] += len(doc[0])
        return doc


class Stream:
    """Stream ``stream`` of ``streams``: parts -> deficit schedule -> documents, restorable
    at document starts."""

    def __init__(self, mix, epoch: int, stream: int):
        cfg = mix.config
        self.tok = {"checked": 0, "reference": False}
        encoder = _StreamEncoder(mix.encoder(), self.tok)
        self.parts = [SourcePart(i, cfg, mix.units[i], mix.info, encoder, mix.seed, epoch,
                                 mix.block_size, stream, mix.streams)
                      for i in range(len(cfg.sources))]
        self.weights = [s.weight for s in cfg.sources]
        self.sched = DeficitScheduler(self.weights)
        self.open_ended = cfg.total_tokens is None  # then the first cap ends the stream
        self.done = [w == 0 for w in self.weights]
        self.finished = False

    def snapshot(self) -> dict:
        return {"sources": [{**p.state, "skipped": dict(p.state["skipped"])}
                            for p in self.parts],
                "emitted": list(self.sched.emitted), "done": list(self.done),
                "finished": self.finished, "tokenizer": dict(self.tok)}

    def restore(self, snap: Mapping) -> None:
        for p, st in zip(self.parts, snap["sources"]):
            p.restore(st)
        self.sched.load({"emitted": snap["emitted"]})
        self.done = list(snap["done"])
        self.finished = snap["finished"]
        self.tok.update(snap["tokenizer"])

    def next_doc(self):
        """(source index, tokens, mask) of the next document, or None at the stream's end."""
        while not self.finished:
            s = self.sched.pick([not d for d in self.done])
            if s < 0:
                self.finished = True
                return None
            doc = self.parts[s].peek()
            if doc is None:  # cap reached
                if self.open_ended:
                    self.finished = True
                    return None
                self.done[s] = True
                continue
            self.parts[s].take()
            self.sched.emit(s, len(doc[0]))
            return s, doc[0], doc[1]
        return None
