"""``manifest.json``: what a build holds, enough to verify, serve and export it.

Keys (all paths relative to the build folder)::
    format ("instmix-build"), format_version, manifest_sha256,
    tokenizer {path, sha256, vocab_size, eos_token_id, bos_token_id, ...},
    dtype, seed, total_tokens,
    sources [{name, kind, target_ratio, tokens, documents, available_tokens, repetitions,
              achieved_ratio, ...}],
    shards [{path, tokens, documents, sha256, index_sha256, ...}]

Format versions: 2 adds ``format``, ``manifest_sha256`` (sha256 of the canonical JSON of
every other key: a hand edit or damage that changes any value is caught by ``verify``) and
per-shard ``index_sha256``. Version 1 builds are still read; ``verify`` checks them without
those checksums.

On an object store the build's files live under a generation prefix and the top-level
``manifest.json`` (the commit point) names it in ``generation``; see
:mod:`instmix.format.publish` and docs/storage.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from instmix.errors import InstmixError
from instmix.io import fs

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FORMAT_MARKER = "instmix-build"
MANIFEST = "manifest.json"
EXPORT_REPORT = "instmix-export.json"  # marks an export folder inside a build
SHARD_FILE_KEYS = ("mask", "ends")  # shard entry keys naming a file beside the tokens
BUILD_KEYS = ("format_version", "tokenizer", "dtype", "total_tokens", "sources", "shards")
GENERATION = re.compile(r"^gen-\d+@[A-Za-z0-9_.]+@\d+-[0-9a-f]{8}$")  # publish.new_generation


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest with the folder it came from."""

    root: str
    data: dict
    storage_options: Mapping = field(default_factory=dict, compare=False, repr=False)

    @property
    def dtype(self) -> str:
        return self.data["dtype"]

    @property
    def tokenizer(self) -> dict:
        return self.data["tokenizer"]

    @property
    def shards(self) -> list[dict]:
        return self.data["shards"]

    @property
    def sources(self) -> list[dict]:
        return self.data["sources"]

    @property
    def remote(self) -> bool:
        return fs.is_url(self.root)

    def path(self, rel: str) -> str:
        return fs.join(self.root, rel)

    def shard_paths(self) -> list[str]:
        return [self.path(s["path"]) for s in self.shards]

    def mask_paths(self) -> list[str] | None:
        if not all(s.get("mask") for s in self.shards):
            return None
        return [self.path(s["mask"]) for s in self.shards]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def read_manifest_data(path: str, storage_options: Mapping | None = None) -> dict:
    """The JSON object of a manifest file (or object); InstmixError naming it when
    unreadable."""
    try:
        data = json.loads(fs.read_bytes(path, storage_options).decode("utf-8"))
    except FileNotFoundError:
        raise InstmixError(f"{fs.dirname(path) if fs.is_url(path) else os.path.dirname(path) or '.'}"
                           f": not an instmix build (no {MANIFEST})") from None
    except UnicodeDecodeError as e:
        raise InstmixError(f"{path}: not UTF-8 (byte {e.start}); the file is damaged, "
                           "rebuild") from None
    except json.JSONDecodeError as e:
        raise InstmixError(f"{path}: invalid JSON ({e}); the file is damaged, rebuild") from None
    except OSError as e:
        raise InstmixError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise InstmixError(f"{path}: not a JSON object; the file is damaged, rebuild")
    return data


def load_manifest(root: str | os.PathLike, storage_options: Mapping | None = None) -> Manifest:
    """The committed manifest of a build folder or prefix (``s3://bucket/builds/x``); the
    root of a build on an object store is the generation its manifest names."""
    root = os.fspath(root)
    path = fs.join(root, MANIFEST)
    data = read_manifest_data(path, storage_options)
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise InstmixError(f"{path}: format_version {version!r} is not supported "
                           f"(this instmix reads {', '.join(map(str, READABLE_VERSIONS))})")
    gen = data.get("generation")
    base = fs.normalize(root)
    if gen is not None:
        if not isinstance(gen, str) or not GENERATION.match(gen):
            raise InstmixError(f"{path}: generation {gen!r} is not a generation folder name; "
                               "the file is damaged, rebuild")
        base = fs.join(base, gen)
    return Manifest(base, data, dict(storage_options or {}))


def manifest_digest(data: dict) -> str:
    """sha256 of the canonical JSON of every key but ``manifest_sha256``."""
    body = {k: v for k, v in data.items() if k != "manifest_sha256"}
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def seal(data: dict) -> dict:
    """``data`` with the format marker, the current format_version and its own checksum."""
    out = {"format": FORMAT_MARKER, "format_version": FORMAT_VERSION}
    out.update({k: v for k, v in data.items() if k not in out and k != "manifest_sha256"})
    out["manifest_sha256"] = manifest_digest(out)
    return out


def dump_manifest(data: dict) -> bytes:
    """Stable bytes: same build, same file."""
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def is_build_data(data: Any) -> bool:
    """Whether a parsed ``manifest.json`` is an instmix build's (by content, not name)."""
    if not isinstance(data, dict) or data.get("format_version") not in READABLE_VERSIONS:
        return False
    if data.get("format_version", 1) >= 2 and data.get("format") != FORMAT_MARKER:
        return False
    return all(k in data for k in BUILD_KEYS) and isinstance(data["shards"], list) and \
        all(isinstance(s, dict) and isinstance(s.get("path"), str) for s in data["shards"])


def build_files(data: dict) -> set[str]:
    """Relative paths of every file a build's manifest accounts for."""
    files = {MANIFEST}
    tok = data.get("tokenizer")
    if isinstance(tok, dict) and isinstance(tok.get("path"), str):
        files.add(os.path.normpath(tok["path"]))
    removed = data.get("removed_index")
    if isinstance(removed, dict) and isinstance(removed.get("path"), str):
        files.add(os.path.normpath(removed["path"]))
    for s in data.get("shards", []):
        if not isinstance(s, dict) or not isinstance(s.get("path"), str):
            continue
        path = os.path.normpath(s["path"])
        files.add(path)
        files.add(path[:-len(".npy")] + ".csv.gz" if path.endswith(".npy") else path + ".csv.gz")
        for key in SHARD_FILE_KEYS:
            if isinstance(s.get(key), str):
                files.add(os.path.normpath(s[key]))
    return files


def foreign_files(root: str, data: dict) -> list[str]:
    """Files under ``root`` that the manifest does not account for (sorted, relative).

    A top-level folder holding ``instmix-export.json`` is an ``instmix export`` of this
    build (its default place) and is not foreign.
    """
    known = build_files(data)
    found = []
    for folder, dirs, names in os.walk(root):
        if folder == root:
            dirs[:] = [d for d in dirs if not os.path.isfile(os.path.join(root, d, EXPORT_REPORT))]
        dirs.sort()
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(folder, name), root)
            if rel not in known:
                found.append(rel)
    return found


def check_replaceable(output: str, storage_options: Mapping | None = None) -> None:
    """Refuse to replace anything but an earlier instmix build holding only its own files
    (recognised by the content of its manifest) or an empty folder. On an object store:
    a prefix holding only generations and a build manifest, or nothing."""
    if fs.is_url(output):
        _check_replaceable_url(output, storage_options)
        return
    if os.path.lexists(output) and not os.path.isdir(output):
        raise InstmixError(f"{output}: exists and is not a folder")
    if not os.path.isdir(output) or not os.listdir(output):
        return
    path = os.path.join(output, MANIFEST)
    if not os.path.isfile(path):
        raise InstmixError(f"{output}: exists and is not an instmix build (no {MANIFEST}); "
                           "choose another output or empty it")
    try:
        data = read_manifest_data(path)
    except InstmixError as e:
        raise InstmixError(f"{e}; so {output} is not recognisably an instmix build and is "
                           "not replaced; remove it yourself or choose another output") from None
    if not is_build_data(data):
        raise InstmixError(f"{output}: {MANIFEST} is not an instmix build manifest; the folder "
                           "is not replaced; choose another output or empty it")
    extra = foreign_files(output, data)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise InstmixError(f"{output}: holds files that are not part of its build ({shown}); "
                           "move them out or choose another output")


def _check_replaceable_url(output: str, storage_options: Mapping | None) -> None:
    names = [n for n in fs.listdir(output, storage_options) if not GENERATION.match(n)]
    if not names:
        return
    if MANIFEST not in names:
        raise InstmixError(f"{output}: holds objects and is not an instmix build (no "
                           f"{MANIFEST}); choose another output or empty it")
    data = read_manifest_data(fs.join(output, MANIFEST), storage_options)
    if not is_build_data(data):
        raise InstmixError(f"{output}: {MANIFEST} is not an instmix build manifest; the prefix "
                           "is not replaced; choose another output or empty it")
    extra = sorted(set(names) - {MANIFEST})
    if extra:
        raise InstmixError(f"{output}: holds objects that are not part of its build "
                           f"({', '.join(extra[:5])}); move them or choose another output")
