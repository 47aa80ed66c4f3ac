"""Shard writing from the token caches: the run gatherer, direct writes, shard tasks on
local worker processes. Every path must give the bytes of one write per document."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import config, read_tree, write_jsonl

import instmix
from instmix.builder import pipeline, shard_rows
from instmix.builder.executor import LocalExecutor
from instmix.builder.shard_rows import write_rows
from instmix.builder.tasks import LocalShardWriter, shard_tasks, write_shards
from instmix.format.writer import ShardWriter, open_shard
from instmix.io.direct import DirectWriter
from instmix.io.progress import Progress


@pytest.mark.parametrize("mode", ["direct", "buffered"])
@pytest.mark.parametrize("stage", [4096, 1 << 16])
def test_direct_writer_writes_the_bytes_given(tmp_path, stage, mode):
    rng = np.random.default_rng(1)
    chunks = [rng.integers(0, 255, size=int(n), dtype=np.uint8).tobytes()
              for n in rng.integers(0, 30_000, size=40)] + [b"", b"x"]
    path = tmp_path / "direct.bin"
    w = DirectWriter(str(path), stage)
    if mode == "buffered":
        w._drop_direct()  # as after O_DIRECT refused an unaligned write
    elif not w.direct:
        w.close()
        pytest.skip("this file system refuses O_DIRECT")
    assert w.direct == (mode == "direct")
    for c in chunks:
        assert w.write(memoryview(c)) == len(c)
    assert w.direct == (mode == "direct")  # still: no silent switch while writing
    w.close()
    assert w.closed
    assert path.read_bytes() == b"".join(chunks)


def _inputs(tmp_path, real_docs, paragraphs):
    """Two plain files and one OpenOrca file under ``tmp_path/in``."""
    files = [write_jsonl(tmp_path / "in" / f"p{i}.jsonl", real_docs[i::2]) for i in range(2)]
    rows = [{"question": p[:len(p) // 2], "response": p[len(p) // 2:]} for p in paragraphs[:600]]
    return files, write_jsonl(tmp_path / "in" / "o.jsonl", rows)


def _pools(tmp_path, real_docs, paragraphs, loss="responses"):
    files, orca = _inputs(tmp_path, real_docs, paragraphs)
    cfg = instmix.load_config(config(tmp_path, [
        {"name": "a", "paths": files}, {"name": "b", "paths": [orca], "kind": "openorca",
                                        "loss": loss}]))
    tok = pipeline.tokenize(cfg)
    return cfg, tok.info, tok.pools


@pytest.mark.parametrize("run_tokens", [300, 1 << 21])
@pytest.mark.parametrize("vector_below", [0, 1 << 30])  # every run by slices / index arrays
def test_write_rows_matches_one_write_per_document(tmp_path, real_docs, paragraphs,
                                                   run_tokens, vector_below, monkeypatch):
    monkeypatch.setattr(shard_rows, "VECTOR_BELOW", vector_below)
    monkeypatch.setattr(shard_rows, "INDEX_TOKENS", 37)  # blocks shorter than documents
    _, _, pools = _pools(tmp_path, real_docs, paragraphs)
    units = [u for p in pools for u in p.units]
    names = [p.config.name for p in pools for _ in p.units]
    rng = np.random.default_rng(3)
    unit_ix = rng.integers(0, len(units), size=3000)  # repeats, every unit, random order
    local = np.array([rng.integers(0, units[u].meta.documents) for u in unit_ix])
    # one row keeps two ranges of its document (what the clean stage leaves of it)
    u0, i0 = int(unit_ix[7]), int(local[7])
    a, b = int(units[u0].offsets[i0]), int(units[u0].offsets[i0 + 1])
    splices = {7: ((a, a + 2), (a + 3, b))}
    assert b - a > 3 and max(int(u.lengths.max()) for u in units) > 300  # a run of its own
    one, runs = tmp_path / "one", tmp_path / "runs"
    one.mkdir()
    runs.mkdir()
    w = ShardWriter(str(one), "uint16", 1 << 40, with_mask=True)
    for row, (u, i) in enumerate(zip(unit_ix.tolist(), local.tolist())):
        unit = units[u]
        ranges = splices.get(row, ((int(unit.offsets[i]), int(unit.offsets[i + 1])),))
        tok = np.concatenate([np.asarray(unit.tokens[x:y]) for x, y in ranges])
        mask = None if unit.mask is None else np.concatenate(
            [np.asarray(unit.mask[x:y]) for x, y in ranges])
        w.add(tok, mask, unit.doc_id(i), names[u])
    expected = w.close()[0]
    shard = open_shard(str(runs), 0, "uint16", True)
    seen = []
    write_rows(shard, units, names, unit_ix, local, splices, seen.append, run_tokens)
    stats = shard.close()
    assert stats.manifest_dict() == expected.manifest_dict()
    assert sum(seen) == stats.tokens and (len(seen) > 5) == (run_tokens < 1000)
    assert read_tree(one) == read_tree(runs)
    assert 0 < stats.loss_tokens < stats.tokens


def test_shard_tasks_on_worker_processes_write_the_same_bytes(tmp_path, real_docs,
                                                              paragraphs):
    cfg, info, pools = _pools(tmp_path, real_docs, paragraphs)
    cfg = cfg.with_overrides(shard_tokens=3_000)
    _, draws, src, pos = pipeline.plan_mixture(cfg, pools)
    trees = []
    for processes in (1, 2, 3):
        dest = tmp_path / f"w{processes}"
        dest.mkdir()
        tasks = shard_tasks(cfg, info, pools, draws, src, pos, str(dest))
        assert len(tasks) > 5
        stats = write_shards(tasks, pools, Progress(enabled=False), LocalExecutor(processes))
        assert [s.path for s in stats] == [f"part-{k:05d}.npy" for k in range(len(tasks))]
        trees.append((read_tree(dest), [s.manifest_dict() for s in stats]))
    assert trees[0] == trees[1] == trees[2]
    # the task function itself, as the forked workers run it
    opened = {os.path.basename(u.folder): u for p in pools for u in p.units}
    again = tmp_path / "again"
    again.mkdir()
    tasks = shard_tasks(cfg, info, pools, draws, src, pos, str(again))
    stats = [LocalShardWriter(opened)(t) for t in tasks[:2]]
    assert [s.manifest_dict() for s in stats] == trees[0][1][:2]
    first = {k: v for k, v in trees[0][0].items() if k.startswith(("part-00000", "part-00001"))}
    assert first and read_tree(again) == first


@pytest.mark.parametrize("layout", ["interleaved", "per_source"])
def test_builds_with_many_shards_do_not_depend_on_workers(tmp_path, real_docs, paragraphs,
                                                          layout):
    files, orca = _inputs(tmp_path, real_docs, paragraphs)
    outs = []
    for workers in (1, 2):
        cfg = config(tmp_path, [{"name": "a", "paths": files},
                                {"name": "b", "paths": [orca], "kind": "openorca",
                                 "loss": "responses"}],
                     output=str(tmp_path / f"out{workers}"), workers=workers,
                     shard_tokens=3_000, layout=layout)
        m = instmix.build(instmix.load_config(cfg))
        assert len(m["shards"]) > 4
        outs.append(read_tree(cfg["output"]))
    assert outs[0] == outs[1]


def test_unit_ids_decoded_at_once_match_doc_id(tmp_path, paragraphs):
    for name, ids in (("ascii", [f"d{i}" for i in range(50)]),
                      ("utf8", [f"dök-{i}-ü" if i % 3 else f"d{i}" for i in range(50)])):
        path = write_jsonl(tmp_path / f"{name}.jsonl",
                           [{"id": k, "text": t} for k, t in zip(ids, paragraphs)])
        cfg = instmix.load_config(config(tmp_path, [{"name": "a", "paths": [path],
                                                     "id_field": "id"}],
                                         cache_dir=str(tmp_path / f"cache-{name}")))
        unit = pipeline.tokenize(cfg).pools[0].units[0]
        assert shard_rows._all_ids(unit) == [unit.doc_id(i) for i in range(50)] == ids
