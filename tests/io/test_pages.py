"""Buffered writes of the build's large files go out in calls of at most WRITE_CHUNK bytes
(a large call asks the kernel for large folios: see instmix.io.pages), with the same bytes."""

from __future__ import annotations

import gzip
import io
import os

import numpy as np
import pytest
from conftest import DOLMA2_TOKENIZER

from instmix.config import TokenizerSpec
from instmix.format.writer import csv_rows, open_shard
from instmix.io import pages
from instmix.io.direct import DirectWriter
from instmix.io.pages import WRITE_CHUNK, save_npy, write_chunked
from instmix.tokenize.cache import UnitWriter
from instmix.tokenize.facts import load_tokenizer_info
from instmix.tokenize.framing import Encoded


@pytest.fixture(scope="module")
def tiny_info():
    return load_tokenizer_info(TokenizerSpec(path=DOLMA2_TOKENIZER))  # uint32 ids


class Recorder(io.RawIOBase):
    """A writable raw file that keeps what it was given and the size of every call."""

    def __init__(self):
        self.data = bytearray()
        self.calls: list[int] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.calls.append(len(memoryview(b).cast("B")))
        self.data += bytes(b)
        return self.calls[-1]


@pytest.fixture
def raw_files(monkeypatch):
    """The raw files under every :func:`pages.open_chunked` file, by base name: what the
    operating system would be asked to write, call by call (the buffering is the real one)."""
    raws: dict[str, Recorder] = {}

    def recording_open(path, mode, buffering):
        assert mode == "wb"
        raws[os.path.basename(path)] = raw = Recorder()
        return io.BufferedWriter(raw, buffer_size=buffering)

    monkeypatch.setattr(pages, "open", recording_open, raising=False)
    return raws


def test_write_chunked_splits_into_pieces_of_at_most_write_chunk():
    data = np.arange(5 * WRITE_CHUNK // 8 + 3, dtype=np.int64)  # 5 chunks and 24 bytes
    f = Recorder()
    assert write_chunked(f, data) == data.nbytes
    assert bytes(f.data) == data.tobytes()
    assert f.calls == [WRITE_CHUNK] * 5 + [24]
    empty = Recorder()
    assert write_chunked(empty, b"") == 0 and empty.calls == []


def test_save_npy_writes_np_save_bytes_in_chunks(tmp_path, raw_files):
    a = np.arange(3_000_000, dtype=np.int64)
    save_npy(str(tmp_path / "a.npy"), a)
    ref = io.BytesIO()
    np.save(ref, a)
    rec = raw_files["a.npy"]
    assert bytes(rec.data) == ref.getvalue()
    assert max(rec.calls) <= WRITE_CHUNK and len(rec.calls) > 20


def test_save_npy_file_loads(tmp_path):
    a = np.arange(300_000, dtype=np.int64)
    save_npy(str(tmp_path / "a.npy"), a)
    assert np.array_equal(np.load(tmp_path / "a.npy"), a)


def test_cache_unit_files_go_out_in_chunks(tmp_path, tiny_info, raw_files):
    w = UnitWriter(str(tmp_path), "unit", tiny_info, with_mask=True)
    n = 3 * WRITE_CHUNK + 10  # the mask: 3 chunks and 10 bytes (the uint32 ids: 12 and 40)
    tokens = (np.arange(n) % 100).astype(np.uint32)
    mask = np.arange(n) % 3 == 0
    w.add(Encoded(tokens, np.array([0, n // 2, n]), mask), ["a", "b"])
    w.add(Encoded(tokens[:5], np.array([0, 5]), mask[:5]), ["c"])  # a small write: buffered
    for f in (w._tok, w._mask, w._ids):
        f.flush()
    tok, msk = raw_files["tokens.bin"], raw_files["mask.bin"]
    assert bytes(tok.data) == np.concatenate([tokens, tokens[:5]]).tobytes()
    assert bytes(msk.data) == np.concatenate([mask, mask[:5]]).tobytes()
    assert bytes(raw_files["ids.bin"].data) == b"abc"
    assert max(tok.calls) <= WRITE_CHUNK and len(tok.calls) >= 3
    assert max(msk.calls) <= WRITE_CHUNK and len(msk.calls) >= 3
    w.abort()


def test_shard_index_and_ends_go_out_in_chunks(tmp_path, raw_files):
    shard = open_shard(str(tmp_path), 0, "uint32", with_mask=False)
    docs = 200_000  # 1.6 MB of document ends, an index of several chunks compressed
    lengths = np.full(docs, 3, np.int64)
    tokens = np.arange(3 * docs, dtype=np.uint32)
    ids = [f"doc-{i * 7919 % docs}" for i in range(docs)]
    shard.add_run(tokens, lengths, None, ids, ["s"] * docs)
    stats = shard.close()
    ends = np.arange(1, docs + 1, dtype="<i8") * 3
    rec = raw_files["part-00000.ends"]
    assert bytes(rec.data) == ends.tobytes()
    assert max(rec.calls) <= WRITE_CHUNK and len(rec.calls) >= 3
    index = raw_files["part-00000.csv.gz"]
    assert gzip.decompress(bytes(index.data)).decode() == csv_rows(
        (ends - 3).tolist(), ends.tolist(), ids, ["s"] * docs)
    assert max(index.calls) <= WRITE_CHUNK and len(index.calls) >= 2
    assert stats.documents == docs and stats.tokens == 3 * docs


def test_direct_writer_buffered_fallback_writes_in_chunks(tmp_path, monkeypatch):
    data = np.random.default_rng(0).integers(0, 255, 9 * WRITE_CHUNK + 5, dtype=np.uint8)
    w = DirectWriter(str(tmp_path / "t.bin"))
    if w.direct:
        w._drop_direct()  # the fallback, as on a file system that refuses O_DIRECT
    calls = []
    real = os.write

    def write(fd, b):
        calls.append(len(b))
        return real(fd, b)

    monkeypatch.setattr(os, "write", write)
    w.write(data)
    w.close()
    assert (tmp_path / "t.bin").read_bytes() == data.tobytes()
    assert max(calls) <= WRITE_CHUNK and sum(calls) == data.size
