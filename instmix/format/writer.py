"""Packed shard files: the writer.

A shard is ``part-NNNNN.npy``: token ids with **no header** (what OLMo and OLMo-core
read, despite the name), beside ``part-NNNNN.csv.gz`` with one ``start,end,id,src`` line
per document (token offsets, ``end`` exclusive) and, when a source masks its loss,
``part-NNNNN.mask``: one ``np.bool_`` per token (True = train), a name ``*.npy`` globs
do not catch. ``part-NNNNN.ends`` holds the documents' end offsets as headerless
little-endian int64 (what :class:`~instmix.ShardDataset` memory-maps instead of parsing
the ``.csv.gz``, which stays for dolma-style tools). Documents never span shards, so
``shard_tokens`` is a maximum except for a shard holding one document longer than it
(documents are never split).

The build writes shards into an owner-marked temporary folder that replaces the output
folder only when complete (:func:`instmix.io.atomic.swap_dir`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import threading
from dataclasses import dataclass, field

import numpy as np

from instmix.io.direct import DirectWriter
from instmix.io.pages import open_chunked

ENDS_SUFFIX = ".ends"  # document end offsets, <i8, no header
# the .csv.gz index: level 1 compresses it 16x faster than level 9 (1.4 s per 250,000 rows
# on the benchmark machine), to a file 16% larger (about 1% of its shard's tokens)
INDEX_GZIP_LEVEL = 1
_CSV_SPECIAL = re.compile(r'[,"\r\n]')


def csv_rows(starts: list[int], ends: list[int], doc_ids: list[str], srcs: list[str]) -> str:
    """The index lines ``start,end,id,src`` of many documents: what ``csv.writer`` (with
    ``lineterminator="\n"``) writes, built in one join when no id or source name holds a
    character it would quote, else by ``csv.writer`` itself."""
    if _CSV_SPECIAL.search("".join(doc_ids)) or _CSV_SPECIAL.search("".join(set(srcs))):
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(zip(starts, ends, doc_ids, srcs))
        return out.getvalue()
    if not doc_ids:
        return ""
    return "\n".join(map(",".join, zip(map(str, starts), map(str, ends), doc_ids, srcs))) + "\n"


@dataclass
class ShardStats:
    path: str
    tokens: int = 0
    documents: int = 0
    sha256: str = ""
    mask: str | None = None
    mask_sha256: str | None = None
    index_sha256: str = ""
    loss_tokens: int = 0
    ends: str | None = None
    ends_sha256: str | None = None
    sources: dict = field(default_factory=dict)

    def manifest_dict(self) -> dict:
        d = {"path": self.path, "tokens": self.tokens, "documents": self.documents,
             "sha256": self.sha256, "index_sha256": self.index_sha256,
             "sources": self.sources}
        if self.ends:
            d.update(ends=self.ends, ends_sha256=self.ends_sha256)
        if self.mask:
            d.update(mask=self.mask, mask_sha256=self.mask_sha256, loss_tokens=self.loss_tokens)
        return d


class _HashedFile:
    """A binary file open for writing that hashes (sha256) what goes through it."""

    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class _Shard:
    def __init__(self, folder: str, index: int, dtype: np.dtype, with_mask: bool,
                 prefix: str = ""):
        rel = os.path.join(prefix, f"part-{index:05d}")
        self.rel = rel
        self.stats = ShardStats(rel + ".npy")
        base = os.path.join(folder, rel)
        self.tok = DirectWriter(base + ".npy")  # written once, never read back here
        self.sha = hashlib.sha256()
        self.index = base + ".csv.gz"
        self.index_file = _HashedFile(open_chunked(self.index))
        # mtime=0 and the file's name in the header (as when GzipFile opens it): stable bytes
        self.gz = gzip.GzipFile(self.index, "wb", compresslevel=INDEX_GZIP_LEVEL,
                                fileobj=self.index_file, mtime=0)
        self.text = io.TextIOWrapper(self.gz, encoding="utf-8", newline="")
        self.csv = csv.writer(self.text, lineterminator="\n")
        self.stats.ends = rel + ENDS_SUFFIX
        self.ends = open_chunked(base + ENDS_SUFFIX)
        self.ends_sha = hashlib.sha256()
        self.mask = self.mask_sha = None
        if with_mask:
            self.stats.mask, self.stats.mask_sha256 = rel + ".mask", ""
            self.mask = DirectWriter(base + ".mask")
            self.mask_sha = hashlib.sha256()
        self.dtype = dtype

    def add(self, tokens: np.ndarray, mask: np.ndarray | None, doc_id: str, src: str) -> None:
        n = len(tokens)
        start = self.stats.tokens
        buf = memoryview(np.ascontiguousarray(tokens, dtype=self.dtype)).cast("B")
        self.tok.write(buf)
        self.sha.update(buf)
        if self.mask is not None:
            m = np.ones(n, dtype=np.bool_) if mask is None else np.ascontiguousarray(mask)
            mb = memoryview(m).cast("B")
            self.mask.write(mb)
            self.mask_sha.update(mb)
            self.stats.loss_tokens += int(m.sum())
        self.csv.writerow((start, start + n, doc_id, src))
        end = (start + n).to_bytes(8, "little")
        self.ends.write(end)
        self.ends_sha.update(end)
        self.stats.tokens += n
        self.stats.documents += 1
        self.stats.sources[src] = self.stats.sources.get(src, 0) + n

    def add_run(self, tokens: np.ndarray, lengths: np.ndarray, mask: np.ndarray | None,
                doc_ids: list[str], srcs: list[str]) -> None:
        """Append documents laid end to end in ``tokens`` (``lengths`` tokens each): the
        same bytes as :meth:`add` per document, in one write."""
        start = self.stats.tokens
        buf = memoryview(np.ascontiguousarray(tokens, dtype=self.dtype)).cast("B")
        # sha256 releases the GIL, so it runs beside the write (whose os.write releases it)
        hasher = threading.Thread(target=self.sha.update, args=(buf,), name="instmix-shard-sha")
        hasher.start()
        try:
            self.tok.write(buf)
        finally:
            hasher.join()  # before returning: the caller may reuse the buffer
        if self.mask is not None:
            m = np.ones(len(tokens), dtype=np.bool_) if mask is None else \
                np.ascontiguousarray(mask)
            mb = memoryview(m).cast("B")
            self.mask.write(mb)
            self.mask_sha.update(mb)
            self.stats.loss_tokens += int(m.sum())
        ends_arr = start + np.cumsum(lengths, dtype=np.int64)
        eb = memoryview(np.ascontiguousarray(ends_arr, dtype="<i8")).cast("B")
        self.ends.write(eb)
        self.ends_sha.update(eb)
        ends = ends_arr.tolist()
        starts = [start] + ends[:-1]
        self.text.write(csv_rows(starts, ends, doc_ids, srcs))
        per = self.stats.sources
        if srcs and srcs.count(srcs[0]) == len(srcs):  # one source: one sum
            per[srcs[0]] = per.get(srcs[0], 0) + int(lengths.sum())
        else:
            for n, src in zip(lengths.tolist(), srcs):
                per[src] = per.get(src, 0) + n
        self.stats.tokens += len(tokens)
        self.stats.documents += len(doc_ids)

    def files(self) -> list[str]:
        """This shard's files, relative to the build folder."""
        return [self.rel + ".npy", self.rel + ".csv.gz", self.rel + ENDS_SUFFIX] + (
            [self.rel + ".mask"] if self.mask is not None else [])

    def close(self) -> ShardStats:
        self.tok.close()
        self.text.close()  # closes the GzipFile, which leaves its file open
        self.index_file.close()
        self.ends.close()
        self.stats.sha256 = self.sha.hexdigest()
        self.stats.ends_sha256 = self.ends_sha.hexdigest()
        self.stats.index_sha256 = self.index_file.sha.hexdigest()
        if self.mask is not None:
            self.mask.close()
            self.stats.mask_sha256 = self.mask_sha.hexdigest()
        return self.stats


def open_shard(folder: str, index: int, dtype: str, with_mask: bool, prefix: str = "") -> _Shard:
    """Shard number ``index`` (``<folder>/<prefix>/part-NNNNN.*``), open for appending."""
    return _Shard(folder, index, np.dtype(dtype), with_mask, prefix)


class ShardWriter:
    """Append documents; a new shard starts when the next document would overflow."""

    def __init__(self, folder: str, dtype: str, shard_tokens: int, with_mask: bool,
                 prefix: str = ""):
        self.folder = folder
        self.prefix = prefix
        self.dtype = np.dtype(dtype)
        self.shard_tokens = shard_tokens
        self.with_mask = with_mask
        self.shards: list[ShardStats] = []
        self._cur: _Shard | None = None

    def add(self, tokens: np.ndarray, mask: np.ndarray | None, doc_id: str, src: str) -> None:
        cur = self._cur
        if cur is None or (cur.stats.tokens and cur.stats.tokens + len(tokens) > self.shard_tokens):
            if cur is not None:
                self.shards.append(cur.close())
            cur = self._cur = _Shard(self.folder, len(self.shards), self.dtype, self.with_mask,
                                     self.prefix)
        cur.add(tokens, mask, doc_id, src)

    def add_run(self, tokens: np.ndarray, lengths: np.ndarray, mask: np.ndarray | None,
                doc_ids: list[str], srcs: list[str]) -> None:
        """Append many documents at once (``tokens`` end to end, ``lengths`` each); shards
        are cut exactly where :meth:`add` would cut them."""
        ends = np.cumsum(lengths)
        done = 0
        while done < len(lengths):
            cur = self._cur
            base = int(ends[done - 1]) if done else 0
            room = self.shard_tokens - (cur.stats.tokens if cur is not None else 0)
            fit = int(np.searchsorted(ends[done:] - base, room, side="right"))
            if cur is None or (cur.stats.tokens and fit == 0):
                if cur is not None:
                    self.shards.append(cur.close())
                cur = self._cur = _Shard(self.folder, len(self.shards), self.dtype,
                                         self.with_mask, self.prefix)
                fit = int(np.searchsorted(ends[done:] - base, self.shard_tokens, side="right"))
            take = max(fit, 1)  # a document longer than a shard gets a shard of its own
            a, b = base, int(ends[done + take - 1])
            cur.add_run(tokens[a:b], lengths[done:done + take],
                        None if mask is None else mask[a:b], doc_ids[done:done + take],
                        srcs[done:done + take])
            done += take

    def close(self) -> list[ShardStats]:
        if self._cur is not None:
            self.shards.append(self._cur.close())
            self._cur = None
        return self.shards
