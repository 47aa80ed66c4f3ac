"""Buffered writes of the build's large files go out in calls of at most WRITE_CHUNK bytes
(a 2 MiB call asks the kernel for 2 MiB folios: see instmix.io.pages), with the same bytes."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from conftest import DOLMA2_TOKENIZER

from instmix.config import TokenizerSpec
from instmix.io import pages
from instmix.io.direct import DirectWriter
from instmix.io.pages import WRITE_CHUNK, ChunkedFile, save_npy, write_chunked
from instmix.tokenize.cache import UnitWriter
from instmix.tokenize.facts import load_tokenizer_info
from instmix.tokenize.framing import Encoded


@pytest.fixture(scope="module")
def tiny_info():
    return load_tokenizer_info(TokenizerSpec(path=DOLMA2_TOKENIZER))  # uint32 ids


class Recorder(io.RawIOBase):
    """A writable file that keeps what it was given and the size of every call."""

    def __init__(self):
        self.data = bytearray()
        self.calls: list[int] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.calls.append(len(memoryview(b).cast("B")))
        self.data += bytes(b)
        return self.calls[-1]


def test_write_chunked_splits_into_pieces_of_at_most_write_chunk():
    data = np.arange(5 * WRITE_CHUNK // 8 + 3, dtype=np.int64)  # 5 chunks and 24 bytes
    f = Recorder()
    assert write_chunked(f, data) == data.nbytes
    assert bytes(f.data) == data.tobytes()
    assert f.calls == [WRITE_CHUNK] * 5 + [24]
    empty = Recorder()
    assert write_chunked(empty, b"") == 0 and empty.calls == []


def test_save_npy_writes_np_save_bytes_in_chunks(tmp_path):
    a = np.arange(3_000_000, dtype=np.int64)
    save_npy(str(tmp_path / "a.npy"), a)
    ref = io.BytesIO()
    np.save(ref, a)
    assert (tmp_path / "a.npy").read_bytes() == ref.getvalue()
    rec = Recorder()
    np.save(ChunkedFile(rec), a)  # what save_npy hands np.save
    assert bytes(rec.data) == ref.getvalue()
    assert max(rec.calls) <= WRITE_CHUNK and len(rec.calls) > 20
    assert np.array_equal(np.load(tmp_path / "a.npy"), a)


def test_cache_unit_tokens_go_out_in_chunks(tmp_path, tiny_info):
    w = UnitWriter(str(tmp_path), "unit", tiny_info, with_mask=True)
    rec_tok, rec_mask = Recorder(), Recorder()
    w._tok.close()
    w._mask.close()
    w._tok, w._mask = rec_tok, rec_mask
    n = 3 * WRITE_CHUNK // 4 + 10  # uint32 ids: 3 MiB and 40 bytes
    tokens = (np.arange(n) % 100).astype(np.uint32)
    mask = np.arange(n) % 3 == 0
    w.add(Encoded(tokens, np.array([0, n // 2, n]), mask), ["a", "b"])
    assert bytes(rec_tok.data) == tokens.astype(tiny_info.dtype).tobytes()
    assert bytes(rec_mask.data) == mask.tobytes()
    assert max(rec_tok.calls) <= WRITE_CHUNK and len(rec_tok.calls) >= 3
    assert max(rec_mask.calls) <= WRITE_CHUNK
    w.abort()


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
    monkeypatch.undo()
    assert (tmp_path / "t.bin").read_bytes() == data.tobytes()
    assert max(calls) <= pages.WRITE_CHUNK and sum(calls) == data.size
