"""Per cache unit: what dedup, decontamination and pair filters need of each document.

A unit's documents are read again (no tokenizer) and reduced to small per-document facts,
cached beside the token caches under ``<cache_dir>/clean/<content key>/``, one file per
kind of fact, each keyed by the settings it depends on:

- ``base.npz``: a hash of each document's id, the 16-byte key of its normalised text, its
  word count, and the parts (synthesized pairs) each document has;
- ``minhash-<perms>-<ngram>.npy``: MinHash signatures, (documents, perms) uint32;
- ``contam-<eval fingerprint>.npz``: per document and per part, the eval record its first
  shared n-gram came from (-1: none), with the records' names;
- ``filters-<settings hash>.npy``: per part, the pair filter that removes it (0: none).

None of them depends on the tokenizer, on ratios or on a dedup threshold, and none changes a
token cache. Files are written under a temporary name and renamed, so a reader sees whole
files only. Memory: one batch of documents plus the per-document arrays of the unit.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from instmix.config import PairFilters
from instmix.io.pages import save_npy
from instmix.sources.kinds import batch_documents

from .decontam import EvalIndex
from .filters import pair_reasons
from .minhash import MinHasher
from .text import concat, exact_key, word_hashes, words

VERSION = 1
REASONS = ("", "question_length", "answer_length", "repeated_ngrams", "ungrounded",
           "duplicate_question")
_BATCH_CHARS = 8 << 20


@dataclass(frozen=True)
class Wanted:
    """What a build needs of every unit (``None``: not needed)."""

    near: MinHasher | None = None
    evals: tuple[str, tuple[str, ...], int] | None = None  # (fingerprint, files, ngram)
    filters: PairFilters | None = None


@lru_cache(maxsize=2)
def eval_index(paths: tuple[str, ...], ngram: int) -> EvalIndex:
    """The eval n-gram table, loaded once per process."""
    return EvalIndex.load(paths, ngram)


def filters_key(spec: PairFilters) -> str:
    return hashlib.sha256(json.dumps([VERSION, spec.key()]).encode()).hexdigest()[:16]


def file_names(wanted: Wanted, with_parts: bool) -> dict[str, str]:
    names = {"base": "base.npz"}
    if wanted.near is not None:
        names["minhash"] = f"minhash-{wanted.near.num_perm}-{wanted.near.ngram}.npy"
    if wanted.evals is not None:
        names["contam"] = f"contam-{wanted.evals[0]}.npz"
    if wanted.filters is not None and with_parts:
        names["filters"] = f"filters-{filters_key(wanted.filters)}.npy"
    return names


class UnitSignatures:
    """A unit's cached facts, loaded (signatures memory-mapped)."""

    def __init__(self, folder: str, wanted: Wanted, with_parts: bool):
        names = file_names(wanted, with_parts)
        with np.load(os.path.join(folder, names["base"])) as z:
            self.doc_hash = z["doc_hash"]
            self.exact = z["exact"]
            self.words = z["words"]
            self.part_off = z["part_off"]
        self.minhash = (np.load(os.path.join(folder, names["minhash"]), mmap_mode="r")
                        if "minhash" in names else None)
        self.doc_hit = self.part_hit = None
        self.labels: list[str] = []
        if "contam" in names:
            with np.load(os.path.join(folder, names["contam"])) as z:
                self.doc_hit, self.part_hit = z["doc_hit"], z["part_hit"]
                self.labels = [str(s) for s in z["labels"]]
        self.reasons = (np.load(os.path.join(folder, names["filters"]))
                        if "filters" in names else None)

    @property
    def documents(self) -> int:
        return len(self.doc_hash)


def missing(folder: str, wanted: Wanted, with_parts: bool) -> list[str]:
    return [k for k, name in file_names(wanted, with_parts).items()
            if not os.path.exists(os.path.join(folder, name))]


def _save(folder: str, name: str, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise



def fixed_segments(doc) -> list[str]:
    """The text of a document outside its removable cuts, as separate pieces."""
    cuts = doc.cuts
    if not cuts:
        return [doc.text]
    out, pos = [], 0
    for c in sorted(cuts, key=lambda c: c.start):
        if c.start > pos:
            out.append(doc.text[pos:c.start])
        pos = max(pos, c.end)
    if pos < len(doc.text):
        out.append(doc.text[pos:])
    return out


def compute(folder: str, docs: Iterable, documents: int, wanted: Wanted, with_parts: bool,
            todo: list[str]) -> None:
    """Read ``docs`` (the unit's documents, in cache order) once and write the ``todo``
    files of :func:`file_names`."""
    os.makedirs(folder, exist_ok=True)
    names = file_names(wanted, with_parts)
    doc_hash = np.zeros(documents, dtype=np.uint64)
    exact = np.zeros((documents, 2), dtype=np.uint64)
    nwords = np.zeros(documents, dtype=np.int64)
    part_counts = np.zeros(documents, dtype=np.int64)
    doc_hit = np.full(documents, -1, dtype=np.int64)
    part_hits: list[np.ndarray] = []
    reasons: list[int] = []
    labels: dict[str, int] = {}
    index = eval_index(*wanted.evals[1:]) if "contam" in todo else None
    sig = tmp_sig = None
    if "minhash" in todo:
        fd, tmp_sig = tempfile.mkstemp(prefix=".minhash.", suffix=".tmp", dir=folder)
        os.close(fd)
        sig = np.lib.format.open_memmap(tmp_sig, mode="w+", dtype=np.uint32,
                                        shape=(documents, wanted.near.num_perm))
    try:
        i = 0
        for batch in batch_documents(docs, _BATCH_CHARS):
            j = i + len(batch)
            if j > documents:
                raise ValueError("the unit's documents changed since it was tokenized")
            ws = [words(d.text) for d in batch]
            hashes = [word_hashes(w) for w in ws]
            for k, (d, w) in enumerate(zip(batch, ws)):
                doc_hash[i + k] = int.from_bytes(
                    hashlib.blake2b(d.id.encode(), digest_size=8).digest(), "little")
                key = exact_key(w)
                exact[i + k] = (int.from_bytes(key[:8], "little"),
                                int.from_bytes(key[8:], "little"))
                nwords[i + k] = len(w)
                part_counts[i + k] = len(d.parts)
            if sig is not None:
                flat, off = concat(hashes, np.uint32)
                sig[i:j] = wanted.near.signatures(*wanted.near.shingles(flat, off))
            if index is not None:
                _contamination(batch, hashes, i, index, doc_hit, part_hits, labels)
            if "filters" in todo:
                for d in batch:
                    parts = d.parts
                    got = pair_reasons([(p.context, p.question, p.answer) for p in parts],
                                       wanted.filters)
                    reasons.extend(REASONS.index(r or "") for r in got)
            i = j
        if i != documents:
            raise ValueError("the unit's documents changed since it was tokenized")
        part_off = np.zeros(documents + 1, dtype=np.int64)
        np.cumsum(part_counts, out=part_off[1:])
        if "base" in todo:
            _save(folder, names["base"], lambda p: _savez(
                p, doc_hash=doc_hash, exact=exact, words=nwords, part_off=part_off))
        if index is not None:
            hits = np.concatenate(part_hits) if part_hits else np.zeros(0, np.int64)
            _save(folder, names["contam"], lambda p: _savez(
                p, doc_hit=doc_hit, part_hit=hits, labels=np.array(list(labels), dtype=str)))
        if "filters" in todo:
            _save(folder, names["filters"],
                  lambda p: save_npy(p, np.asarray(reasons, dtype=np.int8)))
        if sig is not None:
            sig.flush()
            del sig
            os.replace(tmp_sig, os.path.join(folder, names["minhash"]))
            tmp_sig = None
    finally:
        if tmp_sig is not None and os.path.exists(tmp_sig):
            os.remove(tmp_sig)


def _savez(path: str, **arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _contamination(batch, hashes, first: int, index: EvalIndex, doc_hit: np.ndarray,
                   part_hits: list, labels: dict[str, int]) -> None:
    """Eval hits of a batch: per document (its fixed text) and per part (question, answer).
    ``hashes``: the documents' word hashes (the fixed text of a document without cuts)."""
    segs, owner, part_segs, part_owner = [], [], [], []
    n_parts = 0
    for k, d in enumerate(batch):
        for s in (fixed_segments(d) if d.cuts else ()):
            segs.append(word_hashes(words(s)))
            owner.append(k)
        if not d.cuts:
            segs.append(hashes[k])
            owner.append(k)
        for p in d.parts:
            for s in (p.question, p.answer):
                part_segs.append(word_hashes(words(s)))
                part_owner.append(n_parts)
            n_parts += 1

    def first_per(segments, owners, count):
        out = np.full(count, -1, dtype=np.int64)
        if not segments:
            return out
        hits = index.first_hits(*concat(segments, np.uint32))
        for o, h in zip(owners, hits):
            if h >= 0 and out[o] < 0:
                out[o] = labels.setdefault(index.labels[h], len(labels))
        return out

    doc_hit[first:first + len(batch)] = first_per(segs, owner, len(batch))
    part_hits.append(first_per(part_segs, part_owner, n_parts))
