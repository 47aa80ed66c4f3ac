"""Content hashes of input files: what cache keys and fingerprints are made of.

Only bytes (and, for folders, relative names) enter a hash, so the same data hashes the
same from a local folder or an object store.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping

from . import fs
from .atomic import write_atomic


def _update(h, path: str, storage_options: Mapping | None) -> None:
    with fs.open_read(path, storage_options) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def sha256_file(path: str, storage_options: Mapping | None = None) -> str:
    h = hashlib.sha256()
    _update(h, path, storage_options)
    return h.hexdigest()


def hash_input(path: str, storage_options: Mapping | None = None) -> str:
    """sha256 over a file, or over the sorted files of a folder (with their names)."""
    h = hashlib.sha256()
    remote = fs.is_url(path)
    single = fs.isfile(path, storage_options)
    files = [path] if single else fs.walk_files(path, storage_options)
    for file in files:
        if file != path:
            rel = file[len(path.rstrip("/")) + 1:] if remote else os.path.relpath(file, path)
            h.update(rel.encode() + b"\0")
        _update(h, file, storage_options)
    return h.hexdigest()


MEMO_FILE = "input-hashes.json"
MEMO_VERSION = 1
RACY_NS = 2_000_000_000  # a file changed this close to its hashing may change unseen


def _stat_sig(path: str) -> list:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def file_signature(path: str) -> tuple[list, int]:
    """``(signature, newest mtime_ns)``: (device, inode, size, mtime_ns) of a file, or of
    every file of a folder with its relative name."""
    if os.path.isfile(path):
        sig = _stat_sig(path)
        return sig, sig[3]
    sig, newest = [], 0
    for root, _, names in sorted(os.walk(path)):
        for name in sorted(names):
            file = os.path.join(root, name)
            s = _stat_sig(file)
            sig.append([os.path.relpath(file, path), *s])
            newest = max(newest, s[3])
    return sig, newest


class HashMemo:
    """Content hashes of inputs remembered by (device, inode, size, mtime_ns), so warm
    rebuilds and sweeps re-read only files that changed.

    Kept in ``folder/input-hashes.json`` (the token cache folder); a missing or damaged
    memo is an empty one. An entry is recorded only when the file's mtime is at least
    :data:`RACY_NS` older than the hashing, so a write in the same clock tick as a
    hash can never hide behind an unchanged signature. ``folder=None`` (or a URL): nothing
    is kept. Inputs at URLs are hashed each time (``storage_options`` for their store).
    """

    def __init__(self, folder: str | None, storage_options: Mapping | None = None):
        self.path = os.path.join(folder, MEMO_FILE) if folder and not fs.is_url(folder) \
            else None
        self.storage_options = storage_options
        self.entries: dict[str, list] = {}
        self.dirty = False
        if self.path and os.path.isfile(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                if data.get("version") == MEMO_VERSION and isinstance(data.get("entries"), dict):
                    self.entries = data["entries"]
            except (OSError, ValueError, AttributeError):
                self.entries = {}

    def __call__(self, path: str) -> str:
        """The content hash of ``path`` (as :func:`hash_input`), from the memo when the
        file is unchanged."""
        if fs.is_url(path):
            return hash_input(path, self.storage_options)
        key = os.path.realpath(path)
        sig, newest = file_signature(path)
        hit = self.entries.get(key)
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == sig:
            return hit[1]
        started = time.time_ns()
        digest = hash_input(path)
        if started - newest >= RACY_NS and file_signature(path)[0] == sig:
            self.entries[key] = [sig, digest]
            self.dirty = True
        return digest

    def save(self) -> None:
        """Write the memo (dropping entries of paths that no longer exist)."""
        if not (self.path and self.dirty):
            return
        kept = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_atomic(self.path, json.dumps({"version": MEMO_VERSION, "entries": kept}))
        self.dirty = False
