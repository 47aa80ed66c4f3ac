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
- ``meta.json``: counts, skipped records by reason, the tokenizer backend used.

Folders are written under a temporary name and renamed when complete, so an interrupted
run leaves nothing that is ever read as a cache.

A cache on an object store (``cache_dir: s3://...``) holds the same files under
``<cache_dir>/<key>/``, uploaded with ``meta.json`` last: a unit exists once its
``meta.json`` does. Units are tokenized into, and read from, a local mirror
(:func:`mirror_root`), downloaded once per machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from queue import Full, Queue

import numpy as np

from instmix.config import SourceConfig
from instmix.errors import InstmixError
from instmix.io import fs
from instmix.io.atomic import make_temp_dir
from instmix.io.hashing import hash_input
from instmix.sources.kinds import Document
from instmix.sources.registry import get_kind

from .encoder import BackendMismatch, Encoder
from .facts import TokenizerInfo
from .framing import Encoded, encode_documents

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 3: documents with cuts are encoded at their ends


def format_key(src: SourceConfig) -> dict:
    """The source options that change how records become tokens (not ratios or caps)."""
    return {"kind": src.kind, "text_field": src.text_field, "question_field": src.question_field,
            "response_field": src.response_field, "id_field": src.id_field,
            "txt_unit": src.txt_unit, "loss": src.loss, "options": dict(src.options)}


def unit_key(src: SourceConfig, paths: Sequence[str], label: str, tok: TokenizerInfo,
             file_hash: Callable[[str], str] | None = None) -> str:
    def default(p: str) -> str:
        return hash_input(p, src.storage_options)

    blob = json.dumps({"version": CACHE_VERSION, "tokenizer": tok.cache_key(),
                       "format": format_key(src), "label": label,
                       "inputs": [(file_hash or default)(p) for p in paths]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


UNIT_FILES = ("tokens.bin", "offsets.npy", "ids.bin", "ids_off.npy", "mask.bin", "meta.json")


def mirror_root() -> str:
    """Local folder holding downloaded (and freshly tokenized) units of remote caches."""
    return os.path.join(tempfile.gettempdir(), f"instmix-{os.getuid()}", "units")


def unit_present(root: str, key: str, storage_options=None) -> bool:
    """A finished unit exists under ``root`` (for a URL: its ``meta.json`` was uploaded)."""
    if fs.is_url(root):
        return fs.isfile(fs.join(root, key, "meta.json"), storage_options)
    return os.path.isdir(os.path.join(root, key))


def unit_folder(root: str, key: str, storage_options=None) -> str | None:
    """The local folder of a finished unit (downloaded from a remote ``root`` when not
    mirrored yet), or None when the unit does not exist."""
    if not fs.is_url(root):
        folder = os.path.join(root, key)
        return folder if os.path.isdir(folder) else None
    if not unit_present(root, key, storage_options):
        return None
    final = os.path.join(mirror_root(), key)
    if os.path.isdir(final):
        return final
    tmp = make_temp_dir(final)
    try:
        names = set(fs.listdir(fs.join(root, key), storage_options))
        for name in UNIT_FILES:
            if name in names:
                fs.get_file(fs.join(root, key, name), os.path.join(tmp, name), storage_options)
        try:
            os.rename(tmp, final)
        except OSError:  # another process mirrored it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass
class UnitMeta:
    documents: int
    tokens: int
    skipped: dict
    backend: str
    has_mask: bool
    loss_tokens: int
    composition: dict = field(default_factory=dict)  # tag key -> value -> documents


class CacheUnit:
    """A finished cache folder, opened read-only (memory-mapped)."""

    def __init__(self, folder: str, dtype: str):
        self.folder = folder
        self.dtype = np.dtype(dtype)
        with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
            self.meta = UnitMeta(**json.load(f))

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
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @cached_property
    def cuts(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(rows, per-document boundaries)`` of the documents' cuts, or None."""
        path = os.path.join(self.folder, "cuts.npy")
        if not os.path.exists(path):
            return None
        return np.load(path), np.load(os.path.join(self.folder, "cut_off.npy"))


def _batches(docs: Iterator[Document], batch_bytes: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc.text)
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a thread so reading and parsing overlap tokenization. The thread
    stops when the consumer does (normally or by an exception)."""
    q: Queue = Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def work():
        try:
            for item in it:
                if not put(item):
                    return
        except BaseException as e:  # re-raised in the consumer
            put(e)
            return
        put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class UnitWriter:
    """Tokenize documents into a temporary folder, then publish it atomically."""

    def __init__(self, root: str, key: str, info: TokenizerInfo, with_mask: bool):
        os.makedirs(root, exist_ok=True)
        self.final = os.path.join(root, key)
        self.tmp = make_temp_dir(self.final)
        self.info = info
        self.dtype = np.dtype(info.dtype)
        self.with_mask = with_mask
        self._tok = open(os.path.join(self.tmp, "tokens.bin"), "wb")
        self._mask = open(os.path.join(self.tmp, "mask.bin"), "wb") if with_mask else None
        self._offsets = [np.zeros(1, dtype=np.int64)]
        self._ids = open(os.path.join(self.tmp, "ids.bin"), "wb")
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
        enc.tokens.astype(self.dtype, copy=False).tofile(self._tok)
        if self._mask is not None:
            m = np.ones(enc.tokens.size, dtype=np.bool_) if enc.mask is None else enc.mask
            m.tofile(self._mask)
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
        self._ids.write(b"".join(encoded))
        self._id_lens.append(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
        self.tokens += int(enc.offsets[-1])
        self.documents += len(doc_ids)

    def publish(self, skipped: dict, backend: str) -> str:
        for f in (self._tok, self._ids, self._mask):
            if f is not None:
                f.close()
        np.save(os.path.join(self.tmp, "offsets.npy"), np.concatenate(self._offsets))
        id_lens = np.concatenate(self._id_lens) if self._id_lens else np.zeros(0, np.int64)
        np.save(os.path.join(self.tmp, "ids_off.npy"),
                np.concatenate([[0], np.cumsum(id_lens)]).astype(np.int64))
        if self._cuts:
            np.save(os.path.join(self.tmp, "cuts.npy"), np.concatenate(self._cuts))
            per_doc = np.bincount(np.concatenate(self._cut_docs), minlength=self.documents)
            np.save(os.path.join(self.tmp, "cut_off.npy"),
                    np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int64))
        composition = {k: dict(sorted(v.items())) for k, v in sorted(self.composition.items())}
        meta = UnitMeta(self.documents, self.tokens, dict(sorted(skipped.items())), backend,
                        self.with_mask, self.loss_tokens, composition)
        with open(os.path.join(self.tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(asdict(meta), f, indent=1)
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


def build_unit(root: str, key: str, src: SourceConfig, paths: Sequence[str], label: str,
               info: TokenizerInfo, encoder: Encoder, *, skip_bad: bool, batch_bytes: int,
               progress: Callable[[int], None] | None = None) -> CacheUnit:
    """Tokenize ``paths`` of ``src`` into the cache (unless present) and open it.

    With a fast backend, a sampled mismatch abandons the unit and encodes it again, whole,
    with the reference: no id from a backend that disagreed is ever cached.
    """
    so = src.storage_options
    folder = unit_folder(root, key, so)
    if folder is not None:
        return CacheUnit(folder, info.dtype)
    if fs.is_url(root) and os.path.isdir(os.path.join(mirror_root(), key)):
        return CacheUnit(_upload_unit(root, key, so), info.dtype)  # tokenized, not uploaded
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
    so = src.storage_options
    remote = fs.is_url(root)
    kind = get_kind(src.kind)
    with_mask = src.loss != "all"
    writer = UnitWriter(mirror_root() if remote else root, key, info, with_mask)
    skipped: dict = {}
    encoder.start_unit()
    try:
        docs = kind.documents(src, paths, label, skip_bad=skip_bad, stats=skipped)
        for batch in _prefetch(_batches(docs, batch_bytes)):
            writer.add(encode_documents(batch, encoder, info, src.loss, strict),
                       [d.id for d in batch])
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
        published = _upload_unit(root, key, so)
    return CacheUnit(published, info.dtype)


def _upload_unit(root: str, key: str, storage_options) -> str:
    """Upload a mirrored unit to a remote cache, ``meta.json`` last (its commit point)."""
    folder = os.path.join(mirror_root(), key)
    fs.upload_tree(folder, fs.join(root, key), storage_options, last=("meta.json",))
    return folder
