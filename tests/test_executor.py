"""The build's unit executor: order, progress, errors, and builds independent of workers."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import config, read_tree, write_jsonl

import instmix
from instmix.builder import loss, pipeline
from instmix.builder.executor import LocalExecutor
from instmix.errors import InputError


class _Task:
    def __init__(self, delay: float = 0.0):
        self.prepared = 0
        self.delay = delay  # long enough that every worker gets items, even on a busy machine

    def prepare(self):
        self.prepared += 1

    def __call__(self, item):
        if item == "bad":
            raise InputError("f.jsonl", 3, "text", "missing")
        time.sleep(self.delay)
        return item * 2, os.getpid(), self.prepared


def test_results_come_in_input_order_from_several_processes():
    seen = []
    task = _Task(delay=0.5)
    out = LocalExecutor(2).map(task, list(range(8)), progress=lambda i, r: seen.append(i))
    assert [r[0] for r in out] == [2 * i for i in range(8)]
    assert len({r[1] for r in out}) == 2 and os.getpid() not in {r[1] for r in out}
    assert {r[2] for r in out} == {1}  # prepared once, before forking, inherited
    assert sorted(seen) == list(range(8))


def test_one_process_runs_inline():
    out = LocalExecutor(1).map(_Task(), [1, 2])
    assert [r[1] for r in out] == [os.getpid()] * 2


def test_a_worker_error_keeps_its_class_and_message():
    with pytest.raises(InputError, match=r"^f.jsonl:3: field 'text': missing$"):
        LocalExecutor(2).map(_Task(), [1, "bad", 3, 4])


def test_processes_must_be_positive():
    with pytest.raises(ValueError):
        LocalExecutor(0)


@pytest.mark.parametrize("loss_kind", ["all", "responses"])
def test_builds_are_byte_identical_for_one_and_two_processes(tmp_path, real_docs, paragraphs,
                                                             loss_kind):
    files = [write_jsonl(tmp_path / "in" / f"p{i}.jsonl.zst", real_docs[i::4], "zst")
             for i in range(4)]
    rows = [{"question": p[:len(p) // 2], "response": p[len(p) // 2:]} for p in paragraphs[:800]]
    orca = [write_jsonl(tmp_path / "in" / f"o{i}.jsonl", rows[i::2]) for i in range(2)]
    outs, caches = [], []
    for workers in (1, 2):
        cfg = config(tmp_path, [{"name": "a", "paths": files},
                                {"name": "b", "paths": orca, "kind": "openorca",
                                 "loss": loss_kind}],
                     output=str(tmp_path / f"out{workers}"),
                     cache_dir=str(tmp_path / f"cache{workers}"), workers=workers,
                     shard_tokens=100_000, tokenizer={"path": config(tmp_path, [])["tokenizer"],
                                                      "backend": "gigatoken"})
        m = instmix.build(instmix.load_config(cfg))
        outs.append(read_tree(cfg["output"]))
        caches.append({k: v for k, v in read_tree(cfg["cache_dir"]).items()
                       if not k.endswith("input-hashes.json")})
        assert m["documents"] > 800
    assert outs[0] == outs[1]
    assert caches[0] == caches[1] and len(caches[0]) >= 6 * 5


def test_loss_lengths_are_counted_in_bounded_chunks(tmp_path, paragraphs, monkeypatch):
    rows = [{"question": p[:len(p) // 2], "response": p[len(p) // 2:]} for p in paragraphs[:300]]
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    cfg = instmix.load_config(config(tmp_path, [{"name": "b", "paths": [path],
                                                 "kind": "openorca", "loss": "responses"}]))
    tok = pipeline.tokenize(cfg)
    unit = tok.pools[0].units[0]
    csum = np.concatenate([[0], np.cumsum(unit.mask, dtype=np.int64)])
    expected = np.diff(csum[np.asarray(unit.offsets)])
    monkeypatch.setattr(loss, "LOSS_CHUNK", 97)  # many chunks, documents straddling them
    assert np.array_equal(loss.loss_lengths(unit), expected)
    assert expected.sum() < unit.meta.tokens and (expected > 0).all()
