"""The ``augment`` output folder.

```
OUTPUT/
  augment.json                        settings and input fingerprints (checked on resume)
  part-BBBBBB-rR-PPPP.jsonl.zst       entries of block B, round R, checkpoint P
  stats.json                          totals over finished blocks, throughput per session
  _state/block-BBBBBB.json            block B finished: its counts and its parts' sha256
  _state/cache-BBBBBB-rR-PPPP.json    prefix-cache figures of a part's entries (timing facts)
  _state/session-RANK-START.json      one run's throughput
```

Every file is written under an owner-marked temporary name (:mod:`instmix.io.atomic`) and
renamed when complete, so a run killed at any moment leaves only whole files; temporary
files of dead processes of this host are removed on the next start (other hosts' are left
alone). ``OUTPUT`` may be an object-store URL (``s3://bucket/aug``): the same names become
objects, each written in one PUT (atomic: an object is there whole or not at all). Files
are written in this order: a part's cache figures, then the part; a block's parts, then
its marker (the block's commit point). Part names and contents are a pure function of the
plan, so a resumed run writes exactly the files an uninterrupted run would. Parts are one
zstd frame with a content checksum; a finished block's marker lists its parts' sha256,
checked on resume (a damaged or missing part sends its block back to work).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence

import zstandard

from instmix.errors import ConfigError, InputError, InstmixError
from instmix.io import fs
from instmix.io.atomic import clean_stale_in
from instmix.io.atomic import write_atomic as atomic_write

from .chain import Entry

log = logging.getLogger(__name__)

PLAN_FILE = "augment.json"
STATS_FILE = "stats.json"
STATE_DIR = "_state"
PART_RE = re.compile(r"^part-(\d{6})-r(\d+)-(\d{4})\.jsonl\.zst$")
PLAN_VERSION = 2


def part_name(block: int, round_: int, index: int) -> str:
    return f"part-{block:06d}-r{round_}-{index:04d}.jsonl.zst"


def _load_json(path: str) -> dict:
    """A JSON object this program wrote; damage is a one-line error naming the file."""
    try:
        data = json.loads(fs.read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InstmixError(f"{path}: damaged ({type(e).__name__}: {e}); restore it, or "
                           "start again in a new output folder") from None
    if not isinstance(data, dict):
        raise InstmixError(f"{path}: damaged (expected a JSON object); restore it, or start "
                           "again in a new output folder")
    return data


def dump_json(data) -> bytes:
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def encode_entries(entries: Iterable[Entry]) -> bytes:
    """One zstd frame with its content size and checksum."""
    lines = [json.dumps(e.to_json(), ensure_ascii=False) for e in entries]
    return zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True
                                    ).compress(("\n".join(lines) + "\n").encode())


def decode_entries(path: str, data: bytes) -> list[Entry]:
    """Entries of a part file; a truncated, damaged or foreign file is an InputError."""
    try:
        raw = zstandard.ZstdDecompressor().decompress(data)
        text = raw.decode("utf-8")
    except (zstandard.ZstdError, UnicodeDecodeError) as e:
        raise InputError(path, None, None, f"damaged part ({e})") from None
    entries = []
    for line, s in enumerate(text.splitlines(), 1):
        try:
            entries.append(Entry.from_json(json.loads(s)))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(path, line, None, f"not an augment entry ({e})") from None
    return entries


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OutputDir:
    """The output folder, or prefix of an object store (``fs`` paths either way)."""

    def __init__(self, root: str):
        self.root = root
        self.remote = fs.is_url(root)
        self.state = fs.join(root, STATE_DIR)
        self._parts: dict[int, list[str]] | None = None

    def _write(self, path: str, data: bytes) -> None:
        if self.remote:
            fs.put_bytes(path, data)  # one PUT: the object appears whole or not at all
        else:
            atomic_write(path, data)

    def prepare(self, plan: dict, where: str) -> bool:
        """Create the folder or check it holds a run of the same plan; True when resuming."""
        if not self.remote:
            os.makedirs(self.state, exist_ok=True)
            self.clean_tmp()
        path = fs.join(self.root, PLAN_FILE)
        if not fs.exists(path):
            if any(PART_RE.match(n) for n in fs.listdir(self.root)):
                raise InstmixError(f"{self.root}: holds part files but no {PLAN_FILE}; "
                                   "use an empty output folder")
            self._write(path, dump_json(plan))
            return False
        old = _load_json(path)
        if old != plan:
            keys = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise ConfigError(where, "output", f"{self.root} holds a run with other settings "
                              f"or inputs (differs in: {', '.join(keys)}); resume needs the "
                              "same ones, or choose a new output folder")
        return True

    def clean_tmp(self) -> None:
        if self.remote:  # objects are written whole: no temporary names
            return
        for folder in (self.root, self.state):
            clean_stale_in(folder)

    def part_names(self, block: int) -> list[str]:
        if self._parts is None:
            self._parts = {}
            for name in fs.listdir(self.root):
                m = PART_RE.match(name)
                if m:
                    self._parts.setdefault(int(m.group(1)), []).append(name)
        return self._parts.get(block, [])

    def block_parts(self, block: int, *, skip_failed_from: bool = False
                    ) -> dict[str, list[Entry]]:
        """The readable parts of ``block``; a damaged one is left out (it is made again).
        ``skip_failed_from``: also leave out, from the first round holding a failed entry,
        every part of that round and later ones (``--retry-failed``)."""
        parts = {}
        for name in self.part_names(block):
            path = fs.join(self.root, name)
            try:
                parts[name] = decode_entries(path, fs.read_bytes(path))
            except InputError as e:
                log.warning("%s; it will be made again", e)
        if skip_failed_from:
            failed = [int(PART_RE.match(n).group(2)) for n, es in parts.items()
                      if any(e.status == "failed" for e in es)]
            if failed:
                first = min(failed)
                parts = {n: es for n, es in parts.items()
                         if int(PART_RE.match(n).group(2)) < first}
        return parts

    def read_part(self, name: str) -> list[Entry]:
        path = fs.join(self.root, name)
        return decode_entries(path, fs.read_bytes(path))

    def write_part(self, name: str, entries: Sequence[Entry]) -> str:
        """Write a part; returns its sha256."""
        data = encode_entries(entries)
        self._write(fs.join(self.root, name), data)
        return sha256_bytes(data)

    def write_cache(self, name: str, info: dict) -> None:
        self._write(fs.join(self.state, "cache-" + name[5:-10] + ".json"), dump_json(info))

    def read_cache(self, name: str) -> dict | None:
        path = fs.join(self.state, "cache-" + name[5:-10] + ".json")
        try:
            return json.loads(fs.read_bytes(path).decode("utf-8"))
        except (OSError, ValueError):
            return None

    def done_blocks(self) -> set[int]:
        return {int(n[6:12]) for n in fs.listdir(self.state)
                if n.startswith("block-") and n.endswith(".json")}

    def check_done(self, block: int) -> str | None:
        """Why finished block ``block`` must be made again (a part missing, damaged or
        holding a failed entry is reported by the caller), or None when it is intact."""
        marker = fs.join(self.state, f"block-{block:06d}.json")
        try:
            info = _load_json(marker)
        except InstmixError:
            return f"{marker}: damaged"
        for name, digest in sorted(info.get("parts", {}).items()):
            path = fs.join(self.root, name)
            try:
                data = fs.read_bytes(path)
            except FileNotFoundError:
                return f"{path}: missing"
            if sha256_bytes(data) != digest:
                return f"{path}: changed since it was written (sha256 differs)"
        return None

    def part_digests(self, names: Sequence[str]) -> dict[str, str]:
        """sha256 of each named part file, read back from storage."""
        out = {}
        for name in names:
            out[name] = sha256_bytes(fs.read_bytes(fs.join(self.root, name)))
        return out

    def block_info(self, block: int) -> dict:
        return _load_json(fs.join(self.state, f"block-{block:06d}.json"))

    def unmark(self, block: int) -> None:
        """Send a finished block back to work (its marker is this program's own file).
        Parts whose bytes differ from the digests the marker recorded are removed first
        (they are this program's files too), so the block's redo writes them again."""
        marker = fs.join(self.state, f"block-{block:06d}.json")
        try:
            digests = _load_json(marker).get("parts", {})
        except InstmixError:
            digests = {}
        for name, digest in digests.items():
            path = fs.join(self.root, name)
            try:
                same = sha256_bytes(fs.read_bytes(path)) == digest
            except FileNotFoundError:
                continue
            if not same and PART_RE.match(name):
                fs.remove(path)
        self._parts = None
        fs.remove(marker)

    def mark_done(self, block: int, info: dict) -> None:
        self._write(fs.join(self.state, f"block-{block:06d}.json"), dump_json(info))

    def read_state(self, prefix: str) -> list[dict]:
        out = []
        for name in fs.listdir(self.state):
            if name.startswith(prefix) and name.endswith(".json"):
                out.append(_load_json(fs.join(self.state, name)))
        return out

    def write_session(self, name: str, info: dict) -> None:
        self._write(fs.join(self.state, name), dump_json(info))

    def write_stats(self, stats: dict) -> None:
        self._write(fs.join(self.root, STATS_FILE), dump_json(stats))
