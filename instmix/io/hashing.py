"""Content hashes of input files: what cache keys and fingerprints are made of."""

from __future__ import annotations

import hashlib
import json
import os
import time

from .atomic import write_atomic


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_input(path: str) -> str:
    """sha256 over a file, or over the sorted files of a folder (with their names)."""
    h = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, f) for root, _, names in os.walk(path) for f in names)
    for file in files:
        if file != path:
            h.update(os.path.relpath(file, path).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
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
    hash can never hide behind an unchanged signature. ``folder=None``: nothing is kept.
    """

    def __init__(self, folder: str | None):
        self.path = os.path.join(folder, MEMO_FILE) if folder else None
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
