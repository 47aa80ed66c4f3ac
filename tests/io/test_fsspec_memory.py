"""Any installed fsspec protocol works where a path is taken: fsspec's in-process
``memory://`` filesystem (whose own paths are spelled ``/corpus/...``) as inputs, tokenizer,
cache and output gives the local build, file for file."""

from __future__ import annotations

import json
import os

import fsspec
import numpy as np
import pytest
from conftest import OLMO_TOKENIZER, write_jsonl

import instmix
from instmix.format.verify import verify
from instmix.io import fs
from instmix.serve.shard_dataset import ShardDataset

ROOT = "memory://instmix-test"


@pytest.fixture(scope="module")
def memory(tmp_path_factory, paragraphs):
    """The same corpus in a local folder and under memory://instmix-test/corpus."""
    local = tmp_path_factory.mktemp("mem-corpus")
    write_jsonl(local / "data" / "a.jsonl", [{"text": p} for p in paragraphs[:200]])
    write_jsonl(local / "data" / "sub" / "b.jsonl.zst", [{"text": p} for p in paragraphs[200:450]],
                compress="zst")
    write_jsonl(local / "qa" / "q.jsonl", [{"question": p[:50], "response": p[50:]}
                                          for p in paragraphs[450:600]])
    mem = fsspec.filesystem("memory")
    for dirpath, _, names in os.walk(local):
        for n in names:
            p = os.path.join(dirpath, n)
            mem.put_file(p, f"{ROOT}/corpus/{os.path.relpath(p, local)}")
    mem.put_file(OLMO_TOKENIZER, f"{ROOT}/tok/tokenizer.json")
    yield str(local)
    mem.rm(ROOT, recursive=True)


def _cfg(data: str, tok: str, out: str, cache: str) -> dict:
    return {"tokenizer": tok, "seed": 4, "output": out, "cache_dir": cache, "shard_tokens": 7_000,
            "sources": [{"name": "web", "paths": [f"{data}/data/**/*.jsonl*"], "ratio": 0.6},
                        {"name": "qa", "kind": "openorca", "paths": [f"{data}/qa/*.jsonl"],
                         "ratio": 0.4, "loss": "responses", "max_repetition": 2}]}


def _tree(folder: str) -> dict[str, bytes]:
    return {os.path.relpath(p, folder): open(p, "rb").read() for p in fs.walk_files(folder)}


def test_glob_keeps_the_spelling_of_the_pattern(memory):
    found = fs.glob(f"{ROOT}/corpus/data/**/*.jsonl*")
    assert found == [f"{ROOT}/corpus/data/a.jsonl", f"{ROOT}/corpus/data/sub/b.jsonl.zst"]
    assert fs.walk_files(f"{ROOT}/corpus/qa") == [f"{ROOT}/corpus/qa/q.jsonl"]


def test_a_build_over_memory_urls_equals_the_local_build(memory, tmp_path):
    local = instmix.build(instmix.load_config(_cfg(memory, OLMO_TOKENIZER, str(tmp_path / "a"),
                                                   str(tmp_path / "ca"))))
    remote_in = instmix.build(instmix.load_config(_cfg(
        f"{ROOT}/corpus", f"{ROOT}/tok/tokenizer.json", str(tmp_path / "b"),
        f"{ROOT}/cache")))
    assert remote_in == local
    assert _tree(str(tmp_path / "b")) == _tree(str(tmp_path / "a"))  # ids and bytes too
    # output on memory:// as well: a committed generation holding the local files
    out = f"{ROOT}/builds/x"
    assert instmix.build(instmix.load_config(_cfg(
        f"{ROOT}/corpus", f"{ROOT}/tok/tokenizer.json", out, f"{ROOT}/cache"))) == local
    gen = json.loads(fs.read_bytes(f"{out}/manifest.json"))["generation"]
    files = fs.walk_files(f"{out}/{gen}")
    assert {f[len(out) + len(gen) + 2:]: fs.read_bytes(f) for f in files} == \
        _tree(str(tmp_path / "a"))
    assert verify(out) == {"shards": len(local["shards"]), "documents": local["documents"],
                           "tokens": local["total_tokens"]}
    a = list(ShardDataset(str(tmp_path / "a"), 128, seed=2))
    b = list(ShardDataset(out, 128, seed=2, block_bytes=4096, cache_bytes=64 << 10))
    assert len(a) == len(b) > 10
    assert all(np.array_equal(x["input_ids"].numpy(), y["input_ids"].numpy())
               for x, y in zip(a, b))
