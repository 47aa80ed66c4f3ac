"""``instmix verify``: re-check a build folder against its manifest.

The manifest first: its own checksum (format 2), the types of its keys, every path inside
the build, no file in the folder that it does not list (a trainer's ``*.npy`` glob would
read it), and the tokenizer file (sha256, and ``vocab_size``/EOS/BOS ids as the file
defines them). Then per shard in order: file present and of the recorded length, the
``.csv.gz`` index (its sha256, then contiguous non-empty documents from 0 to the end),
EOS at every document end and nowhere else, BOS at every start when the tokenizer adds
one, every id below the vocabulary size, the sha256, the ``.ends`` file (equal to the
index's ends), the mask (size, sha256, 0/1 values,
loss tokens), and the per-shard source counts. Then the totals recomputed from the
indexes and masks against ``sources``, ``total_tokens``, ``documents``, ``loss_tokens``
and the ``layout``. The first problem raises :class:`VerifyError` naming the file.

A build at a URL is checked the same way: only the committed generation (the one its
``manifest.json`` names) is read, listed for foreign objects, and each shard's files are
downloaded one shard at a time into a temporary folder and checked there
(:mod:`.verify_remote`).
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Mapping

import numpy as np
from tokenizers import Tokenizer

from instmix.errors import InstmixError, VerifyError
from instmix.io.hashing import sha256_file

from .manifest import (
    MANIFEST,
    SHARD_FILE_KEYS,
    foreign_files,
    is_build_data,
    load_manifest,
    manifest_digest,
)
from .reader import index_path, open_ends, open_tokens, read_index
from .verify_remote import RemoteBuild


def _max_id(tokens: np.ndarray) -> int:
    chunk = 1 << 24
    return max((int(tokens[i:i + chunk].max()) for i in range(0, len(tokens), chunk)),
               default=-1)


def _need(cond: bool, key: str, what: str) -> None:
    if not cond:
        raise VerifyError(f"{MANIFEST}: {key}: {what} (hand-edited or damaged; rebuild)")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_structure(data: dict) -> None:
    tok = data["tokenizer"]
    _need(isinstance(tok, dict), "tokenizer", "expected an object")
    for k in ("path", "sha256"):
        _need(isinstance(tok.get(k), str), f"tokenizer.{k}", "expected a string")
    for k in ("vocab_size", "eos_token_id"):
        _need(_is_int(tok.get(k)), f"tokenizer.{k}", "expected a whole number")
    _need(tok.get("bos_token_id") is None or _is_int(tok["bos_token_id"]),
          "tokenizer.bos_token_id", "expected a whole number or null")
    _need(data["dtype"] in ("uint16", "uint32"), "dtype", "expected uint16 or uint32")
    for k in ("total_tokens", "documents", "loss_tokens"):
        _need(k not in data or _is_int(data[k]), k, "expected a whole number")
    _need(isinstance(data["sources"], list), "sources", "expected a list")
    for i, s in enumerate(data["sources"]):
        _need(isinstance(s, dict) and isinstance(s.get("name"), str), f"sources[{i}]",
              "expected an object with a name")
        for k in ("tokens", "documents"):
            _need(_is_int(s.get(k)), f"sources[{i}].{k}", "expected a whole number")
    names = [s["name"] for s in data["sources"]]
    _need(len(set(names)) == len(names), "sources", "source names repeat")
    for i, s in enumerate(data["shards"]):
        for k in ("tokens", "documents"):
            _need(_is_int(s.get(k)), f"shards[{i}].{k}", "expected a whole number")
        _need(isinstance(s.get("sha256"), str), f"shards[{i}].sha256", "expected a string")
        _need(isinstance(s.get("sources", {}), dict), f"shards[{i}].sources",
              "expected an object")
        for k in ("mask_sha256", "index_sha256", *SHARD_FILE_KEYS):
            _need(s.get(k) is None or isinstance(s[k], str), f"shards[{i}].{k}",
                  "expected a string")
    masks = [bool(s.get("mask")) for s in data["shards"]]
    _need(all(masks) or not any(masks), "shards",
          f"{masks.count(False)} of {len(masks)} shards have no mask entry; a build has "
          "masks on every shard or on none")
    if data.get("format_version", 1) >= 2:
        for i, s in enumerate(data["shards"]):
            _need(isinstance(s.get("index_sha256"), str), f"shards[{i}].index_sha256",
                  "missing")


def _inside(root: str, rel: str, key: str) -> str:
    real_root = os.path.realpath(root)
    norm = os.path.normpath(rel)
    path = os.path.realpath(os.path.join(root, rel))
    if os.path.isabs(rel) or norm.startswith(os.pardir) or \
            not path.startswith(real_root + os.sep):
        raise VerifyError(f"{MANIFEST}: {key}: {rel!r} is outside the build folder "
                          "(hand-edited or damaged; rebuild)")
    return os.path.join(root, norm)


def _check_tokenizer(root: str, tok: dict) -> None:
    rel = tok["path"]
    path = _inside(root, rel, "tokenizer.path")
    if not os.path.isfile(path):
        raise VerifyError(f"{rel}: tokenizer file missing")
    if sha256_file(path) != tok["sha256"]:
        raise VerifyError(f"{rel}: sha256 differs from the manifest")
    try:
        t = Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises a plain Exception on a bad file
        raise VerifyError(f"{rel}: not a tokenizer.json ({str(e)[:80]})") from None
    vocab = t.get_vocab_size(with_added_tokens=True)
    if tok["vocab_size"] != vocab:
        raise VerifyError(f"{MANIFEST}: tokenizer.vocab_size is {tok['vocab_size']}; {rel} "
                          f"has {vocab} ids (hand-edited; rebuild)")
    for kind in ("eos", "bos"):
        name, tid = tok.get(f"{kind}_token"), tok.get(f"{kind}_token_id")
        if name is not None and tid is not None and t.token_to_id(name) != tid:
            raise VerifyError(f"{MANIFEST}: tokenizer.{kind}_token_id is {tid}; {rel} gives "
                              f"{name!r} the id {t.token_to_id(name)} (hand-edited; rebuild)")


def verify(root: str, storage_options: Mapping | None = None) -> dict:
    """Raise VerifyError naming the first problem; return counts when all is well."""
    try:
        m = load_manifest(root, storage_options)
    except InstmixError as e:
        raise VerifyError(str(e)) from None
    if m.remote:
        with RemoteBuild(m) as local:
            return _verify(local.manifest, local)
    return _verify(m, None)


def _verify(m, remote: RemoteBuild | None) -> dict:
    """:func:`verify` of a loaded manifest; ``remote`` fetches a remote build's files into
    ``m.root`` as they are needed."""
    data = m.data
    if not is_build_data(data):
        raise VerifyError(f"{MANIFEST}: not an instmix build manifest (keys missing or of the "
                          "wrong type; hand-edited or damaged; rebuild)")
    if data["format_version"] >= 2 and data.get("manifest_sha256") != manifest_digest(data):
        raise VerifyError(f"{MANIFEST}: content differs from its manifest_sha256 (hand-edited "
                          "or damaged); rebuild")
    _check_structure(data)
    tok = m.tokenizer
    _check_tokenizer(m.root, tok)
    paths = {}
    for i, s in enumerate(m.shards):
        paths[s["path"]] = _inside(m.root, s["path"], f"shards[{i}].path")
        for key in SHARD_FILE_KEYS:
            if s.get(key):
                _inside(m.root, s[key], f"shards[{i}].{key}")
    extra = remote.foreign_files() if remote else foreign_files(m.root, data)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise VerifyError(f"{shown}: not part of the build (the manifest does not list it; "
                          "a trainer's glob would read it); move it out")
    dtype = np.dtype(m.dtype)
    vocab, eos, bos = tok["vocab_size"], tok["eos_token_id"], tok.get("bos_token_id")
    if vocab - 1 > np.iinfo(dtype).max:
        raise VerifyError(f"vocab_size {vocab} does not fit dtype {m.dtype}")
    per_source: dict[str, list[int]] = {}
    total_docs = total_tokens = total_loss = 0
    for shard in m.shards:
        if remote:
            remote.fetch_shard(shard)
        docs, loss = _check_shard(paths[shard["path"]], shard, m, dtype, eos, bos, vocab,
                                  per_source)
        if remote:
            remote.drop_shard(shard)
        total_docs += docs
        total_loss += loss
        total_tokens += shard["tokens"]
    _check_totals(m, per_source, total_tokens, total_docs, total_loss)
    return {"shards": len(m.shards), "documents": total_docs, "tokens": total_tokens}


def _check_shard(path: str, shard: dict, m, dtype: np.dtype, eos: int, bos: int | None,
                 vocab: int, per_source: dict) -> tuple[int, int]:
    name = shard["path"]
    if not os.path.isfile(path):
        raise VerifyError(f"{name}: missing")
    size, want = os.path.getsize(path), shard["tokens"] * dtype.itemsize
    if size != want:
        raise VerifyError(f"{name}: {size:,} bytes, manifest says {shard['tokens']:,} "
                          f"tokens = {want:,} bytes (truncated or overwritten)")
    iname = os.path.relpath(index_path(path), m.root)
    if not os.path.isfile(index_path(path)):
        raise VerifyError(f"{iname}: missing")
    try:
        idx = read_index(path)
    except (ValueError, OSError, EOFError, zlib.error, csv.Error) as e:
        raise VerifyError(f"{iname}: unreadable ({e})") from None
    _check_offsets(iname, idx.start, idx.end, shard)
    if shard.get("ends"):
        _check_ends(m.path(shard["ends"]), shard["ends"], idx.end, shard)
    tokens = open_tokens(path, m.dtype)
    if len(idx):
        ends_ok = tokens[idx.end - 1] == eos
        if not ends_ok.all():
            i = int(np.argmin(ends_ok))
            raise VerifyError(f"{name}: document {i} (id {idx.ids[i]}, tokens "
                              f"{idx.start[i]}:{idx.end[i]}) does not end with EOS {eos} "
                              f"(found {int(tokens[idx.end[i] - 1])})")
        n_eos = int(np.count_nonzero(tokens == eos))
        if n_eos != len(idx):
            at = np.flatnonzero(tokens == eos)
            pos = int(at[~np.isin(at, idx.end - 1)][0])
            i = int(np.searchsorted(idx.end, pos, side="right"))
            raise VerifyError(f"{name}: document {i} (id {idx.ids[i]}) holds EOS {eos} "
                              f"inside, at token {pos}; a trainer would split it there")
    if bos is not None and len(idx):
        starts_ok = tokens[idx.start] == bos
        if not starts_ok.all():
            i = int(np.argmin(starts_ok))
            raise VerifyError(f"{name}: document {i} (id {idx.ids[i]}) does not start "
                              f"with BOS {bos}")
    top = _max_id(tokens)
    if top >= vocab:
        pos = int(np.argmax(tokens >= vocab))
        raise VerifyError(f"{name}: token {pos} has id {top} >= vocab_size {vocab}")
    if sha256_file(path) != shard["sha256"]:
        raise VerifyError(f"{name}: sha256 differs from the manifest (content changed)")
    if shard.get("index_sha256") and sha256_file(index_path(path)) != shard["index_sha256"]:
        raise VerifyError(f"{iname}: sha256 differs from the manifest (content changed)")
    loss = shard["tokens"]
    if shard.get("mask"):
        loss = _check_mask(m.path(shard["mask"]), shard)
    counted: dict[str, int] = {}
    for a, b, s in zip(idx.start.tolist(), idx.end.tolist(), idx.src):
        acc = per_source.setdefault(s, [0, 0, 0])
        acc[0] += b - a
        acc[1] += 1
        counted[s] = counted.get(s, 0) + b - a
    if "sources" in shard and counted != shard["sources"]:
        raise VerifyError(f"{name}: index holds tokens per source {counted}; manifest says "
                          f"{shard['sources']}")
    if shard.get("mask"):
        mask = np.fromfile(m.path(shard["mask"]), dtype=np.uint8)
        for a, b, s in zip(idx.start.tolist(), idx.end.tolist(), idx.src):
            per_source[s][2] += int(mask[a:b].sum())
    else:
        for s, n in counted.items():
            per_source[s][2] += n
    return len(idx), loss


def _check_totals(m, per_source: dict, total_tokens: int, total_docs: int,
                  total_loss: int) -> None:
    for s in m.sources:
        got = per_source.pop(s["name"], [0, 0, 0])
        if got[:2] != [s["tokens"], s["documents"]]:
            raise VerifyError(f"source '{s['name']}': shards hold {got[0]:,} tokens in "
                              f"{got[1]:,} documents; manifest says {s['tokens']:,} in "
                              f"{s['documents']:,}")
        if "loss_tokens" in s and s["loss_tokens"] != got[2]:
            raise VerifyError(f"source '{s['name']}': masks give {got[2]:,} loss tokens; "
                              f"manifest says {s['loss_tokens']!r}")
    if per_source:
        raise VerifyError(f"shards name sources not in the manifest: {sorted(per_source)}")
    for key, got in (("total_tokens", total_tokens), ("documents", total_docs),
                     ("loss_tokens", total_loss)):
        if key in m.data and m[key] != got:
            raise VerifyError(f"{MANIFEST}: {key} is {m[key]!r}; the shards hold {got:,} "
                              "(hand-edited or damaged; rebuild)")
    layout = m.data.get("layout", "interleaved")
    for s in m.shards:
        parts = os.path.normpath(s["path"]).split(os.sep)
        if layout == "interleaved" and len(parts) != 1:
            raise VerifyError(f"{s['path']}: in a subfolder, but layout is interleaved")
        if layout == "per_source" and (len(parts) != 3 or parts[0] != "sources" or
                                       set(s.get("sources", {})) - {parts[1]}):
            raise VerifyError(f"{s['path']}: not sources/<name>/ of its one source, but "
                              "layout is per_source")
        if layout not in ("interleaved", "per_source"):
            raise VerifyError(f"{MANIFEST}: layout {layout!r} is not interleaved or per_source")
    removed = m.data.get("removed_index")
    if removed is not None:
        _need(isinstance(removed, dict) and isinstance(removed.get("path"), str) and
              isinstance(removed.get("sha256"), str), "removed_index", "expected {path, sha256}")
        path = _inside(m.root, removed["path"], "removed_index.path")
        if not os.path.isfile(path):
            raise VerifyError(f"{removed['path']}: missing (the clean stage's listing)")
        if sha256_file(path) != removed["sha256"]:
            raise VerifyError(f"{removed['path']}: sha256 differs from the manifest")


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


def _check_ends(path: str, name: str, end: np.ndarray, shard: dict) -> None:
    if not os.path.isfile(path):
        raise VerifyError(f"{name}: missing")
    if os.path.getsize(path) != 8 * len(end):
        raise VerifyError(f"{name}: {os.path.getsize(path):,} bytes; the index lists "
                          f"{len(end):,} documents (8 bytes each)")
    if not np.array_equal(open_ends(path), end):
        raise VerifyError(f"{name}: document ends differ from the .csv.gz index")
    if sha256_file(path) != shard.get("ends_sha256"):
        raise VerifyError(f"{name}: sha256 differs from the manifest")


def _check_mask(path: str, shard: dict) -> int:
    name = shard["mask"]
    if not os.path.isfile(path):
        raise VerifyError(f"{name}: missing")
    if os.path.getsize(path) != shard["tokens"]:
        raise VerifyError(f"{name}: {os.path.getsize(path):,} bytes; shard holds "
                          f"{shard['tokens']:,} tokens")
    if sha256_file(path) != shard.get("mask_sha256"):
        raise VerifyError(f"{name}: sha256 differs from the manifest")
    mask = np.fromfile(path, dtype=np.uint8)
    if mask.size and int(mask.max()) > 1:
        raise VerifyError(f"{name}: holds bytes other than 0 and 1")
    loss = int(mask.sum())
    if "loss_tokens" in shard and shard["loss_tokens"] != loss:
        raise VerifyError(f"{name}: {loss:,} loss tokens; manifest says {shard['loss_tokens']!r}")
    return loss
