"""Publishing a build on an object store, where there is no atomic folder rename.

Protocol (docs/storage.md):

1. Every file of the build goes under a fresh generation prefix ``OUT/gen-<owner>-<hex>/``
   (``<owner>`` is the writing process's token, :mod:`instmix.io.owner`); its files are
   the same bytes a local build has in its folder, ``manifest.json`` included.
2. Then ``OUT/manifest.json`` is written in one PUT (atomic on S3 and GCS): the manifest
   plus ``"generation": "gen-..."``, sealed again (:func:`~.manifest.seal`). This is the commit point: readers open only what it
   names, so a build is visible whole or not at all.
3. Only then are older generations deleted: the one the previous manifest named, and
   uncommitted ones whose writer (a process of this host) is dead.

A build killed before step 2 leaves the previous manifest and its generation untouched
(plus an uncommitted prefix that the next build removes); one killed after it is complete.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping

from instmix.io import fs
from instmix.io.owner import find_token, owner_dead, owner_token

from .manifest import GENERATION, MANIFEST, check_replaceable, dump_manifest, seal

PREFIX = "gen-"


def new_generation() -> str:
    return f"{PREFIX}{owner_token()}-{secrets.token_hex(4)}"


def committed_generation(output: str, storage_options: Mapping | None = None) -> str | None:
    try:
        data = json.loads(fs.read_bytes(fs.join(output, MANIFEST), storage_options))
    except (FileNotFoundError, ValueError):
        return None
    return data.get("generation") if isinstance(data, dict) else None


def commit(output: str, generation: str, manifest: dict,
           storage_options: Mapping | None = None) -> None:
    """Make ``generation`` (its files already uploaded) the build at ``output``, then
    delete what it replaced."""
    check_replaceable(output, storage_options)
    previous = committed_generation(output, storage_options)
    committed = seal({**manifest, "generation": generation})  # its checksum covers the name
    fs.put_bytes(fs.join(output, MANIFEST), dump_manifest(committed), storage_options)
    for name in fs.listdir(output, storage_options):
        if not GENERATION.match(name) or name == generation:
            continue
        token = find_token(name)
        if name == previous or (token is not None and owner_dead(token)):
            fs.remove_prefix(fs.join(output, name), storage_options)


def discard(dest: str, storage_options: Mapping | None = None) -> None:
    """Best effort: remove an uncommitted generation (the next build removes what stays)."""
    try:
        fs.remove_prefix(dest, storage_options)
    except Exception:  # the error that stopped the build is the one to report
        pass
