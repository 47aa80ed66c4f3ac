"""Any installed fsspec protocol works where a path is taken: fsspec's in-process
``memory://`` filesystem (whose own paths are spelled ``/corpus/...``) as inputs, tokenizer,
cache and output gives the local build, file for file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import OLMO_TOKENIZER, read_tree, write_corpus

import instmix
from instmix.format.verify import verify
from instmix.io import fs
from instmix.serve.shard_dataset import ShardDataset

ROOT = "memory://instmix-test"


@pytest.fixture(scope="module")
def memory(tmp_path_factory, paragraphs):
    """The same corpus in a local folder and under memory://instmix-test/corpus."""
    local = tmp_path_factory.mktemp("mem-corpus")
    write_corpus(local, paragraphs, ends=(200, 450, 600), cut=50)
    fs.upload_tree(str(local), f"{ROOT}/corpus")
    fs.put_file(OLMO_TOKENIZER, f"{ROOT}/tok/tokenizer.json")
    yield str(local)
    fs.remove_prefix(ROOT)


def _cfg(data: str, tok: str, out: str, cache: str) -> dict:
    return {"tokenizer": tok, "seed": 4, "output": out, "cache_dir": cache, "shard_tokens": 7_000,
            "sources": [{"name": "web", "paths": [f"{data}/data/**/*.jsonl*"], "ratio": 0.6},
                        {"name": "qa", "kind": "openorca", "paths": [f"{data}/qa/*.jsonl"],
                         "ratio": 0.4, "loss": "responses", "max_repetition": 2}]}


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
    assert read_tree(str(tmp_path / "b")) == read_tree(str(tmp_path / "a"))  # ids and bytes too
    # output on memory:// as well: a committed generation holding the local files
    out = f"{ROOT}/builds/x"
    assert instmix.build(instmix.load_config(_cfg(
        f"{ROOT}/corpus", f"{ROOT}/tok/tokenizer.json", out, f"{ROOT}/cache"))) == local
    gen = json.loads(fs.read_bytes(f"{out}/manifest.json"))["generation"]
    files = fs.walk_files(f"{out}/{gen}")
    assert {f[len(out) + len(gen) + 2:]: fs.read_bytes(f) for f in files} == \
        read_tree(str(tmp_path / "a"))
    assert verify(out) == {"shards": len(local["shards"]), "documents": local["documents"],
                           "tokens": local["total_tokens"]}
    a = list(ShardDataset(str(tmp_path / "a"), 128, seed=2))
    b = list(ShardDataset(out, 128, seed=2, block_bytes=4096, cache_bytes=64 << 10))
    assert len(a) == len(b) > 10
    assert all(np.array_equal(x["input_ids"].numpy(), y["input_ids"].numpy())
               for x, y in zip(a, b))
