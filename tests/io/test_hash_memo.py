"""The input-hash memo: re-hash only when (device, inode, size, mtime_ns) change."""

from __future__ import annotations

import os

from conftest import config, write_jsonl

import instmix
from instmix.io import hashing
from instmix.io.hashing import HashMemo, hash_input


def _old(path, seconds=100):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9))


def test_memo_reuses_hashes_until_the_file_changes(tmp_path, monkeypatch):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "one"}\n')
    _old(f)
    memo = HashMemo(str(tmp_path / "cache"))
    first = memo(str(f))
    assert first == hash_input(str(f))
    memo.save()
    calls = []
    monkeypatch.setattr(hashing, "hash_input", lambda p: calls.append(p) or "rehashed")
    again = HashMemo(str(tmp_path / "cache"))  # read back from its file
    assert again(str(f)) == first and calls == []
    # Same size and mtime put back: indistinguishable by design, the memo answers.
    st = os.stat(f)
    f.write_text('{"text": "two"}\n')
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert again(str(f)) == first and calls == []
    # A new mtime, a new size or a new inode: hashed again.
    _old(f, 50)
    assert again(str(f)) == "rehashed" and len(calls) == 1
    f.write_text('{"text": "three!"}\n')
    assert again(str(f)) == "rehashed" and len(calls) == 2
    g = tmp_path / "b.jsonl"
    g.write_text('{"text": "one"}\n')
    os.replace(g, f)
    assert again(str(f)) == "rehashed" and len(calls) == 3


def test_files_written_just_now_are_not_remembered(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text("x\n")
    memo = HashMemo(str(tmp_path / "cache"))
    memo(str(f))
    assert memo.entries == {}
    _old(f)
    memo(str(f))
    assert list(memo.entries) == [os.path.realpath(f)]


def test_damaged_memo_is_an_empty_one(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / hashing.MEMO_FILE).write_bytes(b"\x00not json")
    f = tmp_path / "a.txt"
    f.write_text("hello")
    _old(f)
    memo = HashMemo(str(cache))
    assert memo.entries == {} and memo(str(f)) == hash_input(str(f))
    memo.save()
    assert os.path.realpath(f) in HashMemo(str(cache)).entries


def test_folders_are_remembered_per_file(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    (d / "state.json").write_text("{}")
    (d / "data.arrow").write_bytes(b"abc")
    for p in d.iterdir():
        _old(p)
    memo = HashMemo(None)
    h = memo(str(d))
    assert h == hash_input(str(d)) and memo.entries
    (d / "data.arrow").write_bytes(b"abcd")
    assert memo(str(d)) == hash_input(str(d)) != h


def test_a_warm_rebuild_reads_no_input_again(tmp_path, real_docs, monkeypatch):
    files = [write_jsonl(tmp_path / f"p{i}.jsonl.zst", real_docs[i::2], "zst") for i in range(2)]
    for f in files:
        _old(f)
    cfg = instmix.load_config(config(tmp_path, [{"name": "a", "paths": files}]))
    first = instmix.build(cfg)
    calls = []
    real = hashing.hash_input
    monkeypatch.setattr(hashing, "hash_input", lambda p: calls.append(p) or real(p))
    assert instmix.build(cfg) == first and calls == []
    with open(files[1], "ab") as f:  # a changed input is hashed (and tokenized) again
        f.write(b"")
    os.utime(files[1], ns=(0, 10**18))
    instmix.build(cfg)
    assert calls == [files[1]]
