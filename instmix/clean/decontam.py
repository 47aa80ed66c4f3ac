"""N-gram decontamination against evaluation sets.

Every string of every record of the eval files (nested in lists and mappings too) is eval
text. Its word n-grams (``ngram`` words, 13 by default: the overlap GPT-3 used to find
benchmark contamination, Brown et al. 2020, appendix C) go into a sorted hash table; a
string of fewer words has no n-gram and cannot match, so short answers ("Denver Broncos")
never remove a document. A document or pair is contaminated when one of its n-grams is in
the table; the first such n-gram names the eval record (file and position) it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..io.hashing import hash_input
from ..io.readers import iter_records
from .text import concat, ngram_hashes, word_hashes, words

VERSION = 1
_BITS = 24


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif hasattr(value, "tolist"):  # numpy/arrow arrays from table formats
        yield from _strings(value.tolist())


def fingerprint(paths: Sequence[str], ngram: int) -> str:
    """Names the eval set's content and n-gram size (what the verdicts depend on)."""
    blob = json.dumps({"version": VERSION, "ngram": ngram,
                       "files": [hash_input(p) for p in paths]})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class EvalIndex:
    """Sorted n-gram hashes of the eval text, with the record each came from."""

    ngram: int
    hashes: np.ndarray   # uint64, sorted
    record: np.ndarray   # int32, index into ``labels``
    labels: list[str]    # "path:position" of each record that has n-grams

    @cached_property
    def _bitmap(self) -> np.ndarray:
        """A 2**24-slot presence filter over the low bits of the hashes (a quick no)."""
        bits = np.zeros(1 << _BITS, dtype=bool)
        bits[self.hashes & np.uint64((1 << _BITS) - 1)] = True
        return bits

    @classmethod
    def load(cls, paths: Sequence[str], ngram: int) -> EvalIndex:
        grams, owners, labels = [], [], []
        for path in paths:
            for pos, rec in iter_records(path):
                hashes = [word_hashes(words(s)) for s in _strings(dict(rec))]
                flat, off = concat(hashes, np.uint32)
                g, _ = ngram_hashes(flat, off, ngram)
                if g.size:
                    grams.append(g)
                    owners.append(np.full(g.size, len(labels), dtype=np.int32))
                    labels.append(f"{path}:{pos}")
        if not grams:
            return cls(ngram, np.zeros(0, np.uint64), np.zeros(0, np.int32), labels)
        g, o = np.concatenate(grams), np.concatenate(owners)
        order = np.lexsort((o, g))
        g, o = g[order], o[order]
        first = np.ones(len(g), dtype=bool)
        first[1:] = g[1:] != g[:-1]  # keep the first record of an n-gram shared by several
        return cls(ngram, g[first], o[first], labels)

    def first_hits(self, hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Per segment of word hashes: the eval record of its first n-gram found in the eval
        text, or -1."""
        n = len(offsets) - 1
        out = np.full(n, -1, dtype=np.int64)
        grams, counts = ngram_hashes(hashes, offsets, self.ngram)
        if not grams.size or not self.hashes.size:
            return out
        maybe = np.flatnonzero(self._bitmap[grams & np.uint64((1 << _BITS) - 1)])
        at = np.minimum(np.searchsorted(self.hashes, grams[maybe]), len(self.hashes) - 1)
        hit = maybe[self.hashes[at] == grams[maybe]]
        at = at[self.hashes[at] == grams[maybe]]
        if hit.size:
            owner = np.repeat(np.arange(n), counts)[hit]
            seg, first = np.unique(owner, return_index=True)
            out[seg] = self.record[at[first]]
        return out
