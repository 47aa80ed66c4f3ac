"""``manifest.json``: what a build holds, enough to verify, serve and export it.

Keys (all paths relative to the build folder)::
    format_version, tokenizer {path, sha256, vocab_size, eos_token_id, bos_token_id, ...},
    dtype, seed, total_tokens,
    sources [{name, kind, target_ratio, tokens, documents, available_tokens, repetitions,
              achieved_ratio, ...}],
    shards [{path, tokens, documents, sha256, ...}]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from instmix.errors import InstmixError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest with the folder it came from."""

    root: str
    data: dict

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

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def shard_paths(self) -> list[str]:
        return [self.path(s["path"]) for s in self.shards]

    def mask_paths(self) -> list[str] | None:
        if not all(s.get("mask") for s in self.shards):
            return None
        return [self.path(s["mask"]) for s in self.shards]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def load_manifest(root: str) -> Manifest:
    path = os.path.join(root, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InstmixError(f"{root}: not an instmix build (no {MANIFEST})") from None
    except json.JSONDecodeError as e:
        raise InstmixError(f"{path}: invalid JSON ({e})") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise InstmixError(f"{path}: format_version {version!r} is not supported "
                           f"(this instmix reads {FORMAT_VERSION})")
    return Manifest(os.path.abspath(root), data)


def dump_manifest(data: dict) -> bytes:
    """Stable bytes: same build, same file."""
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def check_replaceable(output: str) -> None:
    """Refuse to replace a folder that is not an earlier build (it may hold user data)."""
    if os.path.isdir(output) and os.listdir(output) and not os.path.isfile(
            os.path.join(output, MANIFEST)):
        raise InstmixError(f"{output}: exists and is not an instmix build (no {MANIFEST}); "
                           "choose another output or empty it")
    if os.path.exists(output) and not os.path.isdir(output):
        raise InstmixError(f"{output}: exists and is not a folder")
