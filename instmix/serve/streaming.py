"""``StreamingMixture``: packed sequences straight from text, no build step.

Takes the same config as ``instmix build``. The mixture is ``streams`` virtual streams
(:mod:`instmix.serve.streams`): each an exact deficit-scheduled mixture over a disjoint
part of every source, packed back to back into ``seq_len`` sequences. The global order
interleaves them: global position ``p`` is sequence ``p // S`` of stream ``p mod S``. It is
a pure function of ``(config, seed, streams)``, whatever the ranks and workers.

Who reads what. Global step ``k`` is the positions ``[k*R*B, (k+1)*R*B)`` (``R`` data-parallel
ranks, ``B`` sequences per rank). Rank ``r`` serves the positions ``p = r (mod R)`` of each
step; under :class:`instmix.DataLoader` its worker ``w`` of ``W`` serves those with
``p = r + w*R (mod R*W)`` and the loader joins the workers' parts of a step into the batch.
A reader therefore needs only the streams ``s = r + w*R (mod gcd(R*W, S))``: with ``S`` a
multiple of ``R*W`` each reader tokenizes only what it serves, so throughput grows with
readers. Otherwise readers share streams (each tokenizes the streams it needs and serves
its share of them). Under plain loaders, workers take whole ``batch_size`` chunks of the
rank's positions and read all of the rank's streams.

Length. With ``total_tokens`` every stream serves ``total_tokens // (S * seq_len)``
sequences, so the epoch's length is known before it is read (``len()``); a stream whose
parts all reach their repetition caps before that is an error. Without ``total_tokens``
(only with ``streams=1``) the stream ends when the first source reaches its cap; every
reader reads the one stream and finds the end at the same step. Either way an epoch ends
at a global step boundary (``tail``: dropped, or ``"wrap"``: completed from the epoch's
start).

Mixing bound (proved in the docs of :mod:`instmix.mix.schedule` and tested): while no part
has reached its cap, in every prefix of a stream that ends at a sequence boundary each
source's tokens are within ``B + D`` of its share, where ``B`` is the schedule's bound (``D``
for two sources, ``(k - 1) * D`` for ``k``; ``D``: the longest document) and the extra ``D``
is the document a sequence boundary cuts; so in every prefix of the global order within
``S * (B + D)``.

Resume: the cursor holds, per stream, a snapshot at the step boundary (positions in the
files, scheduler counts, the offset into the current document, skipped-record counts,
tokenizer fallback); restoring re-reads at most one block per source and stream.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Mapping
from math import gcd

import torch

from instmix.config import BuildConfig, load_config
from instmix.errors import ConfigError, InstmixError
from instmix.io.hashing import hash_input
from instmix.sources.units import source_units
from instmix.tokenize.encoder import Encoder
from instmix.tokenize.facts import load_tokenizer_info

from .packer import END, Packer, stack
from .sharding import RuntimeContext, check_tail, current_worker, data_parallel, epoch_end
from .state import POSITIONS, CursorDataset, count
from .streams import Stream


class StreamingMixture(CursorDataset):
    """Packed ``seq_len`` sequences mixed by tokens from the sources of a build config."""

    split_steps = True  # instmix.DataLoader joins the workers' parts of every step

    def __init__(self, config: str | os.PathLike | Mapping | BuildConfig, seq_len: int, *,
                 seed: int | None = None, rank: int | None = None,
                 world_size: int | None = None, device_mesh=None, dp_dim: str = "dp",
                 streams: int = 1, block_size: int = 256, drop_last: bool = True,
                 tail: str = "drop", batch_size: int = 1):
        cfg = config if isinstance(config, BuildConfig) else load_config(config)
        for name, v in (("seq_len", seq_len), ("streams", streams), ("block_size", block_size),
                        ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InstmixError(f"{name} must be an integer >= 1, got {v!r}")
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
        if streams > 1 and cfg.total_tokens is None:
            raise ConfigError(cfg.where, "total_tokens", f"needed with streams={streams} (each "
                              "stream's length is total_tokens / streams, known before it "
                              "is read); set it, or use streams=1")
        self.config = cfg
        self.seq_len = seq_len
        self.seed = cfg.seed if seed is None else seed
        self.rank, self.world_size = data_parallel(rank, world_size, device_mesh, dp_dim)
        self.mesh = (device_mesh, dp_dim) if device_mesh is not None else None  # not pickled
        RuntimeContext(self.rank, self.world_size)
        self.streams = streams
        self.block_size = block_size
        self.drop_last = drop_last
        self.tail = check_tail(tail)
        self.batch_size = batch_size
        self.epoch = 0
        self.per_stream = None if cfg.total_tokens is None else \
            cfg.total_tokens // (streams * seq_len)
        if self.per_stream == 0:
            raise ConfigError(cfg.where, "total_tokens", f"{cfg.total_tokens} is less than one "
                              f"sequence per stream ({streams} x seq_len {seq_len})")
        self.units = [source_units(s, cfg.where, i) for i, s in enumerate(cfg.sources)]
        self.info = load_tokenizer_info(cfg.tokenizer, cfg.dtype, cfg.where, cfg.storage_options)
        self.fingerprint = self._fingerprint()
        self._encoder: Encoder | None = None
        self._skip = self._yielded = 0

    def _fingerprint(self) -> str:
        """Of everything that decides the sequences: options, tokenizer and input content
        (not file names or times)."""
        cfg = self.config
        digest = hashlib.sha256(repr((self.seq_len, self.seed, self.streams, self.block_size,
                                      self.drop_last, cfg.total_tokens, cfg.skip_bad_records,
                                      self.info.sha256)).encode())
        for src, units in zip(cfg.sources, self.units):
            fields = {k: v for k, v in dataclasses.asdict(src).items()
                      if k not in ("paths", "storage_options")}  # where, not what
            digest.update(repr(sorted(fields.items(), key=lambda kv: kv[0])).encode())
            for paths, label in units:
                digest.update(label.encode() + b"\0")
                for p in paths:
                    digest.update(hash_input(p, cfg.storage_options).encode())
        return digest.hexdigest()[:32]

    @property
    def length(self) -> int | None:
        """Sequences in an epoch before the tail (None until read, without total_tokens)."""
        return None if self.per_stream is None else self.per_stream * self.streams

    def encoder(self) -> Encoder:
        if self._encoder is None:  # per process: workers build their own
            self._encoder = Encoder(self.info, self.config.tokenizer.backend,
                                    self.config.tokenizer.check_rate, threads=1)
        return self._encoder

    def __getstate__(self):
        return {**self.__dict__, "_encoder": None, "mesh": None}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    # -- reading -----------------------------------------------------------------------------
    def _packer(self, epoch: int, stream: int, snap: Mapping | None) -> Packer:
        packer = Packer(self, Stream(self, epoch, stream), 0)
        if snap is not None:
            packer.pos = snap["pos"]
            packer.restore(snap["packer"])
        return packer

    def _reader(self, cursor: dict, streams: list[int], tail: str) -> _Reader:
        snaps = cursor.get("streams") or {}
        for s in streams:
            if cursor["consumed"] and str(s) not in snaps:
                raise InstmixError(f"loader state: cursor: streams: stream {s} is missing; "
                                   "save the state on every rank (state_dict() gathers over "
                                   "torch.distributed) or join the ranks' states with "
                                   "instmix.serve.loader.merge_states")
        return _Reader(self, cursor["epoch"], tail,
                       {s: self._packer(cursor["epoch"], s, snaps.get(str(s))) for s in streams})

    def iter_batches(self, cursor: dict, batch_size: int, ctx: RuntimeContext, tail: str
                     ) -> Iterator[tuple[dict, dict]]:
        """This reader's part of every global step from ``cursor``, with the cursor (this
        reader's streams' snapshots) at the step's end; a part may be empty."""
        self.check_cursor(cursor)
        R, W = ctx.world_size, ctx.num_workers
        N, me = R * W, ctx.rank + ctx.worker * R
        g = gcd(N, self.streams)
        reader = self._reader(cursor, [s for s in range(self.streams) if s % g == me % g], tail)
        per_step = R * batch_size
        lo = cursor["consumed"]
        while True:
            hi = lo + per_step
            if not reader.step_ok(lo, hi, tail):
                return
            positions = range(lo + (me - lo) % N, hi, N)
            items = [reader.item(p) for p in positions]
            reader.advance_to(hi)
            if not reader.step_ok(lo, hi, tail):  # the end was found inside the step
                return
            end = {"epoch": cursor["epoch"], "consumed": hi,
                   "streams": {str(s): reader.snapshot(s) for s in reader.packers}}
            yield end, {**stack(items, self.seq_len),
                        POSITIONS: torch.tensor(positions, dtype=torch.int64)}
            lo = hi

    def batches_left(self, cursor: dict, batch_size: int, ctx: RuntimeContext, tail: str
                     ) -> int:
        if self.length is None:
            raise TypeError("a StreamingMixture without total_tokens does not know its length "
                            "before it has run")
        self.check_cursor(cursor)
        per_step = ctx.world_size * batch_size
        start = cursor["consumed"]
        return (epoch_end(self.length, start, per_step, tail) - start) // per_step

    def check_cursor(self, cursor: dict) -> None:
        where = "loader state: cursor"
        count(cursor, "epoch", where)
        consumed = count(cursor, "consumed", where)
        snaps = cursor.get("streams") or {}
        if not isinstance(snaps, dict):
            raise InstmixError(f"{where}: streams: not a mapping; load a state saved by this "
                               "loader, unedited")
        for key, snap in snaps.items():
            if not (isinstance(key, str) and key.isdigit() and int(key) < self.streams):
                raise InstmixError(f"{where}: streams: {key!r} is not a stream of "
                                   f"{self.streams}; load a state saved by this loader")
            _check_counts(snap, f"{where}: streams.{key}")
            want = -(-(consumed - int(key)) // self.streams) if consumed > int(key) else 0
            if snap["pos"] > want or snap["pos"] < want and self.length is not None and \
                    consumed <= self.length:
                raise InstmixError(f"{where}: consumed: {consumed} does not match stream {key} "
                                   f"at sequence {snap['pos']}; load a state saved by this "
                                   "loader, unedited")

    def initial_cursor(self) -> dict:
        return {"epoch": self.epoch, "consumed": 0, "streams": None}

    def next_epoch(self, cursor: dict) -> dict:
        self.set_epoch(cursor["epoch"] + 1)
        return {"epoch": cursor["epoch"] + 1, "consumed": 0, "streams": None}

    def __len__(self) -> int:
        """Sequences this rank reads in one epoch (needs ``total_tokens``)."""
        if self.length is None:
            raise TypeError("a StreamingMixture without total_tokens does not know its length "
                            "before it has run")
        per_step = self.world_size * self.batch_size
        return epoch_end(self.length, 0, per_step, self.tail) // self.world_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """Items of this rank and DataLoader worker: worker ``w`` takes the rank's global
        steps ``k = w (mod W)``, ``batch_size`` sequences each. ``doc_lens`` is zero-padded to
        ``seq_len`` (the most pieces a sequence can hold), so the default collate stacks
        items; batches from :class:`instmix.DataLoader` are padded to the widest row."""
        worker, workers = current_worker()
        R, r, B = self.world_size, self.rank, self.batch_size
        skip, self._skip = self._skip, 0
        self._yielded = 0
        g = gcd(R, self.streams)
        reader = self._reader(self.initial_cursor(),
                              [s for s in range(self.streams) if s % g == r % g], self.tail)
        k = worker
        while True:
            lo, hi = k * R * B, (k + 1) * R * B
            if not reader.step_ok(lo, hi, self.tail):
                return
            items = [reader.item(p) for p in range(lo + r, hi, R)]
            if self.length is None:
                reader.advance_to(hi)  # the step is whole only if the stream reaches its end
            if not reader.step_ok(lo, hi, self.tail):
                return
            for item in items:
                self._yielded += 1
                if self._yielded <= skip:
                    continue  # resumed by a per-worker state: the stream is replayed up to here
                doc_lens = torch.zeros(self.seq_len, dtype=torch.int64)
                doc_lens[:len(item["doc_lens"])] = torch.as_tensor(item["doc_lens"])
                yield {"input_ids": torch.from_numpy(item["input_ids"]),
                       "labels": torch.from_numpy(item["labels"]), "doc_lens": doc_lens,
                       "index": torch.tensor(item["index"])}
            k += workers


def _check_counts(value, where: str) -> None:
    """Every number in a stream snapshot is an integer >= 0."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_counts(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_counts(v, f"{where}[{i}]")
    elif isinstance(value, bool) or value is None:
        return
    elif not isinstance(value, int) or value < 0:
        raise InstmixError(f"{where}: {value!r} is not an integer >= 0; load a state saved "
                           "by this loader, unedited")


class _Reader:
    """The streams one reader reads, positioned by global position."""

    def __init__(self, mix: StreamingMixture, epoch: int, tail: str,
                 packers: dict[int, Packer]):
        self.mix, self.epoch, self.tail, self.packers = mix, epoch, tail, packers
        self.S = mix.streams
        self.end = mix.length  # found on reaching it when not known
        self._wrap: dict[int, Packer] = {}

    def _stream_end(self, s: int, pk: Packer) -> None:
        """Stream ``s`` ended at ``pk.pos`` sequences: the epoch ends there (one stream) or
        the stream ran dry before its length (an error)."""
        if self.mix.per_stream is None:
            self.end = pk.pos if self.end is None else min(self.end, pk.pos)
            return
        raise InstmixError(f"StreamingMixture: stream {s} ran out after {pk.pos:,} of "
                           f"{self.mix.per_stream:,} sequences (every source part reached its "
                           "max_repetition); raise max_repetition or lower total_tokens")

    def _skip_to(self, pk: Packer, s: int, j: int) -> bool:
        """Pack (without materialising) stream ``s`` up to its sequence ``j``; False at its
        end."""
        if self.mix.per_stream is not None:
            j = min(j, self.mix.per_stream)
        while pk.pos < j:
            if pk.next_sequence(False) is END:
                self._stream_end(s, pk)
                return False
        return True

    def _seq(self, pk: Packer, s: int, j: int):
        """Sequence ``j`` of stream ``s`` as an item, or END past the stream's end."""
        per = self.mix.per_stream
        if per is not None and j >= per or not self._skip_to(pk, s, j):
            return END
        item = pk.next_sequence(True)
        if item is END:
            self._stream_end(s, pk)
        return item

    def item(self, p: int):
        """The sequence at global position ``p``: past the end, with tail="wrap", the one at
        ``p - end``; None past the end otherwise."""
        if self.end is None or p < self.end:
            s = p % self.S
            item = self._seq(self.packers[s], s, p // self.S)
            if item is not END:
                item["index"] = p
                return item
        if self.tail != "wrap":
            return None
        q = p - self.end
        s = q % self.S
        if s not in self._wrap:
            self._wrap[s] = self.mix._packer(self.epoch, s, None)
        item = self._seq(self._wrap[s], s, q // self.S)
        item["index"] = q
        return item

    def advance_to(self, hi: int) -> None:
        """Bring every stream to its first sequence at a global position >= ``hi``."""
        for s, pk in self.packers.items():
            self._skip_to(pk, s, -(-(hi - s) // self.S) if hi > s else 0)

    def step_ok(self, lo: int, hi: int, tail: str) -> bool:
        """Whether the step ``[lo, hi)`` is served (as far as the end is known)."""
        if self.end is None:
            return True
        return hi <= self.end if tail == "drop" else lo < self.end

    def snapshot(self, s: int) -> dict:
        pk = self.packers[s]
        return {"pos": pk.pos, "packer": pk.snapshot()}
