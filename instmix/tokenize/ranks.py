"""Rank tables of byte-level BPE tokenizers, and their cache on disk.

tiktoken, and gigatoken's tiktoken loader, merge byte pairs by the rank of the merged
token (lowest first). A Hugging Face byte-level BPE ``tokenizer.json`` gives the same
merges through the order of its ``merges`` list, so a table built from it ranks the single
bytes first (by id), then each merge's result by its place in that list; ``lut`` maps
ranks back to the tokenizer's ids. Added tokens that are not special (OLMo's whitespace
runs and PII placeholders) are matched in the text before pre-tokenization, as the
reference does, and get ranks after the merges. :func:`build` raises :class:`Unsupported`
for any tokenizer outside that shape.

Building a table walks the whole vocabulary and merge list in Python (0.3-0.6 s for
100k tokens). :func:`cached_table` keeps it in ``<cache>/<tokenizer sha256>/``:
``ranks.tiktoken`` (one ``base64(token bytes) rank`` line per rank, the format tiktoken
and gigatoken read), ``lut.npy``, and ``table.json`` (the rest, the other two files'
sha256 and its own), written last. It is built once per tokenizer and machine from the
bytes whose sha256 names the folder; a table that fails a checksum is rebuilt, and a
cache that cannot be written is skipped with a warning. Ids never rest on the cache: the
encoder checks probe strings at load and a sample of every unit against the reference.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from instmix.io.atomic import clean_stale_in, write_atomic

log = logging.getLogger(__name__)

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
NEVER_IN_UTF8 = {0xC0, 0xC1, *range(0xF5, 0x100)}
TABLE_VERSION = 1


class Unsupported(Exception):
    """The tokenizer is not a byte-level BPE this module reproduces exactly."""


@dataclass
class RankTable:
    """``ranks``: token bytes -> rank; ``lut``: rank -> id (plain added tokens included);
    ``plain``: non-special added token -> rank; ``pattern``: the pre-tokenizer's regex;
    ``nfc``: NFC-normalise first. ``file``: the cached ``.tiktoken`` file, if any."""

    pattern: str
    nfc: bool
    plain: dict[str, int]
    lut: np.ndarray
    file: str | None = None
    _ranks: dict[bytes, int] | None = field(default=None, repr=False)
    _ranks_data: bytes | None = field(default=None, repr=False)  # the checked file bytes

    @property
    def ranks(self) -> dict[bytes, int]:
        if self._ranks is None:
            self._ranks = _parse_ranks(self._ranks_data)
        return self._ranks


def byte_decoder() -> dict[str, int]:
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


def pattern_of(pre: dict | None) -> str:
    """The regex of a byte-level pre-tokenizer (alone, or split then byte-level)."""
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


def build(spec: dict) -> RankTable:
    """The rank table of a parsed ``tokenizer.json``."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or model.get("dropout"):
        raise Unsupported("not a plain BPE model")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise Unsupported("BPE with subword affixes")
    if model.get("ignore_merges"):  # whole-word vocabulary lookups before the merges
        raise Unsupported("BPE with ignore_merges")
    norm = spec.get("normalizer")
    if norm and norm.get("type") != "NFC":
        raise Unsupported(f"normalizer {norm.get('type')}")
    nfc = bool(norm)
    pattern = pattern_of(spec.get("pre_tokenizer"))
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    plain = sorted((t for t, v in added.items() if not v["special"]), key=len, reverse=True)
    for t in plain:
        flags = added[t]
        if flags.get("lstrip") or flags.get("rstrip") or flags.get("single_word"):
            raise Unsupported(f"added token {t!r} strips or matches whole words")
        if nfc and not flags.get("normalized") and not t.isascii():
            raise Unsupported(f"added token {t!r} is matched before normalization")
    dec = byte_decoder()

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
        ranks.setdefault(to_bytes(a) + to_bytes(b), len(ranks))
    ids = {to_bytes(t): i for t, i in vocab.items()}
    if not ranks.keys() <= ids.keys():
        raise Unsupported("a merge produces a token missing from the vocabulary")
    lut = np.empty(len(ranks) + len(plain), dtype=np.uint32)
    for bts, r in ranks.items():
        lut[r] = ids[bts]
    plain_rank = {t: len(ranks) + k for k, t in enumerate(plain)}
    for t, r in plain_rank.items():
        lut[r] = added[t]["id"]
    return RankTable(pattern, nfc, plain_rank, lut, _ranks=ranks)


def cached_table(path: str, sha256: str, cache: str | None,
                 need_file: bool = False) -> RankTable:
    """The rank table of the ``tokenizer.json`` at ``path`` (content ``sha256``), from
    ``cache`` when it holds an intact copy, else built (and stored there when possible).
    ``need_file``: the caller reads the ``.tiktoken`` file, so a cache that is missing or
    cannot be written raises :class:`Unsupported` (before any building)."""
    folder = os.path.join(os.path.expanduser(cache), sha256) if cache else None
    if folder is not None and (table := _read(folder)) is not None:
        return table
    if need_file and (folder is None or not _writable(folder)):
        raise Unsupported(f"rank cache {folder} cannot be written")
    with open(path, "rb") as f:
        data = f.read()
    if _sha(data) != sha256:
        raise Unsupported(f"{path} changed since it was loaded")
    try:
        table = build(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise Unsupported(f"unexpected tokenizer.json shape ({type(e).__name__}: {e})") from None
    if folder is not None:
        try:
            _write(folder, table)
        except OSError as e:
            log.warning("rank table cache %s not written (%s); built in memory", folder, e)
            if need_file:
                raise Unsupported(f"rank cache {folder} cannot be written") from None
    return table


def _writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    ranks = {}
    for line in data.splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_sha(meta: dict) -> str:
    return _sha(json.dumps({k: v for k, v in meta.items() if k != "meta_sha256"},
                           sort_keys=True).encode())


def _read(folder: str) -> RankTable | None:
    """The table in ``folder``, or None when absent, of another version, or damaged."""
    try:
        with open(os.path.join(folder, "table.json"), encoding="utf-8") as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or meta.get("version") != TABLE_VERSION:
            return None
        file = os.path.join(folder, "ranks.tiktoken")
        with open(file, "rb") as f:
            ranks = f.read()
        with open(os.path.join(folder, "lut.npy"), "rb") as f:
            lut_bytes = f.read()
        if (meta.get("meta_sha256") != _meta_sha(meta) or _sha(ranks) != meta["ranks_sha256"]
                or _sha(lut_bytes) != meta["lut_sha256"]):
            log.warning("rank table in %s fails its checksum; building it again", folder)
            return None
        lut = np.load(io.BytesIO(lut_bytes), allow_pickle=False)
        pattern, nfc, plain = meta["pattern"], meta["nfc"], meta["plain"]
        if not (isinstance(pattern, str) and isinstance(nfc, bool) and isinstance(plain, dict)
                and lut.dtype == np.uint32 and lut.ndim == 1):
            raise ValueError("unexpected field types")
        return RankTable(pattern, nfc, plain, lut, file, _ranks_data=ranks)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("rank table in %s unreadable (%s); building it again", folder, e)
        return None


def _write(folder: str, table: RankTable) -> None:
    os.makedirs(folder, exist_ok=True)
    clean_stale_in(folder)  # temporaries of writers that died here
    lines = b"".join(base64.b64encode(b) + b" %d\n" % r for b, r in table.ranks.items())
    buf = io.BytesIO()
    np.save(buf, table.lut, allow_pickle=False)
    lut_bytes = buf.getvalue()
    file = write_atomic(os.path.join(folder, "ranks.tiktoken"), lines)
    write_atomic(os.path.join(folder, "lut.npy"), lut_bytes)
    meta = {"version": TABLE_VERSION, "pattern": table.pattern, "nfc": table.nfc,
            "plain": table.plain, "ranks_sha256": _sha(lines), "lut_sha256": _sha(lut_bytes)}
    meta["meta_sha256"] = _meta_sha(meta)
    write_atomic(os.path.join(folder, "table.json"), json.dumps(meta, indent=1))  # last
    table.file = file
