"""Sources tokenized in groups: one cache unit per group of files their kind reads apart.

An ``augmented`` source is read block by block (:meth:`~instmix.sources.kinds.Kind.groups`),
so its blocks tokenize in parallel, in bounded memory, and a new block re-tokenizes alone.
Read alone, each block gives exactly the documents (ids, text, order) it gives when the
source's files are read together, except where a chain id recurs in another block: read
together, that is the ``split_chain`` error (or skipped record). Such a source shows a
document id in two of its units, and is then tokenized as one unit of all its files, as
before, so the error, or what is skipped and counted, is the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def repeated_ids(units: Sequence) -> bool:
    """Whether some document id occurs in two of ``units`` (cache units)."""
    if len(units) < 2:
        return False
    hashed, owner = [], []
    for k, unit in enumerate(units):
        blob, off = unit.id_table
        h = np.unique(np.fromiter((hash(blob[a:b]) for a, b in zip(off, off[1:])),
                                  dtype=np.int64, count=len(off) - 1))
        hashed.append(h)
        owner.append(np.full(len(h), k, np.int64))
    hashes = np.concatenate(hashed)
    values, counts = np.unique(hashes, return_counts=True)
    suspects = set(values[counts > 1].tolist())  # equal hashes: compare the ids themselves
    if not suspects:
        return False
    seen: dict[bytes, int] = {}
    for k, unit in enumerate(units):
        blob, off = unit.id_table
        for a, b in zip(off, off[1:]):
            doc_id = blob[a:b]
            if hash(doc_id) in suspects and seen.setdefault(doc_id, k) != k:
                return True
    return False
