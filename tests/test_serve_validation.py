"""Datasets refuse broken builds and states, naming the file or key (issue 10 items 14, 15);
the memory-mapped document-ends index and its csv fallback."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import config, write_jsonl

import instmix
import instmix.serve.streams
from instmix.errors import InstmixError
from instmix.format.reader import read_index
from instmix.format.verify import verify

SEQ = 64


@pytest.fixture(scope="module")
def build(tmp_path_factory, paragraphs):
    tmp = tmp_path_factory.mktemp("val")
    orca = write_jsonl(tmp / "orca.jsonl", [{"question": p[:50], "response": p[50:]}
                                            for p in paragraphs[:200]])
    cfg = config(tmp, [{"name": "orca", "paths": [orca], "kind": "openorca",
                        "loss": "responses"}], shard_tokens=3_000)
    instmix.build(instmix.load_config(cfg))
    return cfg["output"]


@pytest.fixture
def copy(build, tmp_path):
    dst = str(tmp_path / "b")
    shutil.copytree(build, dst)
    return dst


def test_ends_file_matches_the_csv_and_is_memory_mapped(build):
    m = json.load(open(os.path.join(build, "manifest.json")))
    for s in m["shards"]:
        assert s["ends"].endswith(".ends") and not s["ends"].endswith(".npy")
        ends = np.fromfile(os.path.join(build, s["ends"]), dtype="<i8")
        assert ends.tolist() == read_index(os.path.join(build, s["path"])).end.tolist()
    ds = instmix.ShardDataset(build, SEQ)
    assert ds.shards[0].ends_csv is None and isinstance(ds.shards[0].ends, np.ndarray)
    verify(build)  # checks the .ends files against the index


def test_build_without_ends_falls_back_to_the_csv(build, copy):
    m = json.load(open(os.path.join(copy, "manifest.json")))
    for s in m["shards"]:
        os.remove(os.path.join(copy, s.pop("ends")))
        s.pop("ends_sha256")
    json.dump(m, open(os.path.join(copy, "manifest.json"), "w"))
    a, b = instmix.ShardDataset(build, SEQ, seed=1), instmix.ShardDataset(copy, SEQ, seed=1)
    assert b.shards[0].ends_csv is not None and b.max_docs == a.max_docs
    for x, y in zip(a, b):
        assert x["doc_lens"].tolist() == y["doc_lens"].tolist()


def test_missing_csv_index_is_refused(copy):
    m = json.load(open(os.path.join(copy, "manifest.json")))
    for s in m["shards"]:
        s.pop("ends")
    json.dump(m, open(os.path.join(copy, "manifest.json"), "w"))
    os.remove(os.path.join(copy, "part-00000.csv.gz"))
    with pytest.raises(InstmixError, match=r"part-00000\.csv\.gz: missing"):
        instmix.ShardDataset(copy, SEQ)


def test_missing_or_cut_ends_file_is_refused(copy):
    path = os.path.join(copy, "part-00000.ends")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 8)
    with pytest.raises(InstmixError, match=r"part-00000\.ends: missing or not"):
        instmix.ShardDataset(copy, SEQ)
    os.remove(path)
    with pytest.raises(InstmixError, match=r"part-00000\.ends"):
        instmix.ShardDataset(copy, SEQ)


def test_truncated_shard_is_refused(copy):
    path = os.path.join(copy, "part-00001.npy")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 3)
    with pytest.raises(InstmixError, match=r"part-00001\.npy: .* \(truncated or replaced\)"):
        instmix.ShardDataset(copy, SEQ)


def test_seq_len_longer_than_every_shard_is_an_error(build):
    with pytest.raises(InstmixError, match="longer than every shard"):
        instmix.ShardDataset(build, 10 ** 6)
    with pytest.raises(InstmixError, match="seq_len must be an integer"):
        instmix.ShardDataset(build, 512.0)
    with pytest.raises(InstmixError, match="no whole global step"):
        n = instmix.ShardDataset(build, SEQ).num_sequences
        len(instmix.DataLoader(instmix.ShardDataset(build, SEQ), batch_size=n + 1))


@pytest.mark.parametrize("edit,key", [({"consumed": -8}, "consumed"),
                                      ({"consumed": 10 ** 9}, "consumed"),
                                      ({"epoch": "1"}, "epoch"),
                                      ({"consumed": True}, "consumed")])
def test_edited_cursor_is_refused(build, edit, key):
    loader = instmix.DataLoader(instmix.ShardDataset(build, SEQ), batch_size=2)
    next(iter(loader))
    state = loader.state_dict()
    state["cursor"].update(edit)
    with pytest.raises(InstmixError, match=f"cursor: {key}"):
        instmix.DataLoader(instmix.ShardDataset(build, SEQ), batch_size=2).load_state_dict(state)


@pytest.mark.parametrize("value", [-5, "3", None, 2.0])
def test_edited_yielded_is_refused(build, value):
    ds = instmix.ShardDataset(build, SEQ)
    state = ds.state_dict()
    state["yielded"] = value
    with pytest.raises(InstmixError, match="yielded"):
        instmix.ShardDataset(build, SEQ).load_state_dict(state)


@pytest.fixture(scope="module")
def stream_cfg(tmp_path_factory, paragraphs):
    tmp = tmp_path_factory.mktemp("sval")
    rows = [{"text": p} for p in paragraphs[:80]] + [{"text": 5}, "not an object"]
    src = write_jsonl(tmp / "t.jsonl", rows)
    return config(tmp, [{"name": "t", "paths": [src]}], skip_bad_records=True,
                  total_tokens=SEQ * 2 * 10)


def test_streaming_edited_state_is_refused(stream_cfg):
    def make():
        return instmix.DataLoader(instmix.StreamingMixture(stream_cfg, SEQ, streams=2),
                                  batch_size=2)

    loader = make()
    next(iter(loader))
    state = loader.state_dict()
    bad = json.loads(json.dumps(state))
    bad["cursor"]["consumed"] = 6
    with pytest.raises(InstmixError, match="consumed: 6 does not match stream"):
        make().load_state_dict(bad)
    bad = json.loads(json.dumps(state))
    bad["cursor"]["streams"]["0"]["packer"]["offset"] = -3
    with pytest.raises(InstmixError, match=r"streams\.0\.packer\.offset: -3"):
        make().load_state_dict(bad)


def test_streaming_fingerprint_by_content_and_options(stream_cfg, tmp_path):
    base = instmix.StreamingMixture(stream_cfg, SEQ).fingerprint
    path = stream_cfg["sources"][0]["paths"][0]
    os.utime(path, (1, 1))  # another mtime, same content: same data
    assert instmix.StreamingMixture(stream_cfg, SEQ).fingerprint == base
    for change in ({"id_field": "text"}, {"txt_unit": "paragraph"}, {"options": {"a": 1}}):
        src = dict(stream_cfg["sources"][0], **change)
        try:
            other = instmix.StreamingMixture(dict(stream_cfg, sources=[src]), SEQ)
        except instmix.ConfigError:
            continue  # an option this kind refuses
        assert other.fingerprint != base, change
    data = open(path, "rb").read()
    with open(path, "wb") as f:  # same size and name, other content
        f.write(data.replace(b"the", b"THE", 1))
    try:
        assert instmix.StreamingMixture(stream_cfg, SEQ).fingerprint != base
    finally:
        with open(path, "wb") as f:
            f.write(data)


def test_streaming_keeps_skipped_record_counts(stream_cfg):
    loader = instmix.DataLoader(instmix.StreamingMixture(stream_cfg, SEQ, streams=2),
                                batch_size=2)
    next(iter(loader))
    state = loader.state_dict()
    skipped = {}
    for snap in state["cursor"]["streams"].values():
        for part in snap["packer"]["pipeline"]["sources"]:
            for k, v in part["skipped"].items():
                skipped[k] = skipped.get(k, 0) + v
    assert skipped == {"bad_field": 1, "not_an_object": 1}


def test_stream_tokenizer_fallback_is_in_the_snapshot(stream_cfg):
    sm = instmix.StreamingMixture(stream_cfg, SEQ)
    stream = instmix.serve.streams.Stream(sm, 0, 0)
    stream.tok["reference"] = True
    snap = stream.snapshot()
    assert snap["tokenizer"] == {"checked": 0, "reference": True}
    other = instmix.serve.streams.Stream(sm, 0, 0)
    other.restore(snap)
    assert other.tok["reference"] is True


@pytest.mark.parametrize("kw,message", [
    ({"block_bytes": 0}, "block_bytes must be an integer >= 1 (bytes), got 0"),
    ({"block_bytes": True}, "block_bytes must be an integer >= 1 (bytes), got True"),
    ({"block_bytes": 4096.0}, "block_bytes must be an integer >= 1 (bytes), got 4096.0"),
    ({"cache_bytes": "1G"}, "cache_bytes must be an integer >= 1 (bytes), got '1G'"),
    ({"block_bytes": 1 << 20, "cache_bytes": 1 << 16},
     "cache_bytes (65,536) must be >= block_bytes (1,048,576): the cache holds whole blocks"),
])
def test_block_cache_sizes_are_validated(build, kw, message):
    with pytest.raises(InstmixError) as e:
        instmix.ShardDataset(build, SEQ, **kw)
    assert str(e.value) == message


def test_default_block_size_follows_the_cache_and_the_item():
    from instmix.io.ranges import choose_block_bytes

    mib = 1 << 20
    assert choose_block_bytes(None, 256 * mib, 200 * mib, 8192) == mib  # all of it fits
    assert choose_block_bytes(None, 256 * mib, 10**12, 2048 * 4) == 64 << 10  # shuffled misses
    assert choose_block_bytes(None, 256 * mib, 10**12, 32768 * 5) == 512 << 10  # >= 2 items
    assert choose_block_bytes(None, 48 << 10, 10**12, 8192) == 32 << 10  # within the cache
    assert choose_block_bytes(None, 300 << 10, 200 << 10, 8192) == 256 << 10
    assert choose_block_bytes(4096, 256 * mib, 10**12, 8192) == 4096  # given: kept
