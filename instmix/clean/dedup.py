"""Which documents are duplicates, over every source of a config at once.

Every document has a rank, a hash of the seed, its source's name and its id and text; of
a group of duplicates the lowest rank is kept. So the kept copy depends on the seed and the
documents only, not on the order of files or how many workers computed the signatures.

- Exact: documents with the same normalised text (see :mod:`.text`); documents with no
  words take no part.
- Near: MinHash LSH candidates (documents sharing a band), verified by estimated Jaccard
  ``>= threshold``. Documents are visited by rank; one is removed when it is a verified
  near duplicate of a document of lower rank that is kept, and that document is recorded
  as its match. Every removed document thus has a kept match in the same run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .text import U64, mix64


def ranks(seed: int, source_hash: np.ndarray, doc_hash: np.ndarray) -> np.ndarray:
    """uint64 ranks: lower is kept. ``source_hash``/``doc_hash`` are uint64 per document."""
    x = mix64(np.full(len(doc_hash), U64(seed), dtype=np.uint64) ^ mix64(source_hash))
    return mix64(x ^ doc_hash)


def _order(rank: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Indices sorted by ``keys`` (first = primary), then rank, then index."""
    return np.lexsort((np.arange(len(rank)), rank, *reversed(keys)))


def exact_duplicates(keys: np.ndarray, active: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """``keys``: (n, 2) uint64 text keys. Returns ``match`` (n,): the kept document of a
    removed duplicate, -1 for every document kept (or inactive)."""
    match = np.full(len(keys), -1, dtype=np.int64)
    idx = np.flatnonzero(active)
    if idx.size < 2:
        return match
    k0, k1 = keys[idx, 0], keys[idx, 1]
    order = idx[_order(rank[idx], k0, k1)]
    s0, s1 = keys[order, 0], keys[order, 1]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (s0[1:] != s0[:-1]) | (s1[1:] != s1[:-1])
    head = order[np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))]
    match[order[~new]] = head[~new]
    return match


def near_duplicates(band_column: Callable[[int], np.ndarray], bands: int,
                    signature_rows: Callable[[np.ndarray], np.ndarray], active: np.ndarray,
                    rank: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``band_column(b)``: uint64 key of band ``b`` for every document;
    ``signature_rows(idx)``: their signatures. Returns ``(match, jaccard)`` per document:
    the kept document a removed one duplicates and their estimated Jaccard (-1 / 0 when
    kept). Memory: one band column and the candidate pairs at a time."""
    n = len(rank)
    match = np.full(n, -1, dtype=np.int64)
    score = np.zeros(n, dtype=np.float32)
    idx = np.flatnonzero(active)
    if idx.size < 2:
        return match, score
    pairs = []
    for b in range(bands):
        key = band_column(b)[idx]
        order = idx[_order(rank[idx], key)]
        k = key[np.searchsorted(idx, order)]
        same = np.flatnonzero(k[1:] == k[:-1]) + 1  # positions whose key equals the previous
        if not same.size:
            continue
        new = np.ones(len(order), dtype=bool)
        new[same] = False
        head = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
        # star edges to the group's lowest rank, and chain edges between rank neighbours
        pairs.append(np.stack([order[head[same]], order[same]], axis=1))
        pairs.append(np.stack([order[same - 1], order[same]], axis=1))
    if not pairs:
        return match, score
    edges = np.unique(np.concatenate(pairs), axis=0)
    edges = edges[edges[:, 0] != edges[:, 1]]
    jac = np.concatenate([
        (signature_rows(edges[s:s + 65536, 0]) == signature_rows(edges[s:s + 65536, 1]))
        .mean(axis=1) for s in range(0, len(edges), 65536)]) if len(edges) else np.zeros(0)
    keep = jac >= threshold
    edges, jac = edges[keep], jac[keep]
    # visit by the rank of the later document, then of the earlier one
    for e in np.lexsort((rank[edges[:, 0]], rank[edges[:, 1]])):
        u, v = int(edges[e, 0]), int(edges[e, 1])
        if match[u] < 0 and match[v] < 0:
            match[v] = u
            score[v] = jac[e]
    return match, score
