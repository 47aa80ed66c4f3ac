"""``manifest.json``: what a build holds, enough to verify, serve and export it.

Keys (all paths relative to the build folder)::
    format_version, tokenizer {path, sha256, vocab_size, eos_token_id, bos_token_id, ...},
    dtype, seed, total_tokens,
    sources [{name, kind, target_ratio, tokens, documents, available_tokens, repetitions,
              achieved_ratio, ...}],
    shards [{path, tokens, documents, sha256, ...}]

On an object store the build's files live under a generation prefix and the top-level
``manifest.json`` (the commit point) names it in ``generation``; see
:mod:`instmix.format.publish` and docs/storage.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from instmix.errors import InstmixError
from instmix.io import fs

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
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


def load_manifest(root: str | os.PathLike, storage_options: Mapping | None = None) -> Manifest:
    """The committed manifest of a build folder or prefix (``s3://bucket/builds/x``)."""
    root = os.fspath(root)
    path = fs.join(root, MANIFEST)
    try:
        data = json.loads(fs.read_bytes(path, storage_options))
    except FileNotFoundError:
        raise InstmixError(f"{root}: not an instmix build (no {MANIFEST})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InstmixError(f"{path}: invalid JSON ({e})") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise InstmixError(f"{path}: format_version {version!r} is not supported "
                           f"(this instmix reads {FORMAT_VERSION})")
    gen = data.get("generation")
    base = fs.normalize(root)
    if gen is not None:
        if not isinstance(gen, str) or "/" in gen or gen in ("", ".", ".."):
            raise InstmixError(f"{path}: generation {gen!r} is not a folder name")
        base = fs.join(base, gen)
    return Manifest(base, data, dict(storage_options or {}))


def dump_manifest(data: dict) -> bytes:
    """Stable bytes: same build, same file."""
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def check_replaceable(output: str, storage_options: Mapping | None = None) -> None:
    """Refuse to replace a folder that is not an earlier build (it may hold user data)."""
    if fs.is_url(output):
        names = [n for n in fs.listdir(output, storage_options) if not GENERATION.match(n)]
        if names and MANIFEST not in names:
            raise InstmixError(f"{output}: holds objects and is not an instmix build (no "
                               f"{MANIFEST}); choose another output or empty it")
        return
    if os.path.isdir(output) and os.listdir(output) and not os.path.isfile(
            os.path.join(output, MANIFEST)):
        raise InstmixError(f"{output}: exists and is not an instmix build (no {MANIFEST}); "
                           "choose another output or empty it")
    if os.path.exists(output) and not os.path.isdir(output):
        raise InstmixError(f"{output}: exists and is not a folder")
