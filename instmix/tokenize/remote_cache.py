"""Token cache units on an object store (``cache_dir: s3://...``).

A remote unit holds the same files as a local one under ``<cache_dir>/<key>/``, uploaded
with ``meta.json`` last: a unit exists once its ``meta.json`` does. Units are tokenized
into, and read from, a local mirror (:func:`mirror_root`), downloaded once per machine;
every open of the mirror re-checks the checksums, as for a local cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping

from instmix.io import fs
from instmix.io.atomic import make_temp_dir

from .unit_check import META


def mirror_root() -> str:
    """Local folder holding downloaded (and freshly tokenized) units of remote caches."""
    return os.path.join(tempfile.gettempdir(), f"instmix-{os.getuid()}", "units")


def unit_present(root: str, key: str, storage_options: Mapping | None = None) -> bool:
    """A finished unit exists under remote ``root`` (its ``meta.json`` was uploaded)."""
    return fs.isfile(fs.join(root, key, META), storage_options)


def fetch_unit(root: str, key: str, storage_options: Mapping | None = None) -> str | None:
    """The local mirror folder of a finished remote unit (downloaded when not mirrored
    yet), or None when the unit does not exist remotely."""
    if not unit_present(root, key, storage_options):
        return None
    final = os.path.join(mirror_root(), key)
    if os.path.isdir(final):
        return final
    os.makedirs(mirror_root(), exist_ok=True)
    tmp = make_temp_dir(final)
    try:
        for name in fs.listdir(fs.join(root, key), storage_options):
            fs.get_file(fs.join(root, key, name), os.path.join(tmp, name), storage_options)
        try:
            os.rename(tmp, final)
        except OSError:  # another process mirrored it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def upload_unit(root: str, key: str, storage_options: Mapping | None = None) -> str:
    """Upload a mirrored unit to remote ``root``, ``meta.json`` last (its commit point)."""
    folder = os.path.join(mirror_root(), key)
    fs.upload_tree(folder, fs.join(root, key), storage_options, last=(META,))
    return folder
