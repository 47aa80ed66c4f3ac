"""ShardWriter.add_run writes the same bytes and shard cuts as one add per document."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pytest

from instmix.format.writer import ShardWriter, csv_rows


@pytest.mark.parametrize("with_mask", [False, True])
def test_add_run_matches_add_per_document(tmp_path, with_mask):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 120, size=400)
    lengths[[5, 6, 100]] = 700  # longer than a shard: a shard of their own
    tokens = rng.integers(0, 50_000, size=int(lengths.sum())).astype(np.uint32)
    mask = rng.random(tokens.size) < 0.5 if with_mask else None
    ids = [f"doc-{i}" for i in range(len(lengths))]
    srcs = ["a" if i % 3 else "b" for i in range(len(lengths))]
    ends = np.concatenate([[0], np.cumsum(lengths)])
    one = tmp_path / "one"
    many = tmp_path / "many"
    one.mkdir()
    many.mkdir()
    w1 = ShardWriter(str(one), "uint16", 500, with_mask)
    for i in range(len(lengths)):
        a, b = ends[i], ends[i + 1]
        w1.add(tokens[a:b], None if mask is None else mask[a:b], ids[i], srcs[i])
    w2 = ShardWriter(str(many), "uint16", 500, with_mask)
    for lo, hi in ((0, 7), (7, 250), (250, 251), (251, 400)):
        a, b = ends[lo], ends[hi]
        w2.add_run(tokens[a:b], lengths[lo:hi], None if mask is None else mask[a:b],
                   ids[lo:hi], srcs[lo:hi])
    s1, s2 = w1.close(), w2.close()
    assert [s.manifest_dict() for s in s1] == [s.manifest_dict() for s in s2]
    assert len(s1) > 20
    names = sorted(os.listdir(one))
    assert names == sorted(os.listdir(many))
    for n in names:
        assert (one / n).read_bytes() == (many / n).read_bytes(), n


@pytest.mark.parametrize("ids", [
    ["a", "b:1", "", " sp ", "ünï", "x\ty"],
    ["q,1", "plain"], ['say "hi"', "x"], ["line\nbreak"], ["cr\rx", "y"]])
def test_index_rows_are_what_csv_writes(ids):
    starts = list(range(0, 10 * len(ids), 10))
    ends = [s + 7 for s in starts]
    even = "a,b" if any("," in x for x in ids) else "orca"  # a source name quoted or not
    srcs = ["web" if i % 2 else even for i in range(len(ids))]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(zip(starts, ends, ids, srcs))
    assert csv_rows(starts, ends, ids, srcs) == out.getvalue()
    assert csv_rows([], [], [], []) == ""


def test_add_run_hashes_the_run_before_returning_so_its_buffer_can_be_reused(tmp_path,
                                                                           monkeypatch):
    import hashlib
    import threading

    from instmix.format import writer
    from instmix.format.writer import open_shard

    class LateThread(threading.Thread):  # the hash starts late: only the join makes it right
        def run(self):
            threading.Event().wait(0.05)
            super().run()

    monkeypatch.setattr(writer.threading, "Thread", LateThread)
    rng = np.random.default_rng(2)
    runs = [rng.integers(0, 60_000, size=1 << 20).astype(np.uint32) for _ in range(2)]
    buf = np.empty(1 << 20, np.uint32)  # one buffer, overwritten right after each call
    shard = open_shard(str(tmp_path), 0, "uint32", with_mask=False)
    for k, run in enumerate(runs):
        buf[:] = run
        shard.add_run(buf, np.array([len(run)]), None, [f"d{k}"], ["s"])
        buf[:] = 0
    stats = shard.close()
    data = b"".join(r.tobytes() for r in runs)
    assert (tmp_path / "part-00000.npy").read_bytes() == data
    assert stats.sha256 == hashlib.sha256(data).hexdigest()
