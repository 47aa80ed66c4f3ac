"""Per-input token caches.

Each cache unit (one input file, or a whole source for kinds that read files together) is
tokenized once into a folder keyed by a fingerprint of its content, the tokenizer and the
formatting options. A changed input re-tokenizes only its own unit; every mixture built
from the same inputs reuses the caches.

A unit folder holds:
- ``tokens.bin``: flat token ids (the build's dtype), every document as [BOS] ids EOS;
- ``offsets.npy``: int64, ``n+1`` document boundaries into ``tokens.bin``;
- ``ids.bin`` + ``ids_off.npy``: UTF-8 document ids, concatenated, with int64 boundaries;
- ``mask.bin`` (only for ``loss != all``): one bool per token, True = train on it;
- ``cuts.npy`` + ``cut_off.npy`` (only for documents with cuts, see
  :class:`~instmix.sources.kinds.Cut`): int64 rows ``(token start, token end, parts lo,
  parts hi)`` into ``tokens.bin``, and ``n+1`` boundaries of each document's rows;
- ``meta.json``: counts, skipped records by reason, the tokenizer backend used, and the
  sha256 of every other file and of itself (:mod:`.unit_check`).

Folders are written under a temporary name and renamed when complete, so an interrupted
run leaves nothing that is ever read as a cache. Every open re-checks the checksums; a
damaged unit is set aside and rebuilt, with a warning. A cache on an object store is
mirrored locally (:mod:`.remote_cache`).

No document holds the EOS id anywhere but at its end: a text the tokenizer maps to EOS
inside (a tokenizer whose EOS is an ordinary word) is refused, or skipped and counted as
``eos_in_text`` with ``skip_bad_records``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from instmix.config import SourceConfig
from instmix.errors import InputError, InstmixError
from instmix.io import fs
from instmix.io.atomic import make_temp_dir, temp_name
from instmix.io.background import read_ahead
from instmix.io.hashing import hash_input
from instmix.io.pages import open_chunked, save_npy
from instmix.sources.kinds import batch_documents
from instmix.sources.registry import get_kind

from .encoder import BackendMismatch, Encoder
from .facts import TokenizerInfo
from .framing import Encoded, encode_documents, inner_eos
from .remote_cache import fetch_unit, mirror_root, upload_unit
from .unit_check import META, DamagedUnit, check_unit, load_meta, meta_digest

CACHE_VERSION = 4  # 3: documents with cuts encoded at their ends; 4: checksummed units,
#                    skip_bad_records in the key

log = logging.getLogger(__name__)


def format_key(src: SourceConfig) -> dict:
    """The source options that change how records become tokens (not ratios or caps)."""
    return {"kind": src.kind, "text_field": src.text_field, "question_field": src.question_field,
            "response_field": src.response_field, "id_field": src.id_field,
            "txt_unit": src.txt_unit, "loss": src.loss, "options": dict(src.options)}


def unit_key(src: SourceConfig, paths: Sequence[str], label: str, tok: TokenizerInfo,
             file_hash: Callable[[str], str] | None = None, *, skip_bad: bool = False) -> str:
    """Fingerprint of everything a unit's content depends on: inputs, tokenizer, format
    options, label (document ids) and ``skip_bad_records`` (which records are kept).
    Inputs enter by content (``file_hash``, default :func:`hash_input`), never by place."""
    if file_hash is None:
        def file_hash(p: str) -> str:
            return hash_input(p, src.storage_options)
    blob = json.dumps({"version": CACHE_VERSION, "tokenizer": tok.cache_key(),
                       "format": format_key(src), "label": label, "skip_bad": skip_bad,
                       "inputs": [_hash(file_hash, p) for p in paths]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _hash(file_hash: Callable[[str], str], path: str) -> str:
    try:
        return file_hash(path)
    except OSError as e:
        raise InputError(path, None, None, f"cannot read ({e.strerror or e}); check its "
                         "permissions and the disk") from None


@dataclass
class UnitMeta:
    documents: int
    tokens: int
    skipped: dict
    backend: str
    has_mask: bool
    loss_tokens: int
    composition: dict = field(default_factory=dict)  # tag key -> value -> documents
    files: dict = field(default_factory=dict)  # file name -> sha256


class CacheUnit:
    """A finished cache folder, opened read-only (memory-mapped) after
    :func:`~.unit_check.check_unit` (raises DamagedUnit)."""

    def __init__(self, folder: str, dtype: str, *, check: bool = True):
        self.folder = folder
        self.dtype = np.dtype(dtype)
        meta = check_unit(folder, self.dtype) if check else load_meta(folder)
        self.meta = UnitMeta(**{k: v for k, v in meta.items() if k != "meta_sha256"})

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.load(os.path.join(self.folder, "offsets.npy"), mmap_mode="r")

    @cached_property
    def tokens(self) -> np.ndarray:
        if self.meta.tokens == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(os.path.join(self.folder, "tokens.bin"), dtype=self.dtype, mode="r")

    @cached_property
    def mask(self) -> np.ndarray | None:
        if not self.meta.has_mask or self.meta.tokens == 0:
            return None
        return np.memmap(os.path.join(self.folder, "mask.bin"), dtype=np.bool_, mode="r")

    @cached_property
    def _ids(self) -> tuple[bytes, np.ndarray]:
        with open(os.path.join(self.folder, "ids.bin"), "rb") as f:
            blob = f.read()
        return blob, np.load(os.path.join(self.folder, "ids_off.npy"))

    def doc_id(self, i: int) -> str:
        blob, off = self._ids
        return blob[off[i]:off[i + 1]].decode("utf-8")

    @property
    def id_table(self) -> tuple[bytes, list[int]]:
        """``(blob, bounds)``: document ``i``'s id is ``blob[bounds[i]:bounds[i + 1]]``."""
        blob, off = self._ids
        return blob, off.tolist()

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @cached_property
    def cuts(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(rows, per-document boundaries)`` of the documents' cuts, or None."""
        path = os.path.join(self.folder, "cuts.npy")
        if not os.path.exists(path):
            return None
        return np.load(path), np.load(os.path.join(self.folder, "cut_off.npy"))


class UnitWriter:
    """Tokenize documents into a temporary folder, then publish it atomically."""

    def __init__(self, root: str, key: str, info: TokenizerInfo, with_mask: bool):
        os.makedirs(root, exist_ok=True)
        self.final = os.path.join(root, key)
        self.tmp = make_temp_dir(self.final)
        self.info = info
        self.dtype = np.dtype(info.dtype)
        self.with_mask = with_mask
        self._tok = open_chunked(os.path.join(self.tmp, "tokens.bin"))
        self._mask = open_chunked(os.path.join(self.tmp, "mask.bin")) if with_mask else None
        self._offsets = [np.zeros(1, dtype=np.int64)]
        self._ids = open_chunked(os.path.join(self.tmp, "ids.bin"))
        self._sha = {"tokens.bin": hashlib.sha256(), "ids.bin": hashlib.sha256()}
        if with_mask:
            self._sha["mask.bin"] = hashlib.sha256()
        self._id_lens: list[np.ndarray] = []
        self._cuts: list[np.ndarray] = []
        self._cut_docs: list[np.ndarray] = []
        self.tokens = 0
        self.documents = 0
        self.loss_tokens = 0
        self.composition: dict[str, dict[str, int]] = {}

    def count_tags(self, docs) -> None:
        for doc in docs:
            for key, value in doc.tags:
                per = self.composition.setdefault(key, {})
                per[value] = per.get(value, 0) + 1

    def add(self, enc: Encoded, doc_ids: list[str]) -> None:
        """Append a batch of encoded documents (tokens already framed by BOS/EOS)."""
        if enc.tokens.size and int(enc.tokens.max()) >= self.info.vocab_size:
            raise InstmixError(f"tokenizer produced id {int(enc.tokens.max())} >= vocab size "
                               f"{self.info.vocab_size}")
        tok = np.ascontiguousarray(enc.tokens, dtype=self.dtype)
        self._tok.write(tok)
        self._sha["tokens.bin"].update(memoryview(tok).cast("B"))
        if self._mask is not None:
            m = np.ones(enc.tokens.size, dtype=np.bool_) if enc.mask is None else enc.mask
            m = np.ascontiguousarray(m, dtype=np.bool_)
            self._mask.write(m)
            self._sha["mask.bin"].update(memoryview(m).cast("B"))
            self.loss_tokens += int(m.sum())
        else:
            self.loss_tokens += enc.tokens.size
        self._offsets.append(self.tokens + enc.offsets[1:])
        if enc.cuts is not None and len(enc.cuts):
            rows = enc.cuts[:, 1:].copy()
            rows[:, :2] += self.tokens
            self._cuts.append(rows)
            self._cut_docs.append(self.documents + enc.cuts[:, 0])
        encoded = [d.encode("utf-8") for d in doc_ids]
        blob = b"".join(encoded)
        self._ids.write(blob)
        self._sha["ids.bin"].update(blob)
        self._id_lens.append(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
        self.tokens += int(enc.offsets[-1])
        self.documents += len(doc_ids)

    def publish(self, skipped: dict, backend: str) -> str:
        for f in (self._tok, self._ids, self._mask):
            if f is not None:
                f.close()
        files = {name: h.hexdigest() for name, h in self._sha.items()}
        arrays = {"offsets.npy": np.concatenate(self._offsets)}
        id_lens = np.concatenate(self._id_lens) if self._id_lens else np.zeros(0, np.int64)
        arrays["ids_off.npy"] = np.concatenate([[0], np.cumsum(id_lens)]).astype(np.int64)
        if self._cuts:
            arrays["cuts.npy"] = np.concatenate(self._cuts)
            per_doc = np.bincount(np.concatenate(self._cut_docs), minlength=self.documents)
            arrays["cut_off.npy"] = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int64)
        for name, array in arrays.items():  # hashed as written, not read back
            files[name] = save_npy(os.path.join(self.tmp, name), array)
        composition = {k: dict(sorted(v.items())) for k, v in sorted(self.composition.items())}
        meta = asdict(UnitMeta(self.documents, self.tokens, dict(sorted(skipped.items())),
                               backend, self.with_mask, self.loss_tokens, composition,
                               dict(sorted(files.items()))))
        meta["meta_sha256"] = meta_digest(meta)
        with open(os.path.join(self.tmp, META), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.rename(self.tmp, self.final)
        except OSError:  # another process published the same key first
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        for f in (self._tok, self._ids, self._mask):
            if f is not None and not f.closed:
                f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def open_unit(root: str, key: str, dtype: str, storage_options=None) -> CacheUnit | None:
    """The unit ``root/key`` if it exists and its checksums hold; a damaged one is set
    aside (and so rebuilt by the caller) with a warning. A remote ``root``'s unit is read
    from its local mirror (downloaded first when needed); one tokenized here but not yet
    uploaded is uploaded now."""
    if fs.is_url(root):
        folder = fetch_unit(root, key, storage_options)
        if folder is None:
            mirrored = os.path.join(mirror_root(), key)
            if not os.path.isdir(mirrored) or open_unit(mirror_root(), key, dtype) is None:
                return None
            folder = upload_unit(root, key, storage_options)
    else:
        folder = os.path.join(root, key)
    if not os.path.isdir(folder):
        return None
    try:
        return CacheUnit(folder, dtype)
    except DamagedUnit as e:
        log.warning("token cache %s is damaged (%s); rebuilding it", folder, e)
        _set_aside(folder)
        return None


def build_unit(root: str, key: str, src: SourceConfig, paths: Sequence[str], label: str,
               info: TokenizerInfo, encoder: Encoder, *, skip_bad: bool, batch_bytes: int,
               progress: Callable[[int], None] | None = None) -> CacheUnit:
    """Tokenize ``paths`` of ``src`` into the cache (unless present) and open it.

    With a fast backend, a sampled mismatch abandons the unit and encodes it again, whole,
    with the reference: no id from a backend that disagreed is ever cached.
    """
    unit = open_unit(root, key, info.dtype, src.storage_options)
    if unit is not None:
        return unit
    args = (root, key, src, paths, label, info)
    if encoder.fast is None:
        return _write_unit(*args, encoder, False, skip_bad, batch_bytes, progress)
    try:
        return _write_unit(*args, encoder, True, skip_bad, batch_bytes, progress)
    except BackendMismatch:
        log.warning("%s: the %s backend disagreed with the reference on a sampled document; "
                    "encoding the whole unit again with the reference", ", ".join(paths),
                    encoder.backend)
        return _write_unit(*args, encoder.reference_only(), False, skip_bad, batch_bytes,
                           progress)


def _write_unit(root: str, key: str, src: SourceConfig, paths: Sequence[str], label: str,
                info: TokenizerInfo, encoder: Encoder, strict: bool, skip_bad: bool,
                batch_bytes: int, progress: Callable[[int], None] | None) -> CacheUnit:
    kind = get_kind(src.kind)
    with_mask = src.loss != "all"
    remote = fs.is_url(root)
    writer = UnitWriter(mirror_root() if remote else root, key, info, with_mask)
    skipped: dict = {}
    encoder.start_unit()
    try:
        docs = kind.documents(src, paths, label, skip_bad=skip_bad, stats=skipped)
        for batch in read_ahead(batch_documents(docs, batch_bytes)):
            enc = encode_documents(batch, encoder, info, src.loss, strict)
            bad = inner_eos(enc, info)
            if bad.size:
                doc = batch[int(bad[0])]
                if not skip_bad:
                    raise InputError(", ".join(paths), None, None, (
                        f"document {doc.id}: the tokenizer maps its text to the EOS id "
                        f"{info.eos_token_id} ({info.eos_token!r}) inside the document; "
                        "remove it from the text, or set skip_bad_records: true to skip "
                        "such documents"))
                skipped["eos_in_text"] = skipped.get("eos_in_text", 0) + int(bad.size)
                keep = np.ones(len(batch), dtype=bool)
                keep[bad] = False
                enc = enc.select(keep)
                batch = [d for d, k in zip(batch, keep) if k]
                if not batch:
                    continue
            writer.add(enc, [d.id for d in batch])
            writer.count_tags(batch)
            if progress:
                progress(sum(len(d.text) for d in batch))
        if writer.documents == 0:
            raise InstmixError(f"{', '.join(paths)}: no documents (skipped: "
                               f"{skipped or 'none'})")
        published = writer.publish(skipped, encoder.backend)
    except BaseException:
        writer.abort()
        raise
    if remote:
        published = upload_unit(root, key, src.storage_options)
    # written and hashed just now; every later open checks it
    return CacheUnit(published, info.dtype, check=False)


def _set_aside(folder: str) -> None:
    """Move a damaged unit out of the way (an owner-marked name) and remove it; a
    concurrent build may have done so already."""
    old = temp_name(folder, "old")
    try:
        os.rename(folder, old)
    except FileNotFoundError:
        return
    shutil.rmtree(old, ignore_errors=True)
