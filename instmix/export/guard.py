"""The export folder's guard: an export replaces only entries that instmix wrote there.

``--out`` may name any folder. An export writes into it only when it is missing, empty, or
an earlier export (it holds ``instmix-export.json``), and replaces an existing entry only
when that entry is recognised by its content as one instmix wrote: the report records a
digest of every entry an export made (:func:`digest`), and an entry whose digest differs
(a user's file of the same name, or an export file edited since) is left alone and the
export refused with the entry named. Exports made before digests were recorded are
recognised by their generated headers (:func:`_legacy_ours`).
"""

from __future__ import annotations

import hashlib
import json
import os

from instmix.errors import InstmixError
from instmix.io.atomic import parse_temp_name
from instmix.io.hashing import sha256_file

REPORT = "instmix-export.json"
MADE = "made"  # report key: {entry name: digest}
_SMALL = 1 << 20  # folder members up to this size are hashed whole; larger ones by size


def digest(path: str) -> str:
    """A file's sha256; for a folder, the sha256 of its sorted member names with their
    sizes (and contents, for members up to 1 MiB: the metadata files)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return "file:" + sha256_file(path)
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            size = os.path.getsize(full)
            h.update(f"{os.path.relpath(full, path)}\0{size}\0".encode())
            if size <= _SMALL:
                h.update(sha256_file(full).encode())
    return "dir:" + h.hexdigest()


def read_report(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, REPORT), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "framework" in data else None


# First bytes of the files earlier instmix exports wrote, and the marker files of the
# folders they wrote (datasets' save_to_disk folder; the text route's dataset_info.json).
_HEADS = (b"# OLMo (ai2-olmo, legacy trainer) settings for the instmix build",
          b'"""OLMo-core (ai2-olmo-core 3.x) dataset configs for an instmix build',
          b"# OLMo-core (ai2-olmo-core 3.x) Numpy", b"# LLaMA-Factory pre-training (stage pt)")
_DIR_MARKERS = {"tokenized": ("state.json", "dataset_info.json"), "text": ("dataset_info.json",)}


def _legacy_ours(path: str, name: str, report: dict) -> bool:
    """An entry an export wrote before the report recorded digests."""
    if os.path.isdir(path):
        listed = isinstance(report.get(name), dict) and report[name].get("dir") == name
        return listed and all(os.path.isfile(os.path.join(path, m))
                              for m in _DIR_MARKERS.get(name, ("?",)))
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        return False
    return head.startswith(_HEADS)


class ExportGuard:
    """Checks ``out`` before an export writes there; records what it wrote."""

    def __init__(self, out: str):
        self.out = os.path.abspath(out)
        if os.path.lexists(self.out) and not os.path.isdir(self.out):
            raise InstmixError(f"{self.out}: exists and is not a folder; choose another --out")
        entries = [n for n in os.listdir(self.out) if not parse_temp_name(n)] \
            if os.path.isdir(self.out) else []
        self.report = read_report(self.out) if entries else None
        if entries and self.report is None:
            raise InstmixError(f"{self.out}: exists and is not an instmix export (no valid "
                               f"{REPORT}); choose another --out or empty it")
        made = (self.report or {}).get(MADE)
        self.made: dict = dict(made) if isinstance(made, dict) else {}

    def ours(self, name: str) -> bool:
        """True when entry ``name`` is missing or recognised as written by an export."""
        path = os.path.join(self.out, name)
        if not os.path.lexists(path):
            return True
        if name == REPORT:  # recognised by parsing as a report
            return read_report(self.out) is not None
        if name in self.made:
            return self.made[name] == digest(path)
        return MADE not in (self.report or {}) and _legacy_ours(path, name, self.report or {})

    def check(self, names) -> None:
        """Raise before anything is written when an entry to replace is not ours."""
        for name in names:
            if not self.ours(name):
                raise InstmixError(f"{os.path.join(self.out, name)}: exists and was not "
                                   "written by instmix export (or was changed since); move it "
                                   "away or choose another --out")

    def check_path(self, path: str) -> None:
        """:meth:`check` for one absolute path inside ``out`` (a swap's last check)."""
        self.check([os.path.relpath(path, self.out)])

    def remove_stale(self, name: str) -> None:
        """Remove entry ``name`` of an earlier export when it is ours; else leave it."""
        path = os.path.join(self.out, name)
        if os.path.isfile(path) and self.ours(name):
            os.remove(path)
            self.made.pop(name, None)

    def made_entries(self, names) -> dict:
        """The report's ``made``: earlier exports' entries still present, and ``names``."""
        made = {n: d for n, d in self.made.items()
                if os.path.lexists(os.path.join(self.out, n))}
        made.update({n: digest(os.path.join(self.out, n)) for n in names
                     if os.path.lexists(os.path.join(self.out, n))})
        return made
