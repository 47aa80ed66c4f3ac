"""MinHash signatures of word n-gram sets, and LSH band keys.

Signatures are datasketch's ``MinHash`` with its default ``affine32`` scheme (seed 1):
each shingle's 32-bit hash is pre-mixed with the MurmurHash3 finaliser and permuted by
``a * h + b mod 2**32``; a signature is the per-permutation minimum. datasketch gives the
permutations and the banding (``MinHashLSH``'s bands x rows that minimise false positives
plus false negatives at the threshold); this module applies them to many documents at once
with numpy, with values equal to ``MinHash.update_batch`` on the same shingle hashes.

A document's shingles are its word 5-grams (datatrove's and FineWeb's choice); a document of
fewer words than that has one shingle, all its words. A document with no words has no
signature (all values at the maximum) and is never a near duplicate.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .text import U64, mix64, ngram_hashes

MAX32 = np.uint32(0xFFFFFFFF)
_CHUNK = 1 << 15  # shingles per block: a block is CHUNK x num_perm uint32 (16 MiB at 128)


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@dataclass(frozen=True)
class MinHasher:
    """``params``: datasketch's permutations when already known (see :func:`cached_params`)."""

    num_perm: int = 128
    ngram: int = 5
    seed: int = 1
    params: np.ndarray | None = field(default=None, compare=False, repr=False)

    @cached_property
    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        if self.params is not None:
            return self.params[0], self.params[1]
        from datasketch import MinHash  # lazy: optional extra instmix[clean]; loads scipy

        a, b = MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine32").permutations
        return a.astype(np.uint32), b.astype(np.uint32)

    def shingles(self, hashes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """32-bit shingle hashes of each document's words -> ``(flat, offsets)``."""
        grams, counts = ngram_hashes(hashes, offsets, self.ngram)
        lens = np.diff(offsets)
        short = np.flatnonzero((lens > 0) & (lens < self.ngram))
        if short.size:  # one shingle of all the words
            extra = [_whole(hashes[offsets[i]:offsets[i + 1]]) for i in short]
            pos = np.cumsum(counts)[short]
            grams = np.insert(grams, pos, extra)
            counts = counts.copy()
            counts[short] = 1
        out = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=out[1:])
        return (grams >> U64(32)).astype(np.uint32), out

    def signatures(self, shingles: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``(documents, num_perm)`` uint32 signatures of the documents' shingle hashes."""
        a, b = self.permutations
        a, b = a[:, None], b[:, None]
        n = len(offsets) - 1
        out = np.full((n, self.num_perm), MAX32, dtype=np.uint32)
        mixed = _fmix32(shingles)
        buf = np.empty((self.num_perm, _CHUNK), dtype=np.uint32)  # permutation x shingle

        def permuted(lo: int, hi: int) -> np.ndarray:
            view = buf[:, :hi - lo]
            np.multiply(a, mixed[None, lo:hi], out=view)
            np.add(view, b, out=view)
            return view

        i = 0
        while i < n:
            j = int(np.searchsorted(offsets, offsets[i] + _CHUNK, side="right")) - 1
            j = min(max(j, i + 1), n)
            lo, hi = int(offsets[i]), int(offsets[j])
            if j == i + 1:  # one document, maybe larger than a block
                for s in range(lo, hi, _CHUNK):
                    np.minimum(out[i], permuted(s, min(hi, s + _CHUNK)).min(axis=1),
                               out=out[i])
            else:
                full = np.flatnonzero(np.diff(offsets[i:j + 1]) > 0)
                if full.size:
                    starts = offsets[i:j][full] - lo
                    out[i + full] = np.minimum.reduceat(permuted(lo, hi), starts, axis=1).T
            i = j
        return out


def _whole(hashes: np.ndarray) -> np.uint64:
    """The hash of all the words as one n-gram."""
    return ngram_hashes(hashes, np.array([0, len(hashes)]), len(hashes))[0][0]


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """``(bands, rows)`` datasketch's MinHashLSH picks for this threshold."""
    from datasketch import MinHashLSH  # lazy: optional extra instmix[clean]; loads scipy

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def cached_params(folder: str, num_perm: int, seed: int, threshold: float
                  ) -> tuple[np.ndarray, tuple[int, int]]:
    """datasketch's permutations and LSH banding, kept in ``folder`` once computed
    (importing datasketch loads scipy, seconds that a build need pay only once)."""
    path = os.path.join(folder, f"minhash-affine32-{num_perm}-{seed}-{threshold!r}.json")
    if os.path.exists(path):
        with open(path) as f:
            d = json.load(f)
        return np.array([d["a"], d["b"]], dtype=np.uint32), (d["bands"], d["rows"])
    a, b = MinHasher(num_perm, seed=seed).permutations
    bands, rows = lsh_bands(threshold, num_perm)
    os.makedirs(folder, exist_ok=True)
    data = json.dumps({"a": a.tolist(), "b": b.tolist(), "bands": bands, "rows": rows})
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.replace(tmp, path)
    return np.array([a, b], dtype=np.uint32), (bands, rows)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(documents, bands)`` uint64: a hash of each band's ``rows`` signature values."""
    sig = signatures.astype(np.uint64)
    out = np.empty((len(sig), bands), dtype=np.uint64)
    for band in range(bands):
        h = np.full(len(sig), U64(band + 1), dtype=np.uint64)
        for r in range(band * rows, (band + 1) * rows):
            h = mix64(h * U64(0x9E3779B97F4A7C15) + sig[:, r])
        out[:, band] = h
    return out


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise share of equal signature values (MinHash's Jaccard estimate)."""
    return (a == b).mean(axis=1)
