"""CheckedZstd on files larger than one decompress call: every byte, in order, or refused."""

from __future__ import annotations

import random

import pytest
import zstandard

from instmix.io.compressed import ZSTD_INPUT, DamagedInput, open_binary


def _frames(parts: list[bytes]) -> bytes:
    comp = zstandard.ZstdCompressor(level=1)
    return b"".join(comp.compress(p) for p in parts)


def _text(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(1, 12)).hex() for _ in range(5000)]
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choices(words, k=rng.randint(1, 400))) + "\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()


def test_a_multi_frame_file_of_many_decompress_calls_reads_back_whole(tmp_path):
    parts = [_text(3 * ZSTD_INPUT * 4, seed) for seed in range(3)] + [b"", b"tail\n"]
    data = _frames(parts)
    assert len(data) > 4 * ZSTD_INPUT  # several compressed chunks, frames cut across them
    path = tmp_path / "big.jsonl.zst"
    path.write_bytes(data)
    with open_binary(str(path)) as f:
        assert f.read() == b"".join(parts)
    with open_binary(str(path)) as f:  # line by line, as the readers consume it
        assert list(f) == b"".join(parts).splitlines(keepends=True)
    with open_binary(str(path)) as f:  # small reads
        got = bytearray()
        while chunk := f.read(777):
            got += chunk
        assert bytes(got) == b"".join(parts)


@pytest.mark.parametrize("damage", ["cut", "junk"])
def test_a_large_file_cut_or_with_junk_after_its_last_frame_is_refused(tmp_path, damage):
    data = _frames([_text(6 * ZSTD_INPUT, 7), _text(6 * ZSTD_INPUT, 8)])
    data = data[:-5] if damage == "cut" else data + b"not a frame"
    path = tmp_path / "bad.jsonl.zst"
    path.write_bytes(data)
    with pytest.raises(DamagedInput), open_binary(str(path)) as f:
        while f.read(1 << 16):
            pass
