"""Plan-time cleaning: from the units' cached facts to what each source loses.

Order: a document whose own text (outside its removable parts) shares an n-gram with the
eval text is removed as ``contaminated``; of the rest, exact duplicates, then near
duplicates, are removed across all sources (every source of the config takes part, ratio
0 included, so every mixture of a sweep removes the same documents). In the documents that
stay, a part (synthesized pair) is removed when its question or answer is contaminated
(reason ``contaminated``) or a pair filter rejects it; the document keeps its text and its
other parts, even when no part is left.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .dedup import exact_duplicates, near_duplicates, ranks
from .minhash import band_keys, lsh_bands
from .signatures import REASONS, UnitSignatures

KEPT, DUPLICATE, NEAR, CONTAMINATED = 0, 1, 2, 3
DOC_REASONS = ("kept", "duplicate", "near_duplicate", "contaminated")


@dataclass
class SourceRemoval:
    """What one source loses. Indices are the source's documents in cache order."""

    reason: np.ndarray                    # int8 per document: KEPT, DUPLICATE, ...
    match: np.ndarray                     # int64 per document: global index of the kept copy
    score: np.ndarray                     # float32: estimated Jaccard of a near duplicate
    eval_record: list                     # per document: eval record name or None
    parts: dict[int, np.ndarray] = field(default_factory=dict)        # doc -> removed parts
    part_reasons: dict[int, list] = field(default_factory=dict)      # doc -> [(part, reason,
    #                                                                    eval record or None)]
    counts: dict = field(default_factory=dict)

    @property
    def removed(self) -> np.ndarray:
        return self.reason != KEPT


def _name_hash(name: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(),
                                    "little"))


class _Global:
    """Every unit of every source as one sequence of documents."""

    def __init__(self, sources: Sequence[Sequence[UnitSignatures]]):
        self.units = [u for units in sources for u in units]
        sizes = [u.documents for u in self.units]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        per_source = [sum(u.documents for u in units) for units in sources]
        self.source_starts = np.concatenate([[0], np.cumsum(per_source)]).astype(np.int64)

    def cat(self, attr: str) -> np.ndarray:
        return np.concatenate([getattr(u, attr) for u in self.units])

    def signature_rows(self, idx: np.ndarray) -> np.ndarray:
        unit = np.searchsorted(self.starts, idx, side="right") - 1
        out = np.empty((len(idx), self.units[0].minhash.shape[1]), dtype=np.uint32)
        for k in np.unique(unit):
            sel = unit == k
            local = idx[sel] - self.starts[k]
            order = np.argsort(local)
            rows = np.asarray(self.units[k].minhash[local[order]])
            out[np.flatnonzero(sel)[order]] = rows
        return out


def find_removals(seed: int, names: Sequence[str],
                  sources: Sequence[Sequence[UnitSignatures]], *, exact: bool,
                  near_threshold: float | None, decontaminate: bool,
                  bands: tuple[int, int] | None = None) -> list[SourceRemoval]:
    """``bands``: LSH (bands, rows) for ``near_threshold`` (default: datasketch's choice)."""
    g = _Global(sources)
    n = int(g.starts[-1])
    source_of = np.repeat(np.arange(len(names)), np.diff(g.source_starts))
    src_hash = np.array([_name_hash(s) for s in names], dtype=np.uint64)[source_of]
    rank = ranks(seed, src_hash, g.cat("doc_hash") ^ g.cat("exact")[:, 0])
    reason = np.zeros(n, dtype=np.int8)
    match = np.full(n, -1, dtype=np.int64)
    score = np.zeros(n, dtype=np.float32)
    words = g.cat("words")
    if decontaminate:
        reason[g.cat("doc_hit") >= 0] = CONTAMINATED
    if exact:
        m = exact_duplicates(g.cat("exact"), (reason == KEPT) & (words > 0), rank)
        reason[m >= 0] = DUPLICATE
        match[m >= 0] = m[m >= 0]
    if near_threshold is not None:
        num_perm = g.units[0].minhash.shape[1]
        bands, rows = bands or lsh_bands(near_threshold, num_perm)

        def column(b: int) -> np.ndarray:
            return np.concatenate([
                band_keys(np.asarray(u.minhash[:, b * rows:(b + 1) * rows]), 1, rows)[:, 0]
                for u in g.units])

        m, s = near_duplicates(column, bands, g.signature_rows, (reason == KEPT) & (words > 0),
                               rank, near_threshold)
        reason[m >= 0] = NEAR
        match[m >= 0] = m[m >= 0]
        score[m >= 0] = s[m >= 0]
    return [_per_source(g, k, reason, match, score, decontaminate) for k in range(len(names))]


def _per_source(g: _Global, k: int, reason, match, score, decontaminate) -> SourceRemoval:
    lo, hi = g.source_starts[k], g.source_starts[k + 1]
    units = [u for u, s in zip(g.units, g.starts[:-1]) if lo <= s < hi]
    out = SourceRemoval(reason[lo:hi].copy(), match[lo:hi].copy(), score[lo:hi].copy(),
                        [None] * int(hi - lo))
    filtered: dict[str, int] = {}
    base = 0
    for u in units:
        if decontaminate:
            for i in np.flatnonzero(u.doc_hit >= 0):
                out.eval_record[base + i] = u.labels[u.doc_hit[i]]
        has_parts = np.flatnonzero(np.diff(u.part_off) > 0)
        for i in has_parts:
            if out.reason[base + i] != KEPT:
                continue
            a, b = u.part_off[i], u.part_off[i + 1]
            why: list = []
            for p in range(b - a):
                if decontaminate and u.part_hit[a + p] >= 0:
                    why.append((p, "contaminated", u.labels[u.part_hit[a + p]]))
                elif u.reasons is not None and u.reasons[a + p]:
                    why.append((p, REASONS[u.reasons[a + p]], None))
            if why:
                mask = np.zeros(b - a, dtype=bool)
                mask[[p for p, _, _ in why]] = True
                out.parts[base + int(i)] = mask
                out.part_reasons[base + int(i)] = why
                for _, r, _ in why:
                    filtered[r] = filtered.get(r, 0) + 1
        base += u.documents
    out.counts = {"duplicate": int((out.reason == DUPLICATE).sum()),
                  "near_duplicate": int((out.reason == NEAR).sum()),
                  "contaminated": int((out.reason == CONTAMINATED).sum()),
                  "filtered": dict(sorted(filtered.items()))}
    return out
