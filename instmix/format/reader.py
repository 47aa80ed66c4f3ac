"""Reading build shards: token memmaps and their ``.csv.gz`` document indexes."""

from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass

import numpy as np

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


def open_ends(path: str) -> np.ndarray:
    """Memory-map a ``.ends`` file (headerless little-endian int64)."""
    if os.path.getsize(path) == 0:
        return np.zeros(0, dtype="<i8")
    return np.memmap(path, dtype="<i8", mode="r")


def read_index(shard_path: str) -> DocIndex:
    """Parse ``<shard>.csv.gz``; raises ValueError naming the line on a malformed row."""
    starts, ends, ids, srcs = [], [], [], []
    path = index_path(shard_path)
    with gzip.open(path, "rb") as gz:
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


def open_tokens(path: str, dtype: str) -> np.ndarray:
    """Memory-map a headerless token file (an empty file gives an empty array)."""

    if os.path.getsize(path) == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


@dataclass(frozen=True)
class BuiltDocument:
    shard: str
    start: int
    end: int
    id: str
    src: str
    tokens: np.ndarray


def iter_build_documents(root: str):
    """Every document of a build, in stream order, with its tokens (a memmap view)."""

    m = load_manifest(root)
    for shard in m.shards:
        path = m.path(shard["path"])
        tokens = open_tokens(path, m.dtype)
        idx = read_index(path)
        for a, b, doc_id, src in zip(idx.start.tolist(), idx.end.tolist(), idx.ids, idx.src):
            yield BuiltDocument(shard["path"], a, b, doc_id, src, tokens[a:b])
