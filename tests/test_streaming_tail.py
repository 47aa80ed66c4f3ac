"""StreamingMixture's epoch tail with tail="wrap", and the loader's hand-over of batches
from worker processes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from conftest import config, write_jsonl

import instmix
from instmix.serve.handover import Handover, as_tensors, cursor_of, steps_per_item
from instmix.tokenize.encoder import Encoder

SEQ = 64
S = 4  # virtual streams
PER_STREAM = 9  # sequences per stream: an epoch of 36, which no step below divides


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, paragraphs, real_docs):
    tmp = tmp_path_factory.mktemp("tail")
    long = write_jsonl(tmp / "long.jsonl", real_docs[:8])
    short = write_jsonl(tmp / "short.jsonl", [{"question": p[:50], "response": p[50:]}
                                              for p in paragraphs[:300]])
    return config(tmp, [{"name": "long", "paths": [long], "ratio": 3},
                        {"name": "short", "paths": [short], "kind": "openorca", "ratio": 7,
                         "loss": "responses", "max_repetition": 3}],
                  seed=5, total_tokens=S * SEQ * PER_STREAM + 7)


def _mix(cfg, **kw):
    return instmix.StreamingMixture(cfg, SEQ, streams=S, block_size=16, **kw)


@pytest.fixture(scope="module")
def epoch(cfg):
    """The whole epoch's rows by global position, read by one reader."""
    batches = list(instmix.DataLoader(_mix(cfg), batch_size=1))
    assert [int(b["index"]) for b in batches] == list(range(S * PER_STREAM))
    return torch.cat([b["input_ids"] for b in batches])


def _rows(batches):
    return [(int(i), row) for b in batches for i, row in zip(b["index"], b["input_ids"])]


@pytest.mark.parametrize("world,batch,workers,loader", [
    (1, 5, 0, "instmix"), (2, 4, 2, "instmix"), (3, 5, 2, "instmix"), (3, 5, 0, "torch"),
    (2, 4, 2, "torch")])
def test_wrap_completes_the_last_step_with_the_epochs_first_sequences(
        cfg, epoch, world, batch, workers, loader):
    n = S * PER_STREAM
    per_step = world * batch
    assert n % per_step, "the epoch must not divide into steps for this test"
    steps = -(-n // per_step)
    extra = steps * per_step - n
    got = {}  # global position -> row
    for rank in range(world):
        if loader == "instmix":
            ds = _mix(cfg, rank=rank, world_size=world, tail="wrap")
            dl = instmix.DataLoader(ds, batch_size=batch, num_workers=workers)
        else:
            ds = _mix(cfg, rank=rank, world_size=world, tail="wrap", batch_size=batch)
            dl = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers)
        batches = list(dl)
        assert len(batches) == len(dl) == steps  # equal steps on every rank, len() true
        if loader == "torch":  # the dataset's len(): sequences this rank reads
            assert len(ds) == steps * batch
        assert all(len(b["index"]) == batch for b in batches)
        for k, b in enumerate(batches):  # rank r's rows of step k: positions k*R*B + r + j*R
            pos = [k * per_step + rank + j * world for j in range(batch)]
            for p, i, row in zip(pos, b["index"].tolist(), b["input_ids"]):
                assert i == p % n
                got[p] = row
    assert sorted(got) == list(range(steps * per_step))
    for p in range(n):  # no sequence skipped: every position of the epoch, its own row
        assert torch.equal(got[p], epoch[p])
    for q in range(extra):  # the wrapped ones: the epoch's first sequences, in order
        assert torch.equal(got[n + q], epoch[q])


def test_wrap_and_drop_agree_before_the_tail(cfg):
    n, batch = S * PER_STREAM, 5
    drop = _rows(instmix.DataLoader(_mix(cfg), batch_size=batch))
    wrap = _rows(instmix.DataLoader(_mix(cfg, tail="wrap"), batch_size=batch))
    assert len(drop) == n // batch * batch and len(wrap) == -(-n // batch) * batch
    assert all(i == j and torch.equal(a, b) for (i, a), (j, b) in zip(drop, wrap))
    assert [i for i, _ in wrap[n:]] == list(range(len(wrap) - n))


def test_wrap_resumes_inside_the_wrapped_step(cfg, epoch):
    """A state saved before the tail resumes to the same wrapped rows, on another layout."""
    loader = instmix.DataLoader(_mix(cfg, tail="wrap"), batch_size=5, num_workers=2)
    it = iter(loader)
    head = _rows([next(it) for _ in range(6)])
    state = loader.state_dict()
    del it
    per_rank = []
    for rank in range(2):  # two ranks: steps of 2 x 5 sequences from position 30
        dl = instmix.DataLoader(_mix(cfg, rank=rank, world_size=2, tail="wrap"),
                                batch_size=5)
        dl.load_state_dict(state)
        per_rank.append(_rows(list(dl)))
    assert len(per_rank[0]) == len(per_rank[1]) == 5  # one step: 30..35, then 0..3
    rest = sorted(per_rank[0] + per_rank[1], key=lambda r: r[0])
    assert [i for i, _ in rest] == list(range(4)) + list(range(30, 36))
    assert all(torch.equal(row, epoch[i]) for i, row in head + rest)


def test_hand_over_round_trip():
    """Steps pickled across processes come back equal: dtypes, shapes, empty tensors,
    non-contiguous views, cursors; unpickled tensors are writable and not shared."""
    base = torch.arange(24, dtype=torch.int64).reshape(4, 6)
    one = {"input_ids": base, "labels": base.t(), "mask": base > 3,
           "small": torch.tensor([1, 2, 3], dtype=torch.int16),
           "half": torch.linspace(0, 1, 5, dtype=torch.float16),
           "brain": torch.linspace(0, 1, 3, dtype=torch.bfloat16),
           "empty": torch.zeros((0, 7), dtype=torch.int64), "note": "x"}
    two = {"input_ids": (base * 10)[1:, ::2], "index": torch.tensor([5])}
    cursors = [{"epoch": 1, "consumed": 8, "streams": {"0": {"pos": 2}}},
               {"epoch": 1, "consumed": 16, "streams": None}]
    back = pickle.loads(pickle.dumps(Handover(list(zip(cursors, [one, two])))))
    assert [cursor_of(c) for c, _ in back.steps] == cursors
    for (_, got), sent in zip(back.steps, (one, two)):
        got = as_tensors(got)
        assert got.keys() == sent.keys()
        for k, v in sent.items():
            if isinstance(v, torch.Tensor):
                assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
            else:
                assert got[k] == v
    for _, got in back.steps:  # numpy arrays over the received buffer, writable
        arrays = [v for v in got.values() if isinstance(v, np.ndarray)]
        assert arrays and all(v.flags.writeable for v in arrays)
    ids = as_tensors(back.steps[0][1])["input_ids"]
    ids[0, 0] = 99  # each tensor has its own bytes of the buffer
    assert int(back.steps[0][1]["input_ids"][0, 0]) == 99
    assert int(as_tensors(back.steps[1][1])["input_ids"][0, 0]) == 60


def test_steps_per_item_is_the_same_in_every_worker_and_bounded():
    assert steps_per_item(8, 512) == 16 and steps_per_item(64, 4096) == 1
    assert steps_per_item(3, 1000) == 16 and steps_per_item(32, 1024) == 2


def test_loader_batches_equal_with_and_without_workers(cfg):
    ref = list(instmix.DataLoader(_mix(cfg), batch_size=3))
    got = list(instmix.DataLoader(_mix(cfg), batch_size=3, num_workers=2))
    assert len(ref) == len(got) == S * PER_STREAM // 3
    for a, b in zip(ref, got):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_sequences_do_not_depend_on_thread_counts(cfg, epoch, paragraphs):
    """torch's intra-op threads in the main process (the join) and the fast backend's own
    threads (1 in readers, a pool elsewhere) change no token."""
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        got = [b["input_ids"] for b in instmix.DataLoader(_mix(cfg), batch_size=4,
                                                          num_workers=2)]
    finally:
        torch.set_num_threads(prev)
    assert torch.equal(torch.cat(got), epoch[:len(got) * 4])
    info = _mix(cfg).info
    one, two = Encoder(info, "auto", threads=1), Encoder(info, "auto", threads=2)
    assert one.backend == two.backend != "hf"
    for a, b in zip(one.encode(paragraphs[:500]), two.encode(paragraphs[:500])):
        assert np.array_equal(a, b)
