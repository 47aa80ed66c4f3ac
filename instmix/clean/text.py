"""Normalised words and their hashes: what dedup, decontamination and pair filters compare.

- Normalisation: Unicode NFKC, then casefold.
- Words: maximal runs of ASCII letters and digits and of non-ASCII word characters;
  punctuation, symbols and whitespace separate words and are dropped.
- Word hash: CRC-32 of the word's UTF-8 bytes. N-gram hash: a 64-bit polynomial over the
  word hashes, finished with the splitmix64 mixer. Both are pure functions of the text, so
  signatures are the same on every machine and in every process.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Sequence

import numpy as np

# byte -> itself for ASCII letters/digits and any byte of a multi-byte character, else a space
_TABLE = bytes(c if c >= 128 or chr(c).isalnum() else 32 for c in range(256))
_NON_ASCII_PUNCT = re.compile(r"[^\x00-\x7f\w]+")  # non-ASCII characters that are not letters
_MULT = np.uint64(0x9E3779B97F4A7C15)
U64 = np.uint64


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    if not text.isascii():
        text = _NON_ASCII_PUNCT.sub(" ", text)
    return text


def words(text: str) -> list[bytes]:
    """The normalised words of ``text`` (UTF-8 bytes)."""
    return normalise(text).encode("utf-8").translate(_TABLE).split()


def word_hashes(ws: Sequence[bytes]) -> np.ndarray:
    return np.fromiter(map(zlib.crc32, ws), dtype=np.uint32, count=len(ws))


def exact_key(ws: Sequence[bytes]) -> bytes:
    """16 bytes identifying the normalised text (its words joined by one space)."""
    return hashlib.blake2b(b" ".join(ws), digest_size=16).digest()


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection on uint64), element-wise."""
    x = x ^ (x >> U64(30))
    x = x * U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> U64(27))
    x = x * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


def ngram_hashes(hashes: np.ndarray, offsets: np.ndarray, n: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram inside each segment ``hashes[offsets[i]:offsets[i+1]]``
    (none crosses a segment end). Returns ``(ngrams, counts)``, ``counts[i]`` the number of
    n-grams of segment ``i`` (``max(0, words - n + 1)``), in segment order."""
    lens = np.diff(offsets)
    counts = np.maximum(lens - n + 1, 0)
    if hashes.size < n or not counts.any():
        return np.zeros(0, dtype=np.uint64), counts
    w = mix64(hashes.astype(np.uint64))
    windows = hashes.size - n + 1
    h = w[:windows].copy()
    for k in range(1, n):
        h *= _MULT
        h += w[k:k + windows]
    starts = np.repeat(offsets[:-1], counts) + _ranges(counts)
    return mix64(h[starts]), counts


def _ranges(counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(c)`` for every ``c`` in ``counts``."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def concat(arrays: Sequence[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Arrays -> (flat, offsets)."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    flat = np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
    return flat, offsets
