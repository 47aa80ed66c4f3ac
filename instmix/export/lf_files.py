"""LLaMA-Factory data files written from a build: the tokenized ``save_to_disk`` folder
(route a) and, for route b, ``dataset_info.json`` with either one ``instmix.jsonl`` holding
every document in the build's order (for ``mix_strategy: concat``) or one
``<source>.jsonl`` per source (for ``interleave_*``)."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack

import numpy as np
from tokenizers import Tokenizer

from instmix.format.reader import load_tokens, read_index
from instmix.io.atomic import make_temp_dir, swap_dir

from .facts import BuildFacts

TOKENIZED_DIR = "tokenized"
TEXT_DIR = "text"
STREAM = "instmix"  # the dataset name of the one-file text export


def _blocks(paths: list[str], dtype: str, seq_len: int):
    """``seq_len`` blocks of the concatenated files; the last one may be shorter."""
    carry = np.zeros(0, dtype=np.int64)
    for path in paths:
        tokens = load_tokens(path, dtype)  # one shard at a time (a URL: downloaded)
        pos = 0
        if len(carry):
            take = min(seq_len - len(carry), len(tokens))
            carry = np.concatenate([carry, tokens[:take]])
            pos = take
            if len(carry) < seq_len:
                continue
            yield {"input_ids": carry.tolist()}
            carry = np.zeros(0, dtype=np.int64)
        while pos + seq_len <= len(tokens):
            yield {"input_ids": tokens[pos:pos + seq_len].tolist()}
            pos += seq_len
        carry = np.asarray(tokens[pos:], dtype=np.int64)
    if len(carry):
        yield {"input_ids": carry.tolist()}


def _documents(paths: list[str], dtype: str):
    for path in paths:
        tokens = load_tokens(path, dtype)  # one shard at a time (a URL: downloaded)
        idx = read_index(path)
        for a, b in zip(idx.start.tolist(), idx.end.tolist()):
            yield {"input_ids": tokens[a:b].tolist()}


def write_tokenized(facts: BuildFacts, dest: str, rows: str, seq_len: int, *,
                    check=None) -> int:
    """Write the ``save_to_disk`` folder ``dest`` atomically: one ``input_ids`` row per
    ``seq_len`` block of the token stream (``rows="blocks"``) or per document; return the
    row count."""
    import datasets  # lazy: importing datasets takes ~1 s, only this route needs it
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar

    # A tuple: datasets splits list-valued gen_kwargs into shards, one generator call each,
    # which would restart the blocks at every file.
    paths = tuple(f.path for f in facts.shards)
    if rows == "blocks":
        gen, kwargs = _blocks, {"paths": paths, "dtype": facts.dtype, "seq_len": seq_len}
    else:
        gen, kwargs = _documents, {"paths": paths, "dtype": facts.dtype}
    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    tmp = make_temp_dir(dest)
    cache = os.path.join(tmp, ".cache")
    disable_progress_bar()
    try:
        ds = datasets.Dataset.from_generator(gen, gen_kwargs=kwargs, features=features,
                                             cache_dir=cache)
        count = len(ds)
        ds.save_to_disk(os.path.join(tmp, "data"))
        del ds
        shutil.rmtree(cache, ignore_errors=True)
        data = os.path.join(tmp, "data")
        for name in os.listdir(data):
            os.rename(os.path.join(data, name), os.path.join(tmp, name))
        os.rmdir(data)
        swap_dir(tmp, dest, check=check)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        enable_progress_bar()
    return count


def doc_lengths(facts: BuildFacts) -> dict[str, list[np.ndarray]]:
    """Per source, its documents' lengths in stream order (BOS not counted)."""
    bos = int(facts.bos_token_id is not None)
    out: dict[str, list[np.ndarray]] = {s.name: [] for s in facts.used_sources}
    for f in facts.shards:
        idx = read_index(f.path)
        lengths = idx.end - idx.start - bos
        src = np.asarray(idx.src)
        for name in out:
            out[name].append(lengths[src == name])
    return out


def _decode_into(files: dict, facts: BuildFacts, tok, bos: int, batch: int) -> None:
    """Each document's text without BOS and EOS (LLaMA-Factory appends its EOS string),
    with its source; ``files`` maps a source (or None: every source) to an open file."""
    for f in facts.shards:
        tokens = load_tokens(f.path, facts.dtype)
        idx = read_index(f.path)
        for lo in range(0, len(idx), batch):
            hi = min(lo + batch, len(idx))
            ids = [tokens[a + bos:b - 1].tolist() for a, b in
                   zip(idx.start[lo:hi].tolist(), idx.end[lo:hi].tolist())]
            texts = tok.decode_batch(ids, skip_special_tokens=False)
            for src, text in zip(idx.src[lo:hi], texts):
                files.get(src, files.get(None)).write(
                    json.dumps({"text": text, "source": src}, ensure_ascii=False) + "\n")


def write_text(facts: BuildFacts, dest: str, batch: int = 2048, *, per_source: bool = False,
               check=None) -> dict[str, str]:
    """Decode every document of the build (``{"text": ..., "source": ...}``, in stream order,
    repetitions included) into ``dest/instmix.jsonl``, or with ``per_source`` into
    ``dest/<source>.jsonl``, and write ``dataset_info.json``."""

    tok = Tokenizer.from_file(facts.tokenizer_path)
    bos = int(facts.bos_token_id is not None)
    names = [s.name for s in facts.used_sources] if per_source else [STREAM]
    tmp = make_temp_dir(dest)
    try:
        with ExitStack() as stack:
            files = {n if per_source else None: stack.enter_context(
                open(os.path.join(tmp, f"{n}.jsonl"), "w", encoding="utf-8")) for n in names}
            _decode_into(files, facts, tok, bos, batch)
        info = {n: {"file_name": f"{n}.jsonl", "columns": {"prompt": "text"}} for n in names}
        with open(os.path.join(tmp, "dataset_info.json"), "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2)
            fh.write("\n")
        swap_dir(tmp, dest, check=check)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {n: os.path.join(dest, f"{n}.jsonl") for n in names}
