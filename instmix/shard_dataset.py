"""``ShardDataset``: fixed-length sequences over built shards, seeded and shardable.

Each shard is cut into ``seq_len`` windows (no window spans two shards, as in OLMo); the
last partial window of a shard is dropped (``drop_last``) or padded with EOS whose labels
are -100. An epoch visits every window once, in the order of a permutation that is a pure
function of ``(seed, epoch, position)`` (:mod:`instmix.permute`). Positions are spread over
ranks and DataLoader workers by :mod:`instmix.sharding`.

Each item: ``input_ids`` and ``labels`` (int64, ``seq_len``; labels are -100 where the
build's loss mask is False and on padding), ``doc_lens`` (lengths of the documents cut by
the window, summing to ``seq_len``, for intra-document attention; zero-padded to a width
fixed per dataset, ``max_docs``, so the default collate stacks items) and ``index`` (the
window).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset

from .errors import InstmixError
from .manifest import load_manifest
from .sharding import RuntimeContext, current_worker, distributed_defaults, steps
from .shards import index_path, open_tokens, read_index

IGNORE = -100
STATE_VERSION = 1


@dataclass
class _Shard:
    path: str
    mask: str | None
    tokens: int
    dtype: str
    ends: np.ndarray  # document end offsets (exclusive), ascending
    _mm: np.ndarray | None = None
    _mask_mm: np.ndarray | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Memory maps, opened lazily in the process that reads (safe across fork/spawn)."""
        if self._mm is None:
            self._mm = open_tokens(self.path, self.dtype)
            if self.mask:
                self._mask_mm = np.memmap(self.mask, dtype=np.bool_, mode="r")
        return self._mm, self._mask_mm

    def __getstate__(self):
        return {**self.__dict__, "_mm": None, "_mask_mm": None}


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"instmix:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class ShardDataset(IterableDataset):
    """Sequences of ``seq_len`` tokens from one build folder or a list of them."""

    def __init__(self, path: str | os.PathLike | Sequence[str | os.PathLike], seq_len: int, *,
                 seed: int = 0, epoch: int = 0, rank: int | None = None,
                 world_size: int | None = None, drop_last: bool = True):
        if seq_len < 1:
            raise InstmixError(f"seq_len must be >= 1, got {seq_len}")
        roots = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not roots:
            raise InstmixError("ShardDataset needs at least one build folder")
        self.seq_len = seq_len
        self.seed = seed
        self.epoch = epoch
        self.rank, self.world_size = distributed_defaults(rank, world_size)
        RuntimeContext(self.rank, self.world_size)  # validates
        self.drop_last = drop_last
        self.shards: list[_Shard] = []
        first = None
        digest = hashlib.sha256(f"seq_len={seq_len};drop_last={drop_last}".encode())
        for root in roots:
            m = load_manifest(str(root))
            tok = m.tokenizer
            key = (m.dtype, tok["vocab_size"], tok["eos_token_id"])
            if first is None:
                first = key
            elif key != first:
                raise InstmixError(f"{root}: dtype/vocab/EOS {key} differ from the first build's "
                                   f"{first}; builds served together must share a tokenizer")
            for s in m.shards:
                path_ = m.path(s["path"])
                idx = read_index(path_) if os.path.exists(index_path(path_)) else None
                ends = idx.end if idx is not None else np.array([s["tokens"]], dtype=np.int64)
                self.shards.append(_Shard(path_, m.path(s["mask"]) if s.get("mask") else None,
                                          s["tokens"], m.dtype, ends))
                digest.update(s["sha256"].encode())
                digest.update((s.get("mask_sha256") or "").encode())
        self.dtype, self.vocab_size, self.eos_token_id = first
        self.fingerprint = digest.hexdigest()[:32]
        counts = []
        for s in self.shards:
            full, rest = divmod(s.tokens, seq_len)
            counts.append(full + (1 if rest and not drop_last else 0))
        self._window_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_sequences = int(self._window_starts[-1])
        # doc_lens has one fixed width (the most pieces any window holds), so the default
        # torch collate can stack items; unused slots are 0.
        self.max_docs = max((self._most_pieces(s, c) for s, c in zip(self.shards, counts)),
                            default=1)
        self._chunk = 1  # sequences per worker turn; instmix.DataLoader sets its batch size
        self._skip = 0  # items to skip in the next __iter__ (load_state_dict)
        self._yielded = 0

    def _most_pieces(self, shard: _Shard, windows: int) -> int:
        if windows == 0:
            return 1
        a = np.arange(windows, dtype=np.int64) * self.seq_len
        b = np.minimum(a + self.seq_len, shard.tokens)
        inside = np.searchsorted(shard.ends, b, side="left") - np.searchsorted(shard.ends, a,
                                                                                side="right")
        return int((inside + 1 + (b - a < self.seq_len)).max())

    # -- order ---------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (call it every epoch, as with DistributedSampler)."""
        self.epoch = epoch

    def windows(self, positions: np.ndarray, epoch: int | None = None) -> np.ndarray:
        """Window ids at epoch ``positions`` (a pure function of seed, epoch, position)."""
        from .permute import Permutation

        perm = Permutation(self.num_sequences, _epoch_seed(self.seed, self.epoch if epoch is None
                                                           else epoch))
        return perm(positions)

    def __len__(self) -> int:
        """Sequences this rank reads in one epoch."""
        ctx = RuntimeContext(self.rank, self.world_size)
        return sum(hi - lo for _, lo, hi in steps(self.num_sequences, 0, ctx, self._chunk))

    # -- reading -------------------------------------------------------------------------
    def _fill(self, windows: np.ndarray) -> dict[str, torch.Tensor]:
        """A batch for ``windows``: input_ids/labels [n, L], doc_lens [n, max docs], index."""
        n, L = len(windows), self.seq_len
        buf = np.empty((2, n, L), dtype=np.int64)  # one allocation for ids and labels
        ids, labels = buf[0], buf[1]
        shard_of = np.searchsorted(self._window_starts, windows, side="right") - 1
        doc_lens = []
        for row, (w, s) in enumerate(zip(windows.tolist(), shard_of.tolist())):
            shard = self.shards[s]
            tokens, mask = shard.arrays()
            a = (w - int(self._window_starts[s])) * L
            b = min(a + L, shard.tokens)
            ids[row, :b - a] = tokens[a:b]
            labels[row] = ids[row]
            if b - a < L:  # padded tail window
                ids[row, b - a:] = self.eos_token_id
                labels[row, b - a:] = IGNORE
            if mask is not None:
                m = mask[a:b]
                if not m.all():
                    labels[row, :b - a][~m] = IGNORE
            ends = shard.ends
            k0 = int(np.searchsorted(ends, a, side="right"))
            k1 = int(np.searchsorted(ends, b, side="left"))
            cuts = np.concatenate([[a], ends[k0:k1], [b]]) - a
            lens = np.diff(cuts)
            lens = lens[lens > 0]
            if b - a < L:
                lens = np.append(lens, L - (b - a))
            doc_lens.append(lens)
        dl = np.zeros((n, self.max_docs), dtype=np.int64)
        for row, lens in enumerate(doc_lens):
            dl[row, :len(lens)] = lens
        return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
                "doc_lens": torch.from_numpy(dl), "index": torch.from_numpy(windows.copy())}

    def iter_batches(self, cursor: dict, batch_size: int, ctx: RuntimeContext,
                     drop_last: bool = False) -> Iterator[tuple[dict, dict]]:
        """Batches of this rank and worker from ``cursor``; each with the cursor after its
        global step (the resume point once the trainer has taken it)."""
        epoch, start = cursor["epoch"], cursor["consumed"]
        n = self.num_sequences
        per_step = ctx.world_size * batch_size
        if drop_last:
            n = start + (n - start) // per_step * per_step
        for k, lo, hi in steps(n, start, ctx, batch_size):
            batch = self._fill(self.windows(np.arange(lo, hi), epoch))
            yield {"epoch": epoch, "consumed": min(start + (k + 1) * per_step, n)}, batch

    def batches_left(self, cursor: dict, batch_size: int, drop_last: bool = False) -> int:
        n, start = self.num_sequences, cursor["consumed"]
        per_step = self.world_size * batch_size
        if drop_last:
            n = start + (n - start) // per_step * per_step
        return sum(1 for _ in steps(n, start, RuntimeContext(self.rank, self.world_size),
                                    batch_size))

    def initial_cursor(self) -> dict:
        return {"epoch": self.epoch, "consumed": 0}

    def next_epoch(self, cursor: dict) -> dict:
        self.set_epoch(cursor["epoch"] + 1)
        return {"epoch": cursor["epoch"] + 1, "consumed": 0}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """Items of this rank and DataLoader worker, in epoch order."""
        worker, workers = current_worker()
        ctx = RuntimeContext(self.rank, self.world_size, worker, workers)
        skip, self._skip = self._skip, 0
        self._yielded = 0
        pending: list[tuple[int, int]] = []

        def flush():
            pos = np.concatenate([np.arange(lo, hi) for lo, hi in pending])
            pending.clear()
            batch = self._fill(self.windows(pos))
            for i in range(len(pos)):
                yield {k: v[i] for k, v in batch.items()}

        for _, lo, hi in steps(self.num_sequences, 0, ctx, self._chunk):
            if skip >= hi - lo:
                skip -= hi - lo
                continue
            pending.append((lo + skip, hi))
            skip = 0
            if sum(h - a for a, h in pending) >= 64:
                for item in flush():
                    self._yielded += 1
                    yield item
        if pending:
            for item in flush():
                self._yielded += 1
                yield item

    # -- resume for plain loaders (torchdata StatefulDataLoader calls these per worker) ----
    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "fingerprint": self.fingerprint, "seed": self.seed,
                "epoch": self.epoch, "yielded": self._yielded}

    def load_state_dict(self, state: dict) -> None:
        check_state(state, self.fingerprint, self.seed)
        self.epoch = state["epoch"]
        self._skip = state["yielded"]
        self._yielded = state["yielded"]


def check_state(state: dict, fingerprint: str, seed: int) -> None:
    """Refuse a state saved for other data, another seed or another format version."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise InstmixError(f"loader state version {state.get('version') if isinstance(state, dict) else state!r} "
                           f"is not {STATE_VERSION}")
    if state.get("fingerprint") != fingerprint:
        raise InstmixError(f"loader state was saved for other data (fingerprint "
                           f"{state.get('fingerprint')}, this data is {fingerprint}): same "
                           "builds, seq_len and drop_last are needed to resume")
    if state.get("seed") != seed:
        raise InstmixError(f"loader state was saved with seed {state.get('seed')}, this dataset "
                           f"has seed {seed}")

