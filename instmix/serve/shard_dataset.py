"""``ShardDataset``: fixed-length sequences over built shards, seeded and shardable.

Each shard is cut into ``seq_len`` windows (no window spans two shards, as in OLMo); the
last partial window of a shard is dropped (``drop_last``) or padded with EOS whose labels
are -100. An epoch visits every window once, in the order of a permutation that is a pure
function of ``(seed, epoch, position)`` (:mod:`instmix.serve.permute`). Positions are spread over
ranks and DataLoader workers by :mod:`instmix.serve.sharding`.

Each item: ``input_ids`` and ``labels`` (int64, ``seq_len``; labels are -100 where the
build's loss mask is False and on padding), ``doc_lens`` (lengths of the documents cut by
the window, summing to ``seq_len``, for intra-document attention; zero-padded to a width
fixed per dataset, ``max_docs``, so the default collate stacks items) and ``index`` (the
window).

A build at a URL (``s3://...``) is read by ranged GETs through a bounded block cache per
process (:mod:`instmix.io.ranges`), with the same items and resume as a local copy.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from instmix.errors import InstmixError
from instmix.format.manifest import load_manifest
from instmix.io import fs, ranges

from .permute import Permutation
from .sharding import (
    LOOKAHEAD,
    RuntimeContext,
    check_tail,
    current_worker,
    data_parallel,
    epoch_end,
    positions,
    steps,
)
from .shards import Shard, most_pieces, open_shard
from .state import IGNORE, CursorDataset, count

_ITEM_BATCH = 64  # rows gathered at once when iterating items
_KEYS = ("input_ids", "labels", "doc_lens", "index")


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"instmix:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class ShardDataset(CursorDataset):
    """Sequences of ``seq_len`` tokens from one build folder or a list of them."""

    def __init__(self, path: str | os.PathLike | Sequence[str | os.PathLike], seq_len: int, *,
                 seed: int = 0, epoch: int = 0, rank: int | None = None,
                 world_size: int | None = None, device_mesh=None, dp_dim: str = "dp",
                 drop_last: bool = True, tail: str = "drop", batch_size: int = 1,
                 storage_options: Mapping | None = None, block_bytes: int | None = None,
                 cache_bytes: int = ranges.CACHE_BYTES):
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise InstmixError(f"seq_len must be an integer >= 1, got {seq_len!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InstmixError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        ranges.check_sizes(block_bytes, cache_bytes)
        roots = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not roots:
            raise InstmixError("ShardDataset needs at least one build folder")
        self.seq_len = seq_len
        self.seed = seed
        self.epoch = epoch
        self.rank, self.world_size = data_parallel(rank, world_size, device_mesh, dp_dim)
        self.mesh = (device_mesh, dp_dim) if device_mesh is not None else None  # not pickled
        RuntimeContext(self.rank, self.world_size)  # validates
        self.drop_last = drop_last
        self.tail = check_tail(tail)
        self.batch_size = batch_size
        self.shards: list[Shard] = []
        first = None
        digest = hashlib.sha256(f"seq_len={seq_len};drop_last={drop_last}".encode())
        for root in roots:
            m = load_manifest(os.fspath(root), storage_options)
            tok = m.tokenizer
            key = (m.dtype, tok["vocab_size"], tok["eos_token_id"])
            if first is None:
                first = key
            elif key != first:
                raise InstmixError(f"{root}: dtype/vocab/EOS {key} differ from the first build's "
                                   f"{first}; builds served together must share a tokenizer")
            for s in m.shards:
                self.shards.append(open_shard(m, s, m.dtype))
                digest.update(s["sha256"].encode())
                digest.update((s.get("mask_sha256") or "").encode())
        self.dtype, self.vocab_size, self.eos_token_id = first
        self.fingerprint = digest.hexdigest()[:32]
        counts = []
        for s in self.shards:
            full, rest = divmod(s.tokens, seq_len)
            counts.append(full + (1 if rest and not drop_last else 0))
        self._window_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._full_windows = np.array([sh.tokens // seq_len for sh in self.shards] + [0],
                                      dtype=np.int64)
        self.num_sequences = int(self._window_starts[-1])
        if self.num_sequences == 0:
            longest = max((sh.tokens for sh in self.shards), default=0)
            raise InstmixError(f"{roots[0]}: seq_len {seq_len} is longer than every shard "
                               f"(the longest holds {longest:,} tokens): no sequence fits; "
                               "use a smaller seq_len or drop_last=False")
        self._any_mask = any(sh.mask for sh in self.shards)
        self._pad_rows = (np.zeros(seq_len, dtype=self.dtype), np.ones(seq_len, dtype=np.bool_))
        self._grid_cache: list | None = None
        self._grids_unopened = len(self.shards)
        itemsize = np.dtype(self.dtype).itemsize
        ranged = sum(sh.tokens * (itemsize + (1 if sh.mask else 0)) for sh in self.shards
                     if fs.is_url(sh.path))
        self._blocks_spec = (ranges.choose_block_bytes(
            block_bytes, cache_bytes, ranged, seq_len * (itemsize + self._any_mask)),
            cache_bytes)
        self._blocks: ranges.BlockCache | None = None  # one per process, for remote shards
        # doc_lens has one fixed width (the most pieces any window holds), so the default
        # torch collate can stack items; unused slots are 0.
        self.max_docs = max(most_pieces(s, seq_len, not drop_last) for s in self.shards)
        self._skip = 0  # items to skip in the next __iter__ (load_state_dict)
        self._yielded = 0

    # -- order ---------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (call it every epoch, as with DistributedSampler)."""
        self.epoch = epoch

    def windows(self, positions: np.ndarray, epoch: int | None = None) -> np.ndarray:
        """Window ids at epoch ``positions`` (a pure function of seed, epoch, position)."""

        perm = Permutation(self.num_sequences, _epoch_seed(self.seed, self.epoch if epoch is None
                                                           else epoch))
        return perm(positions)

    def __len__(self) -> int:
        """Sequences this rank reads in one epoch: the same on every rank, a whole number of
        ``batch_size`` batches (see ``tail``)."""
        per_step = self.world_size * self.batch_size
        return epoch_end(self.num_sequences, 0, per_step, self.tail) // self.world_size

    # -- reading -------------------------------------------------------------------------
    # Reading is vectorised: window ids are computed for many positions in one call (the
    # permutation's per-call cost dominates small calls), a batch's rows are gathered in
    # one call from per-shard [windows, seq_len] views and widened in two, and its
    # doc_lens are found by binary search in the shards' memory-mapped document ends.
    def _grids(self, shard_ids) -> list:
        """Per shard, its full windows as [windows, seq_len] views of the tokens and the
        mask (None without): plain ndarrays, as indexing a memmap subclass costs more than
        copying a row. Opened lazily, per process (see ``__getstate__``)."""
        cache = self._grid_cache
        if cache is None:
            cache = self._grid_cache = [None] * len(self.shards)
        if self._grids_unopened:
            L = self.seq_len
            for s in set(shard_ids):
                if cache[s] is None:
                    tokens, mask = self.shards[s].arrays(self._block_cache())
                    cache[s] = (ranges.window_grid(tokens, L),
                                None if mask is None else ranges.window_grid(mask, L))
                    self._grids_unopened -= 1
        return cache

    def _block_cache(self) -> ranges.BlockCache:
        if self._blocks is None:
            self._blocks = ranges.BlockCache(*self._blocks_spec)
        return self._blocks

    def __getstate__(self):
        return {**self.__dict__, "_grid_cache": None, "_grids_unopened": len(self.shards),
                "mesh": None, "_blocks": None}

    def _fill(self, windows: np.ndarray) -> dict[str, torch.Tensor]:
        """A batch for ``windows``: input_ids/labels [n, L], doc_lens [n, max docs], index."""
        n, L, D = len(windows), self.seq_len, self.max_docs
        # One allocation for the whole batch: ids, labels, doc_lens and index are views of
        # it (a worker then hands the batch over as one shared-memory block).
        flat = np.empty(n * (2 * L + D + 1), dtype=np.int64)
        ids = flat[:n * L].reshape(n, L)
        labels = flat[n * L:2 * n * L].reshape(n, L)
        dl = flat[2 * n * L:n * (2 * L + D)].reshape(n, D)
        dl[...] = 0
        flat[n * (2 * L + D):] = windows
        shard_of = np.searchsorted(self._window_starts, windows, side="right") - 1
        local = windows - self._window_starts[shard_of]
        tail = local >= self._full_windows[shard_of]  # padded last windows (drop_last=False)
        any_tail = bool(tail.any())
        sl, ll = shard_of.tolist(), local.tolist()
        grids = self._grids(sl)
        for s in set(sl):  # remote shards: this batch's blocks in one batch of requests
            ranges.prefetch(grids[s], local[(shard_of == s) & ~tail])
        # Rows in the files' dtype, one gather, then widened for ids and labels at once.
        raw = np.empty((n, L), dtype=self.dtype)
        if not n:
            pass
        elif sl[0] == sl[-1] and not any_tail and (shard_of == sl[0]).all():
            if isinstance(grids[sl[0]][0], ranges.RangeGrid):
                grids[sl[0]][0].take(local, out=raw)
            else:
                np.take(grids[sl[0]][0], local, axis=0, out=raw, mode="clip")  # one shard
        else:
            pad = self._pad_rows[0]
            np.concatenate([grids[s][0][w] if w < len(grids[s][0]) else pad
                            for s, w in zip(sl, ll)], out=raw.reshape(-1))
        ids[...] = raw
        labels[...] = raw
        if self._any_mask and n:
            ones = self._pad_rows[1]
            train = np.concatenate([grids[s][1][w] if grids[s][1] is not None and
                                    w < len(grids[s][1]) else ones
                                    for s, w in zip(sl, ll)]).reshape(n, L)
            if not train.all():
                np.copyto(labels, IGNORE, where=~train)
        if n:
            self._doc_lens(dl, shard_of, local, np.flatnonzero(~tail))
        if any_tail:
            for r in np.flatnonzero(tail).tolist():
                s = int(shard_of[r])
                self._fill_tail(self.shards[s], int(local[r]), ids[r], labels[r], dl[r])
        t = torch.from_numpy(flat)
        return {"input_ids": t[:n * L].view(n, L), "labels": t[n * L:2 * n * L].view(n, L),
                "doc_lens": t[2 * n * L:n * (2 * L + D)].view(n, D),
                "index": t[n * (2 * L + D):]}

    def _doc_lens(self, dl: np.ndarray, shard_of: np.ndarray, local: np.ndarray,
                  full: np.ndarray) -> None:
        """Write the doc_lens of the full windows at rows ``full`` into ``dl``: the pieces
        [a, e_1), [e_1, e_2), ..., [e_m, a + L) of window [a, a + L) cut by the document
        ends e_i strictly inside it, found by binary search in the shard's ends (a memory
        map: only the pages searched are read)."""
        L = self.seq_len
        for s in np.unique(shard_of[full]).tolist():
            rows = full[shard_of[full] == s]
            ends = self.shards[s].ends
            a = local[rows] * L
            k0 = np.searchsorted(ends, a, side="right")
            k1 = np.searchsorted(ends, a + L, side="left")
            cnt = k1 - k0 + 1  # pieces per window
            rid = np.repeat(np.arange(len(rows)), cnt)
            j = np.arange(len(rid)) - (np.cumsum(cnt) - cnt)[rid]
            inner = ends[k0[rid] + j - 1 + (j == 0)]  # piece j starts at ends[k0 + j - 1]
            ar = a[rid]
            lo = np.where(j == 0, ar, inner)
            stop = ends[np.minimum(k0[rid] + j, len(ends) - 1)]
            hi = np.where(j == cnt[rid] - 1, ar + L, stop)
            lens = hi - lo
            keep = lens > 0
            if not keep.all():  # repeated ends (empty documents): drop the empty pieces
                rid, lens = rid[keep], lens[keep]
                per_row = np.bincount(rid, minlength=len(rows))
                j = np.arange(len(rid)) - (np.cumsum(per_row) - per_row)[rid]
            dl[rows[rid], j] = lens

    def _fill_tail(self, shard: Shard, w: int, ids: np.ndarray, labels: np.ndarray,
                   dl: np.ndarray) -> None:
        """One row from the partial last window ``w`` of ``shard``, padded with EOS."""
        L = self.seq_len
        tokens, mask = shard.arrays(self._block_cache())
        a = w * L
        b = min(a + L, shard.tokens)
        ids[:b - a] = tokens[a:b]
        labels[...] = ids
        ids[b - a:] = self.eos_token_id
        labels[b - a:] = IGNORE
        if mask is not None:
            m = mask[a:b]
            if not m.all():
                labels[:b - a][~m] = IGNORE
        ends = shard.ends
        k0 = int(np.searchsorted(ends, a, side="right"))
        k1 = int(np.searchsorted(ends, b, side="left"))
        lens = np.diff(np.concatenate([[a], ends[k0:k1], [b]]) - a)
        lens = np.append(lens[lens > 0], L - (b - a))
        dl[:len(lens)] = lens

    def _with_windows(self, spans: Iterator[tuple[int, int, int]], epoch: int
                      ) -> Iterator[tuple[tuple[int, int, int], np.ndarray]]:
        """Each ``(step, lo, hi)`` of ``spans`` with the window ids of ``[lo, hi)``,
        computed for about ``LOOKAHEAD`` positions at a time."""
        pending: list[tuple[int, int, int]] = []
        count = 0
        for span in itertools.chain(spans, [None]):
            if span is not None:
                pending.append(span)
                count += span[2] - span[1]
            if pending and (span is None or count >= LOOKAHEAD):
                pos = np.concatenate([np.arange(lo, hi) for _, lo, hi in pending])
                wins = self.windows(pos % self.num_sequences, epoch)  # tail="wrap" wraps
                at = 0
                for sp in pending:
                    yield sp, wins[at:at + sp[2] - sp[1]]
                    at += sp[2] - sp[1]
                pending, count = [], 0

    def iter_batches(self, cursor: dict, batch_size: int, ctx: RuntimeContext, tail: str
                     ) -> Iterator[tuple[dict, dict]]:
        """Batches of this rank and worker from ``cursor``; each with the cursor after its
        global step (the resume point once the trainer has taken it)."""
        self.check_cursor(cursor)
        epoch, start = cursor["epoch"], cursor["consumed"]
        per_step = ctx.world_size * batch_size
        end = self._end(start, per_step, tail)
        n = self.num_sequences
        for (k, _, _), wins in self._with_windows(steps(end, start, ctx, batch_size), epoch):
            batch = self._fill(wins)
            yield {"epoch": epoch, "consumed": min(start + (k + 1) * per_step, n)}, batch

    def _end(self, start: int, per_step: int, tail: str) -> int:
        end = epoch_end(self.num_sequences, start, per_step, tail)
        if end == start == 0:
            raise InstmixError(f"an epoch of {self.num_sequences:,} sequences "
                               f"holds no whole global step of {per_step:,} (world_size x "
                               "batch_size): use a smaller batch_size or tail='wrap'")
        return end

    def batches_left(self, cursor: dict, batch_size: int, ctx: RuntimeContext, tail: str
                     ) -> int:
        self.check_cursor(cursor)
        start = cursor["consumed"]
        per_step = ctx.world_size * batch_size
        return (self._end(start, per_step, tail) - start) // per_step

    def check_cursor(self, cursor: dict) -> None:
        count(cursor, "epoch", "loader state: cursor")
        consumed = count(cursor, "consumed", "loader state: cursor")
        if consumed > self.num_sequences:
            raise InstmixError(f"loader state: cursor: consumed: {consumed:,} is more than the "
                               f"{self.num_sequences:,} sequences of an epoch; load a state "
                               "saved by this loader, unedited")

    def initial_cursor(self) -> dict:
        return {"epoch": self.epoch, "consumed": 0}

    def next_epoch(self, cursor: dict) -> dict:
        self.set_epoch(cursor["epoch"] + 1)
        return {"epoch": cursor["epoch"] + 1, "consumed": 0}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """Items of this rank and DataLoader worker, in epoch order: ``len(self)`` of them
        on every rank, in whole ``batch_size`` chunks per worker."""
        worker, workers = current_worker()
        ctx = RuntimeContext(self.rank, self.world_size, worker, workers)
        skip, self._skip = self._skip, 0
        self._yielded = 0
        end = self._end(0, self.world_size * self.batch_size, self.tail)
        n = self.num_sequences
        for pos in positions(end, ctx, self.batch_size, skip):
            wins = self.windows(pos % n)
            for i in range(0, len(wins), _ITEM_BATCH):
                batch = self._fill(wins[i:i + _ITEM_BATCH])
                # unbind: the rows as views, made in one call (indexing is ~1 us a view)
                for ids, labels, dl, index in zip(*(batch[k].unbind(0) for k in _KEYS)):
                    self._yielded += 1
                    yield {"input_ids": ids, "labels": labels, "doc_lens": dl, "index": index}
