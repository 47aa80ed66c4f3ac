"""Reading build shards: token arrays and their ``.csv.gz`` document indexes.

A local shard is memory-mapped; a shard at a URL is a :class:`~instmix.io.ranges.RangeArray`
(ranged GETs through a bounded block cache), so readers never download a build whole.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from instmix.io import fs
from instmix.io.ranges import BlockCache, RangeArray

from .manifest import load_manifest


@dataclass(frozen=True)
class DocIndex:
    """One shard's documents: token offsets (``end`` exclusive), ids and source names."""

    start: np.ndarray
    end: np.ndarray
    ids: list[str]
    src: list[str]

    def __len__(self) -> int:
        return len(self.start)


def index_path(shard_path: str) -> str:
    return shard_path[: -len(".npy")] + ".csv.gz" if shard_path.endswith(".npy") else \
        shard_path + ".csv.gz"


def open_ends(path: str, storage_options: Mapping | None = None) -> np.ndarray:
    """Memory-map a ``.ends`` file (headerless little-endian int64); one at a URL is
    downloaded (8 bytes per document)."""
    if fs.is_url(path):
        return np.frombuffer(fs.read_bytes(path, storage_options), dtype="<i8")
    if os.path.getsize(path) == 0:
        return np.zeros(0, dtype="<i8")
    return np.memmap(path, dtype="<i8", mode="r")


def read_index(shard_path: str, storage_options: Mapping | None = None) -> DocIndex:
    """Parse ``<shard>.csv.gz``; raises ValueError naming the line on a malformed row."""
    starts, ends, ids, srcs = [], [], [], []
    path = index_path(shard_path)
    raw = fs.open_read(path, storage_options) if fs.is_url(path) else path
    with gzip.open(raw, "rb") as gz:
        reader = csv.reader(io.TextIOWrapper(gz, encoding="utf-8", newline=""))
        for line, row in enumerate(reader, 1):
            if len(row) < 4:
                raise ValueError(f"{path}:{line}: expected start,end,id,src; got {row!r}")
            try:
                starts.append(int(row[0]))
                ends.append(int(row[1]))
            except ValueError:
                raise ValueError(f"{path}:{line}: start/end are not integers: {row!r}") from None
            ids.append(row[2])
            srcs.append(row[3])
    return DocIndex(np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64),
                    ids, srcs)


def open_tokens(path: str, dtype: str, storage_options: Mapping | None = None,
                cache: BlockCache | None = None, length: int | None = None
                ) -> np.ndarray | RangeArray:
    """Memory-map a headerless token file (an empty file gives an empty array); a URL gives
    a :class:`RangeArray` of ``length`` items (from the manifest; else one request asks)."""
    if fs.is_url(path):
        if length is None:
            length = fs.size(path, storage_options) // np.dtype(dtype).itemsize
        return RangeArray(path, dtype, length, storage_options, cache)
    if os.path.getsize(path) == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def load_tokens(path: str, dtype: str, storage_options: Mapping | None = None) -> np.ndarray:
    """The whole token file as an array: a memory map locally, one download for a URL."""
    if fs.is_url(path):
        return np.frombuffer(fs.read_bytes(path, storage_options), dtype=dtype)
    return open_tokens(path, dtype)


@dataclass(frozen=True)
class BuiltDocument:
    shard: str
    start: int
    end: int
    id: str
    src: str
    tokens: np.ndarray


def iter_build_documents(root: str, storage_options: Mapping | None = None):
    """Every document of a build, in stream order, with its tokens (a memmap view, or one
    shard's download at a time for a URL)."""

    m = load_manifest(root, storage_options)
    for shard in m.shards:
        path = m.path(shard["path"])
        tokens = load_tokens(path, m.dtype, storage_options)
        idx = read_index(path, storage_options)
        for a, b, doc_id, src in zip(idx.start.tolist(), idx.end.tolist(), idx.ids, idx.src):
            yield BuiltDocument(shard["path"], a, b, doc_id, src, tokens[a:b])
