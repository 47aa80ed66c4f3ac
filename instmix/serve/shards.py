"""A build's shards as :class:`~instmix.ShardDataset` reads them: checked against the
manifest when opened, memory-mapped lazily in the process that reads. A shard at a URL is
read by ranged GETs through a block cache (:mod:`instmix.io.ranges`); its ``.ends`` file
(8 bytes per document) is fetched whole when first needed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from instmix.errors import InstmixError
from instmix.format.reader import index_path, open_ends, open_tokens, read_index
from instmix.io import fs, ranges


@dataclass
class Shard:
    path: str
    mask: str | None
    tokens: int
    dtype: str
    ends_path: str | None  # the ``.ends`` file, memory-mapped when read
    ends_csv: np.ndarray | None = None  # ends parsed from the .csv.gz (builds without .ends)
    storage_options: Mapping = field(default_factory=dict)
    _mm: np.ndarray | ranges.RangeArray | None = None
    _mask_mm: np.ndarray | ranges.RangeArray | None = None
    _ends_mm: np.ndarray | None = None

    def arrays(self, cache: ranges.BlockCache | None = None) -> tuple:
        """Memory maps (range arrays through ``cache`` for a URL), opened lazily in the
        process that reads (safe across fork/spawn)."""
        if self._mm is None:
            self._mm = open_tokens(self.path, self.dtype, self.storage_options, cache,
                                   self.tokens)
            if self.mask:
                self._mask_mm = open_tokens(self.mask, "bool", self.storage_options, cache,
                                            self.tokens)
        return self._mm, self._mask_mm

    @property
    def ends(self) -> np.ndarray:
        """Document end offsets (exclusive), ascending: a memory map of the ``.ends`` file."""
        if self.ends_csv is not None:
            return self.ends_csv
        if self._ends_mm is None:
            self._ends_mm = open_ends(self.ends_path, self.storage_options).view(np.ndarray)
        return self._ends_mm

    def __getstate__(self):
        return {**self.__dict__, "_mm": None, "_mask_mm": None, "_ends_mm": None}


def open_shard(m, s: dict, dtype: str) -> Shard:
    """A manifest shard entry, checked against its files (sizes, the index's last end):
    a damaged or incomplete build is refused here, naming the file."""
    path = m.path(s["path"])
    so = m.storage_options
    tokens, docs = s["tokens"], s["documents"]
    want = tokens * np.dtype(dtype).itemsize
    size = _size(path, so)
    if size != want:
        what = "missing" if size is None else f"{size:,} bytes, manifest says {want:,}"
        raise InstmixError(f"{path}: {what} (truncated or replaced); rebuild it or run "
                           "instmix verify")
    mask = m.path(s["mask"]) if s.get("mask") else None
    if mask is not None and _size(mask, so) != tokens:
        raise InstmixError(f"{mask}: missing or not {tokens:,} bytes (one per token); "
                           "rebuild it or run instmix verify")
    ends_path, ends_csv = (m.path(s["ends"]) if s.get("ends") else None), None
    if ends_path is not None:
        if _size(ends_path, so) != 8 * docs:
            raise InstmixError(f"{ends_path}: missing or not {8 * docs:,} bytes (8 per "
                               "document); rebuild it or run instmix verify")
        if not docs:
            last = 0
        elif fs.is_url(ends_path):  # one ranged GET: the last end
            last = int(np.frombuffer(fs.read_range(ends_path, 8 * docs - 8, 8 * docs, so),
                                     dtype="<i8")[0])
        else:
            last = int(open_ends(ends_path)[-1])
    else:  # a build written before .ends files: the .csv.gz index, parsed
        csv = index_path(path)
        if not fs.isfile(csv, so):
            raise InstmixError(f"{csv}: missing: the shard's document index (doc_lens need "
                               "it); rebuild it or run instmix verify")
        try:
            ends_csv = read_index(path, so).end
        except (ValueError, OSError, EOFError) as e:
            raise InstmixError(f"{csv}: unreadable ({e}); rebuild it or run instmix verify"
                               ) from None
        if len(ends_csv) != docs:
            raise InstmixError(f"{csv}: lists {len(ends_csv):,} documents, manifest says "
                               f"{docs:,}; rebuild it or run instmix verify")
        last = int(ends_csv[-1]) if docs else 0
    if last != tokens:
        raise InstmixError(f"{ends_path or index_path(path)}: last document ends at {last:,}, "
                           f"the shard holds {tokens:,} tokens; rebuild it or run instmix "
                           "verify")
    return Shard(path, mask, tokens, dtype, ends_path, ends_csv, dict(so or {}))


def _size(path: str, storage_options: Mapping | None) -> int | None:
    """The file's size, None when it is missing (one request for a URL)."""
    if not fs.is_url(path):
        return os.path.getsize(path) if os.path.isfile(path) else None
    try:
        return fs.size(path, storage_options)
    except FileNotFoundError:
        return None


def most_pieces(shard: Shard, L: int, tail: bool, chunk: int = 1 << 20) -> int:
    """The most pieces (``doc_lens`` entries) any window of ``shard`` holds, read from its
    ends in chunks (bounded memory): a full window ``w`` has one piece more than the
    distinct ends strictly inside it (``e // L == w``, ``e % L != 0``); the padded tail
    window one more again."""
    best, prev_w, run, last_e = 1, -1, 0, -1
    full = shard.tokens // L
    ends = shard.ends
    for lo in range(0, len(ends), chunk):
        e = np.asarray(ends[lo:lo + chunk], dtype=np.int64)
        e = e[(e % L != 0) & (e < shard.tokens)]
        if not len(e):
            continue
        keep = np.empty(len(e), dtype=np.bool_)  # distinct ends (an empty document repeats one)
        keep[0], keep[1:] = e[0] != last_e, e[1:] != e[:-1]
        e = e[keep]
        if not len(e):
            continue
        last_e = int(e[-1])
        w, c = np.unique(e // L, return_counts=True)
        if w[0] == prev_w:
            c[0] += run
        pieces = c + 1 + (w >= full)  # the tail window also holds the padding
        if not tail:
            pieces = pieces[w < full]
        if len(pieces):
            best = max(best, int(pieces.max()))
        prev_w, run = int(w[-1]), int(c[-1])
    if tail and shard.tokens % L:
        best = max(best, 2)
    return best
