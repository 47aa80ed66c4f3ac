"""A tiktoken encoder equivalent to a Hugging Face byte-level BPE ``tokenizer.json``.

tiktoken runs the same algorithm (regex pre-tokenization, then byte-pair merges by rank)
several times faster than ``tokenizers``. Equivalence needs care in three places:

- Ranks: Hugging Face merges by the order of its ``merges`` list, tiktoken by the rank of
  the merged token. Ranks are therefore the merge order (single bytes first) and a lookup
  table maps ranks back to the tokenizer's ids.
- Added tokens that are not special (OLMo's whitespace runs and PII placeholders) are split
  out of the text before pre-tokenization, leftmost-longest, as ``tokenizers`` does. Special
  tokens are ordinary text (the reference runs with ``encode_special_tokens``).
- An NFC normalizer is applied before splitting, as the reference does.

:func:`load` raises :class:`Unsupported` for any tokenizer outside that shape (other
models, normalizers, pre-tokenizers or added-token flags), and the caller uses the
reference instead.
"""

from __future__ import annotations

import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

import numpy as np
import tiktoken

from .ranks import RankTable, Unsupported, cached_table

__all__ = ["FastBPE", "Unsupported", "load"]


class FastBPE:
    """``encode(texts) -> (ids uint32, lengths int64)``, equal to the reference's ids."""

    def __init__(self, table: RankTable, threads: int = 2):
        self.nfc = table.nfc
        self.lut = table.lut
        self.added_rank = table.plain
        plain = sorted(table.plain, key=len, reverse=True)
        self.split = re.compile("(" + "|".join(map(re.escape, plain)) + ")") if plain else None
        enc = tiktoken.Encoding(name="instmix", pat_str=table.pattern,
                                mergeable_ranks=table.ranks,
                                special_tokens={})
        self._encode = enc._core_bpe.encode_ordinary  # releases the GIL while it runs
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def _segments(self, texts: list[str]) -> tuple[list, list[int]]:
        segs: list = []
        per_doc: list[int] = []
        for t in texts:
            if self.nfc and not unicodedata.is_normalized("NFC", t):
                t = unicodedata.normalize("NFC", t)
            if self.split is None:
                segs.append(t)
                per_doc.append(1)
                continue
            n0 = len(segs)
            for k, part in enumerate(self.split.split(t)):
                if k % 2:
                    segs.append(self.added_rank[part])
                elif part:
                    segs.append(part)
            per_doc.append(len(segs) - n0)
        return segs, per_doc

    def _work(self, segs: list) -> list:
        f = self._encode
        return [f(s) if type(s) is str else (s,) for s in segs]

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        segs, per_doc = self._segments(texts)
        if self._pool is None or len(segs) < 2:
            lists = self._work(segs)
        else:
            step = -(-len(segs) // self.threads)
            parts = self._pool.map(self._work, [segs[i:i + step] for i in range(0, len(segs), step)])
            lists = list(chain.from_iterable(parts))
        seg_len = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        ranks = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(seg_len.sum()))
        doc = np.repeat(np.arange(len(texts)), per_doc)
        lengths = np.bincount(doc, weights=seg_len, minlength=len(texts)).astype(np.int64)
        return self.lut[ranks], lengths


def load(path: str, sha256: str, threads: int = 2, rank_cache: str | None = None) -> FastBPE:
    """The encoder of the ``tokenizer.json`` at ``path`` (content ``sha256``), its rank
    table from ``rank_cache`` (see :mod:`instmix.tokenize.ranks`; None: built here)."""
    return FastBPE(cached_table(path, sha256, rank_cache), threads)
