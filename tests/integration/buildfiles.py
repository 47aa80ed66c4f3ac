"""Read an instmix build with numpy and the standard library only (no instmix import), so
the framework check scripts can run in venvs that do not have instmix. The layout read here
is the documented one: headerless ``.npy`` token files of the manifest's dtype, ``.csv.gz``
lines ``start,end,id,src`` and raw ``np.bool_`` mask files."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Shard:
    path: str
    tokens: np.ndarray
    mask: np.ndarray | None
    starts: np.ndarray
    ends: np.ndarray
    srcs: list

    def source_counts(self, lo: int, hi: int) -> dict:
        """Tokens per source within positions ``[lo, hi)``."""
        out: dict = {}
        for a, b, s in zip(self.starts.tolist(), self.ends.tolist(), self.srcs):
            n = min(b, hi) - max(a, lo)
            if n > 0:
                out[s] = out.get(s, 0) + n
        return out

    def documents(self):
        for a, b, s in zip(self.starts.tolist(), self.ends.tolist(), self.srcs):
            yield s, self.tokens[a:b], None if self.mask is None else self.mask[a:b]


class Build:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        with open(os.path.join(self.root, "manifest.json"), encoding="utf-8") as f:
            self.manifest = json.load(f)
        self.dtype = np.dtype(self.manifest["dtype"])
        self._cache: dict = {}

    @property
    def paths(self) -> list[str]:
        return [os.path.join(self.root, s["path"]) for s in self.manifest["shards"]]

    def shard(self, path: str) -> Shard:
        path = os.path.abspath(path)
        if path not in self._cache:
            entry = next(s for s in self.manifest["shards"]
                         if os.path.join(self.root, s["path"]) == path)
            tokens = np.fromfile(path, dtype=self.dtype)
            mask = np.fromfile(os.path.join(self.root, entry["mask"]), dtype=np.bool_) \
                if entry.get("mask") else None
            starts, ends, srcs = [], [], []
            with gzip.open(path[:-len(".npy")] + ".csv.gz", "rt", encoding="utf-8",
                           newline="") as f:
                for row in csv.reader(io.StringIO(f.read())):
                    starts.append(int(row[0]))
                    ends.append(int(row[1]))
                    srcs.append(row[3])
            self._cache[path] = Shard(path, tokens, mask, np.array(starts), np.array(ends), srcs)
        return self._cache[path]

    def stream(self) -> np.ndarray:
        return np.concatenate([self.shard(p).tokens for p in self.paths])


def emit(result: dict) -> None:
    """The last stdout line of a check script: its observations as JSON."""
    print(json.dumps(result, sort_keys=True))
