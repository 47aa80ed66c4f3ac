"""A build at a URL, fetched for :func:`~instmix.format.verify.verify` a piece at a time.

The committed generation's small files (the tokenizer, the clean stage's listing) are
downloaded into a temporary folder at the same relative paths, then each shard's files
while it is checked (and removed after), so the local checks run unchanged on real bytes
and the disk holds at most one shard. A file missing on the store is missing locally, so
the checks name it as for a local build.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from instmix.io import fs

from .manifest import SHARD_FILE_KEYS, Manifest, build_files


class RemoteBuild:
    """Context manager: ``manifest`` is the build's manifest rooted at a local folder."""

    def __init__(self, m: Manifest):
        self.remote = m
        self.folder = tempfile.mkdtemp(prefix="instmix-verify-")
        self.manifest = Manifest(self.folder, m.data)

    def __enter__(self) -> RemoteBuild:
        data = self.remote.data
        tok = data.get("tokenizer")
        if isinstance(tok, dict) and isinstance(tok.get("path"), str):
            self._fetch(tok["path"])
        removed = data.get("removed_index")
        if isinstance(removed, dict) and isinstance(removed.get("path"), str):
            self._fetch(removed["path"])
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _local(self, rel: str) -> str | None:
        norm = os.path.normpath(rel)
        if os.path.isabs(rel) or norm.startswith(os.pardir):
            return None  # outside the build: verify's own check names it
        return os.path.join(self.folder, norm)

    def _fetch(self, rel: str) -> None:
        local = self._local(rel)
        if local is None:
            return
        os.makedirs(os.path.dirname(local), exist_ok=True)
        try:
            fs.get_file(self.remote.path(rel), local, self.remote.storage_options)
        except FileNotFoundError:
            pass  # missing: named by the check that needs it

    def _shard_files(self, shard: dict) -> list[str]:
        path = shard["path"]
        index = path[:-len(".npy")] + ".csv.gz" if path.endswith(".npy") else path + ".csv.gz"
        return [path, index] + [shard[k] for k in SHARD_FILE_KEYS if isinstance(shard.get(k), str)]

    def fetch_shard(self, shard: dict) -> None:
        for rel in self._shard_files(shard):
            self._fetch(rel)

    def drop_shard(self, shard: dict) -> None:
        for rel in self._shard_files(shard):
            local = self._local(rel)
            if local is not None and os.path.isfile(local):
                os.remove(local)

    def foreign_files(self) -> list[str]:
        """Objects under the generation that the manifest does not account for."""
        root = self.remote.root.rstrip("/")
        known = build_files(self.remote.data)
        found = [url[len(root) + 1:] for url in
                 fs.walk_files(root, self.remote.storage_options)]
        return sorted(rel for rel in found if os.path.normpath(rel) not in known)
