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

import json
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

import numpy as np
import tiktoken

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


NEVER_IN_UTF8 = {0xC0, 0xC1, *range(0xF5, 0x100)}


class Unsupported(Exception):
    """The tokenizer is not a byte-level BPE this module reproduces exactly."""


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 byte values, inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _pattern(pre: dict | None) -> str:
    if not pre:
        raise Unsupported("no pre-tokenizer")
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            raise Unsupported("ByteLevel with add_prefix_space or without its regex")
        return GPT2_PATTERN
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers", [])
        if (len(steps) == 2 and steps[0].get("type") == "Split"
                and steps[0].get("behavior") == "Removed" and steps[0].get("invert") is True
                and "Regex" in steps[0].get("pattern", {})
                and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)
                and not steps[1].get("add_prefix_space")):
            return steps[0]["pattern"]["Regex"]
    raise Unsupported(f"pre-tokenizer {pre.get('type')}")


class FastBPE:
    """``encode(texts) -> (ids uint32, lengths int64)``, equal to the reference's ids."""

    def __init__(self, spec: dict, threads: int = 2):
        model = spec.get("model") or {}
        if model.get("type") != "BPE" or model.get("byte_fallback") or model.get("dropout"):
            raise Unsupported("not a plain BPE model")
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise Unsupported("BPE with subword affixes")
        norm = spec.get("normalizer")
        if norm and norm.get("type") != "NFC":
            raise Unsupported(f"normalizer {norm.get('type')}")
        self.nfc = bool(norm)
        pattern = _pattern(spec.get("pre_tokenizer"))
        added = {t["content"]: t for t in spec.get("added_tokens", [])}
        plain = sorted((t for t, v in added.items() if not v["special"]), key=len, reverse=True)
        for t in plain:
            flags = added[t]
            if flags.get("lstrip") or flags.get("rstrip") or flags.get("single_word"):
                raise Unsupported(f"added token {t!r} strips or matches whole words")
            if self.nfc and not flags.get("normalized") and not t.isascii():
                raise Unsupported(f"added token {t!r} is matched before normalization")
        dec = _byte_decoder()

        def to_bytes(token: str) -> bytes:
            try:
                return bytes(dec[c] for c in token)
            except KeyError:
                raise Unsupported(f"vocabulary entry {token!r} is not byte-level") from None

        vocab = {t: i for t, i in model["vocab"].items() if t not in added}
        ranks: dict[bytes, int] = {}
        for _, t in sorted((i, t) for t, i in vocab.items() if len(to_bytes(t)) == 1):
            ranks[to_bytes(t)] = len(ranks)
        missing = set(range(256)) - {b[0] for b in ranks}
        if missing - NEVER_IN_UTF8:  # bytes that valid UTF-8 never holds may be absent
            raise Unsupported(f"the vocabulary lacks bytes {sorted(missing)}")
        for m in model.get("merges", []):
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            merged = to_bytes(a) + to_bytes(b)
            ranks.setdefault(merged, len(ranks))
        ids = {to_bytes(t): i for t, i in vocab.items()}
        if not ranks.keys() <= ids.keys():
            raise Unsupported("a merge produces a token missing from the vocabulary")
        # Ranks -> ids; plain added tokens get ranks after the merges.
        self.lut = np.empty(len(ranks) + len(plain), dtype=np.uint32)
        for bts, r in ranks.items():
            self.lut[r] = ids[bts]
        self.added_rank = {t: len(ranks) + k for k, t in enumerate(plain)}
        for t, r in self.added_rank.items():
            self.lut[r] = added[t]["id"]
        self.split = re.compile("(" + "|".join(map(re.escape, plain)) + ")") if plain else None
        enc = tiktoken.Encoding(name="instmix", pat_str=pattern, mergeable_ranks=ranks,
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


def load(path: str, threads: int = 2) -> FastBPE:
    with open(path, encoding="utf-8") as f:
        return FastBPE(json.load(f), threads)
