"""``instmix verify``: re-check a build folder against its manifest.

Checks, per shard in order: file present and of the recorded length (``tokens x
itemsize``: catches truncation), the ``.csv.gz`` offsets (contiguous, non-empty documents
from 0 to the end), EOS at every document end and BOS at every start when the tokenizer
adds one, every id below the vocabulary size, the sha256, and the mask file if any. Then
the per-source totals against ``sources``. The first problem raises :class:`VerifyError`.

A build at a URL is checked the same way, one shard downloaded at a time; only the
committed generation (the one its ``manifest.json`` names) is read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import numpy as np

from instmix.errors import InstmixError, VerifyError
from instmix.io import fs
from instmix.io.hashing import sha256_file

from .manifest import load_manifest
from .reader import index_path, load_tokens, read_index


def _max_id(tokens: np.ndarray) -> int:
    chunk = 1 << 24
    return max((int(tokens[i:i + chunk].max()) for i in range(0, len(tokens), chunk)),
               default=-1)


def verify(root: str, storage_options: Mapping | None = None) -> dict:
    """Raise VerifyError naming the first problem; return counts when all is well."""
    so = storage_options
    try:
        m = load_manifest(root, so)
    except InstmixError as e:
        raise VerifyError(str(e)) from None
    tok = m.tokenizer
    tok_path = m.path(tok["path"])
    if not fs.isfile(tok_path, so):
        raise VerifyError(f"{tok['path']}: tokenizer file missing")
    if sha256_file(tok_path, so) != tok["sha256"]:
        raise VerifyError(f"{tok['path']}: sha256 differs from the manifest")
    dtype = np.dtype(m.dtype)
    vocab, eos, bos = tok["vocab_size"], tok["eos_token_id"], tok.get("bos_token_id")
    if vocab - 1 > np.iinfo(dtype).max:
        raise VerifyError(f"vocab_size {vocab} does not fit dtype {m.dtype}")
    per_source: dict[str, list[int]] = {}
    total_docs = total_tokens = 0
    for shard in m.shards:
        name = shard["path"]
        path = m.path(name)
        if not fs.isfile(path, so):
            raise VerifyError(f"{name}: missing")
        size, want = fs.size(path, so), shard["tokens"] * dtype.itemsize
        if size != want:
            raise VerifyError(f"{name}: {size:,} bytes, manifest says {shard['tokens']:,} "
                              f"tokens = {want:,} bytes (truncated or overwritten)")
        if not fs.isfile(index_path(path), so):
            raise VerifyError(f"{os.path.basename(index_path(path))}: missing")
        try:
            idx = read_index(path, so)
        except (ValueError, OSError, EOFError) as e:
            raise VerifyError(f"{os.path.basename(index_path(path))}: unreadable ({e})") from None
        _check_offsets(name, idx.start, idx.end, shard)
        tokens = load_tokens(path, m.dtype, so)
        ends_ok = tokens[idx.end - 1] == eos
        if not ends_ok.all():
            i = int(np.argmin(ends_ok))
            raise VerifyError(f"{name}: document {i} (id {idx.ids[i]}, tokens "
                              f"{idx.start[i]}:{idx.end[i]}) does not end with EOS {eos} "
                              f"(found {int(tokens[idx.end[i] - 1])})")
        if bos is not None:
            starts_ok = tokens[idx.start] == bos
            if not starts_ok.all():
                i = int(np.argmin(starts_ok))
                raise VerifyError(f"{name}: document {i} (id {idx.ids[i]}) does not start "
                                  f"with BOS {bos}")
        top = _max_id(tokens)
        if top >= vocab:
            pos = int(np.argmax(tokens >= vocab))
            raise VerifyError(f"{name}: token {pos} has id {top} >= vocab_size {vocab}")
        digest = hashlib.sha256(tokens).hexdigest() if m.remote else sha256_file(path)
        if digest != shard["sha256"]:
            raise VerifyError(f"{name}: sha256 differs from the manifest (content changed)")
        if shard.get("mask"):
            _check_mask(m.path(shard["mask"]), shard, so)
        for a, b, s in zip(idx.start.tolist(), idx.end.tolist(), idx.src):
            acc = per_source.setdefault(s, [0, 0])
            acc[0] += b - a
            acc[1] += 1
        total_docs += len(idx)
        total_tokens += shard["tokens"]
    for s in m.sources:
        got = per_source.pop(s["name"], [0, 0])
        if got != [s["tokens"], s["documents"]]:
            raise VerifyError(f"source '{s['name']}': shards hold {got[0]:,} tokens in "
                              f"{got[1]:,} documents; manifest says {s['tokens']:,} in "
                              f"{s['documents']:,}")
    if per_source:
        raise VerifyError(f"shards name sources not in the manifest: {sorted(per_source)}")
    if total_tokens != m["total_tokens"]:
        raise VerifyError(f"shards hold {total_tokens:,} tokens; manifest total_tokens is "
                          f"{m['total_tokens']:,}")
    removed = m.data.get("removed_index")
    if removed is not None:
        path = m.path(removed["path"])
        if not os.path.isfile(path):
            raise VerifyError(f"{removed['path']}: missing (the clean stage's listing)")
        if sha256_file(path) != removed["sha256"]:
            raise VerifyError(f"{removed['path']}: sha256 differs from the manifest")
    return {"shards": len(m.shards), "documents": total_docs, "tokens": total_tokens}


def _check_offsets(name: str, start: np.ndarray, end: np.ndarray, shard: dict) -> None:
    if len(start) != shard["documents"]:
        raise VerifyError(f"{name}: index lists {len(start):,} documents; manifest says "
                          f"{shard['documents']:,}")
    if len(start) == 0:
        if shard["tokens"]:
            raise VerifyError(f"{name}: index is empty but the shard holds tokens")
        return
    if start[0] != 0:
        raise VerifyError(f"{name}: first document starts at {start[0]}, not 0")
    bad = np.nonzero(end <= start)[0]
    if bad.size:
        i = int(bad[0])
        raise VerifyError(f"{name}: document {i} has end {end[i]} <= start {start[i]}")
    gaps = np.nonzero(start[1:] != end[:-1])[0]
    if gaps.size:
        i = int(gaps[0]) + 1
        raise VerifyError(f"{name}: document {i} starts at {start[i]} but the previous "
                          f"ends at {end[i - 1]}")
    if end[-1] != shard["tokens"]:
        raise VerifyError(f"{name}: last document ends at {end[-1]}; shard holds "
                          f"{shard['tokens']:,} tokens")


def _check_mask(path: str, shard: dict, so: Mapping | None = None) -> None:
    name = os.path.basename(path)
    if not fs.isfile(path, so):
        raise VerifyError(f"{name}: missing")
    if fs.size(path, so) != shard["tokens"]:
        raise VerifyError(f"{name}: {fs.size(path, so):,} bytes; shard holds "
                          f"{shard['tokens']:,} tokens")
    if sha256_file(path, so) != shard["mask_sha256"]:
        raise VerifyError(f"{name}: sha256 differs from the manifest")
