"""The ``augment`` output folder.

```
OUTPUT/
  augment.json                        settings and input fingerprints (checked on resume)
  part-BBBBBB-rR-PPPP.jsonl.zst       entries of block B, round R, checkpoint P
  stats.json                          totals over finished blocks, throughput per session
  _state/block-BBBBBB.json            block B finished: its counts
  _state/session-RANK-START.json      one run's throughput
```

Every file is written under an owner-marked temporary name (:mod:`instmix.io.atomic`) and
renamed when complete, so a run killed at any moment leaves only whole files; temporary files of dead
processes of this host are removed on the next start (other hosts' are left alone). Part names and contents are a pure function of the plan, so
a resumed run writes exactly the files an uninterrupted run would.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence

import zstandard

from instmix.errors import ConfigError, InputError, InstmixError
from instmix.io.atomic import clean_stale_in
from instmix.io.atomic import write_atomic as atomic_write
from instmix.io.readers import iter_jsonl

from .chain import Entry

PLAN_FILE = "augment.json"
STATS_FILE = "stats.json"
STATE_DIR = "_state"
PART_RE = re.compile(r"^part-(\d{6})-r(\d+)-(\d{4})\.jsonl\.zst$")
PLAN_VERSION = 1


def part_name(block: int, round_: int, index: int) -> str:
    return f"part-{block:06d}-r{round_}-{index:04d}.jsonl.zst"


def dump_json(data) -> bytes:
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def encode_entries(entries: Iterable[Entry]) -> bytes:
    lines = [json.dumps(e.to_json(), ensure_ascii=False) for e in entries]
    return zstandard.ZstdCompressor(level=3).compress(("\n".join(lines) + "\n").encode())


class OutputDir:
    def __init__(self, root: str):
        self.root = root
        self.state = os.path.join(root, STATE_DIR)
        self._parts: dict[int, list[str]] | None = None

    def prepare(self, plan: dict, where: str) -> bool:
        """Create the folder or check it holds a run of the same plan; True when resuming."""
        os.makedirs(self.state, exist_ok=True)
        self.clean_tmp()
        path = os.path.join(self.root, PLAN_FILE)
        if not os.path.exists(path):
            if any(PART_RE.match(n) for n in os.listdir(self.root)):
                raise InstmixError(f"{self.root}: holds part files but no {PLAN_FILE}; "
                                   "use an empty output folder")
            atomic_write(path, dump_json(plan))
            return False
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        if old != plan:
            keys = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise ConfigError(where, "output", f"{self.root} holds a run with other settings "
                              f"or inputs (differs in: {', '.join(keys)}); resume needs the "
                              "same ones, or choose a new output folder")
        return True

    def clean_tmp(self) -> None:
        for folder in (self.root, self.state):
            clean_stale_in(folder)

    def block_parts(self, block: int) -> dict[str, list[Entry]]:
        """The finished parts of ``block``, read back."""
        if self._parts is None:
            self._parts = {}
            for name in sorted(os.listdir(self.root)):
                m = PART_RE.match(name)
                if m:
                    self._parts.setdefault(int(m.group(1)), []).append(name)
        return {name: self.read_part(name) for name in self._parts.get(block, [])}

    def read_part(self, name: str) -> list[Entry]:
        path = os.path.join(self.root, name)
        entries = []
        for line, obj in iter_jsonl(path):
            try:
                entries.append(Entry.from_json(obj))
            except (KeyError, TypeError, ValueError) as e:
                raise InputError(path, line, None, f"not an augment entry ({e})") from None
        return entries

    def write_part(self, name: str, entries: Sequence[Entry]) -> None:
        atomic_write(os.path.join(self.root, name), encode_entries(entries))

    def done_blocks(self) -> set[int]:
        return {int(n[6:12]) for n in os.listdir(self.state)
                if n.startswith("block-") and n.endswith(".json")}

    def mark_done(self, block: int, info: dict) -> None:
        atomic_write(os.path.join(self.state, f"block-{block:06d}.json"), dump_json(info))

    def read_state(self, prefix: str) -> list[dict]:
        out = []
        for name in sorted(os.listdir(self.state)):
            if name.startswith(prefix) and name.endswith(".json"):
                with open(os.path.join(self.state, name), encoding="utf-8") as f:
                    out.append(json.load(f))
        return out

    def write_session(self, name: str, info: dict) -> None:
        atomic_write(os.path.join(self.state, name), dump_json(info))

    def write_stats(self, stats: dict) -> None:
        atomic_write(os.path.join(self.root, STATS_FILE), dump_json(stats))
