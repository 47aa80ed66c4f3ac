"""Checksums of token cache units, and the check run each time a unit is opened.

``meta.json`` lists the sha256 of every other file of the unit (``files``: tokens, offsets,
ids, and the mask and cuts when the unit has them) and the sha256
of its own content without that line (``meta_sha256``). :func:`check_unit` recomputes
all of them and the structural facts (sizes, offsets from 0 to the token count,
increasing); any difference raises :class:`DamagedUnit`, and the build rebuilds the unit.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from instmix.io.hashing import sha256_file

META = "meta.json"
META_FIELDS = ("documents", "tokens", "skipped", "backend", "has_mask", "loss_tokens",
               "composition", "files")


class DamagedUnit(Exception):
    """A cache unit does not match its checksums (``args[0]`` says which file and how)."""


def meta_digest(meta: dict) -> str:
    """sha256 of a unit's meta fields (everything but ``meta_sha256``), canonical JSON."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def load_meta(folder: str) -> dict:
    """``meta.json`` of a unit, its own checksum checked."""
    path = os.path.join(folder, META)
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise DamagedUnit(f"{META}: missing") from None
    except (OSError, ValueError) as e:
        raise DamagedUnit(f"{META}: unreadable ({e})") from None
    if not isinstance(meta, dict) or sorted(meta) != sorted(META_FIELDS + ("meta_sha256",)):
        raise DamagedUnit(f"{META}: not the fields of a cache unit")
    if meta["meta_sha256"] != meta_digest(meta):
        raise DamagedUnit(f"{META}: content differs from its checksum")
    return meta


def check_unit(folder: str, dtype: np.dtype) -> dict:
    """Raise DamagedUnit unless every file of the unit matches ``meta.json``; return it."""
    meta = load_meta(folder)
    files = meta["files"]
    want = {"tokens.bin", "offsets.npy", "ids.bin", "ids_off.npy"} | (
        {"mask.bin"} if meta["has_mask"] else set()) | (
        {"cuts.npy", "cut_off.npy"} if "cuts.npy" in files else set())
    if set(files) != want:
        raise DamagedUnit(f"{META}: lists {sorted(files)}, expected {sorted(want)}")
    for name, digest in files.items():
        path = os.path.join(folder, name)
        try:
            got = sha256_file(path)
        except OSError as e:
            raise DamagedUnit(f"{name}: unreadable ({e.strerror or e})") from None
        if got != digest:
            raise DamagedUnit(f"{name}: sha256 differs from {META}")
    n, tokens = meta["documents"], meta["tokens"]
    if os.path.getsize(os.path.join(folder, "tokens.bin")) != tokens * dtype.itemsize:
        raise DamagedUnit("tokens.bin: size differs from the token count")
    if meta["has_mask"] and os.path.getsize(os.path.join(folder, "mask.bin")) != tokens:
        raise DamagedUnit("mask.bin: size differs from the token count")
    for name, last in (("offsets.npy", tokens),
                       ("ids_off.npy", os.path.getsize(os.path.join(folder, "ids.bin")))):
        try:
            off = np.load(os.path.join(folder, name))
        except (OSError, ValueError) as e:
            raise DamagedUnit(f"{name}: unreadable ({e})") from None
        if off.shape != (n + 1,) or off[0] != 0 or off[-1] != last or (np.diff(off) < 0).any():
            raise DamagedUnit(f"{name}: offsets do not run from 0 to {last} over {n} documents")
    return meta
