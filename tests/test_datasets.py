"""ShardDataset, StreamingMixture and instmix.DataLoader: coverage, order, resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import config, write_jsonl

import instmix
import instmix.format.manifest
import instmix.serve.loader
import instmix.serve.streams
from instmix.errors import InstmixError
from instmix.format.reader import iter_build_documents

SEQ = 128


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory, paragraphs, real_docs):
    tmp = tmp_path_factory.mktemp("ds")
    raw = write_jsonl(tmp / "raw.jsonl", real_docs[:12])
    orca = write_jsonl(tmp / "orca.jsonl", [{"question": p[:60], "response": p[60:]}
                                            for p in paragraphs[:400]])
    cfg = config(tmp, [{"name": "raw", "paths": [raw], "ratio": 1},
                       {"name": "orca", "paths": [orca], "kind": "openorca", "ratio": 1,
                        "loss": "responses", "max_repetition": 2}], shard_tokens=9_000)
    instmix.build(instmix.load_config(cfg))
    return cfg["output"]


def indices(batches) -> list[int]:
    return torch.cat([b["index"].reshape(-1) for b in batches]).tolist()


@pytest.mark.parametrize("world_size,num_workers", list(itertools.product([1, 2, 3], [0, 1, 2])))
def test_every_sequence_at_most_once_in_equal_steps(build_dir, world_size, num_workers):
    n = instmix.ShardDataset(build_dir, SEQ).num_sequences
    assert n > 100
    whole = n // (world_size * 5) * world_size * 5  # the tail that fills no step is dropped
    seen_loader, seen_plain = [], []
    for rank in range(world_size):
        ds = instmix.ShardDataset(build_dir, SEQ, seed=1, rank=rank, world_size=world_size)
        loader = instmix.DataLoader(ds, batch_size=5, num_workers=num_workers)
        batches = list(loader)
        assert len(batches) == len(loader) == whole // (world_size * 5)
        seen_loader.append(indices(batches))
        ds = instmix.ShardDataset(build_dir, SEQ, seed=1, rank=rank, world_size=world_size,
                                  batch_size=5)
        plain = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=num_workers)
        batches = list(plain)
        assert len(batches) == len(plain) == whole // (world_size * 5)
        assert all(len(b["index"]) == 5 for b in batches)
        seen_plain.append(indices(batches))
    for seen in (seen_loader, seen_plain):
        flat = [i for s in seen for i in s]
        assert len(set(flat)) == len(flat) == whole
    # the dropped tail: the last positions of the epoch's order
    ds = instmix.ShardDataset(build_dir, SEQ, seed=1)
    assert set(range(n)) - set(flat) == set(ds.windows(np.arange(whole, n)).tolist())


def test_wrap_fills_the_last_step_from_the_start(build_dir):
    n = instmix.ShardDataset(build_dir, SEQ).num_sequences
    world = 3
    per_rank = []
    for rank in range(world):
        ds = instmix.ShardDataset(build_dir, SEQ, seed=1, rank=rank, world_size=world,
                                  tail="wrap")
        loader = instmix.DataLoader(ds, batch_size=5)
        per_rank.append(list(loader))
        assert len(per_rank[-1]) == len(loader) == -(-n // (world * 5))
    flat = [i for r in per_rank for i in indices(r)]
    assert set(flat) == set(range(n))
    ds = instmix.ShardDataset(build_dir, SEQ, seed=1)
    extra = len(flat) - n
    assert 0 < extra < world * 5
    assert sorted(flat) == sorted(list(range(n)) + ds.windows(np.arange(extra)).tolist())


def test_batch_order_does_not_depend_on_workers_or_world_size(build_dir):
    def global_order(world_size, workers, batch):
        per_rank = []
        for rank in range(world_size):
            ds = instmix.ShardDataset(build_dir, SEQ, seed=4, rank=rank, world_size=world_size)
            per_rank.append([b["index"].tolist() for b in instmix.DataLoader(
                ds, batch_size=batch, num_workers=workers)])
        out = []  # step k: rank 0's batch, then rank 1's, ...
        for step in itertools.zip_longest(*per_rank, fillvalue=[]):
            for b in step:
                out += b
        return out

    ref = global_order(1, 0, 6)
    assert global_order(1, 2, 6) == ref
    assert global_order(2, 1, 3) == ref
    assert global_order(3, 2, 2) == ref
    assert global_order(1, 0, 6) != global_order(1, 0, 6)[::-1]


def test_items_match_the_shards(build_dir):
    ds = instmix.ShardDataset(build_dir, SEQ, seed=2)
    docs = list(iter_build_documents(build_dir))
    streams = {}
    for d in docs:
        streams.setdefault(d.shard, []).append(d)
    for item in itertools.islice(iter(ds), 200):
        ids, labels, lens = item["input_ids"], item["labels"], item["doc_lens"]
        assert ids.dtype == labels.dtype == torch.int64 and ids.shape == (SEQ,)
        assert int(lens.sum()) == SEQ
        assert lens.shape == (ds.max_docs,)
        w = int(item["index"])
        s = int(np.searchsorted(ds._window_starts, w, side="right") - 1)
        a = (w - int(ds._window_starts[s])) * SEQ
        shard = ds.shards[s]
        tokens, mask = shard.arrays()
        assert ids.tolist() == tokens[a:a + SEQ].astype(np.int64).tolist()
        # doc_lens are the document pieces inside the window
        ends = [e - a for e in shard.ends.tolist() if a < e < a + SEQ]
        cuts = np.cumsum(lens[lens > 0].numpy())[:-1].tolist()
        assert cuts == ends
        # the mask of the orca source: labels are -100 exactly where the mask says no loss
        expect = np.where(mask[a:a + SEQ], tokens[a:a + SEQ].astype(np.int64), -100)
        assert labels.tolist() == expect.tolist()


def test_label_mask_covers_questions_not_responses(build_dir):
    ds = instmix.ShardDataset(build_dir, SEQ)
    masked = sum(int((it["labels"] == -100).sum()) for it in ds)
    assert masked > 1000  # the orca questions
    m = instmix.format.manifest.load_manifest(build_dir)
    assert all(s.get("mask") and s["mask"].endswith(".mask") for s in m.shards)


def test_padded_tail_when_not_dropping_last(build_dir):
    keep = instmix.ShardDataset(build_dir, SEQ, drop_last=False)
    drop = instmix.ShardDataset(build_dir, SEQ)
    assert keep.num_sequences > drop.num_sequences
    padded = [it for it in keep if (it["labels"] == -100).all() or
              it["input_ids"][-1] == keep.eos_token_id and (it["labels"][-5:] == -100).all()]
    assert padded
    for it in keep:
        assert int(it["doc_lens"].sum()) == SEQ


def test_epochs_reshuffle_by_seed(build_dir):
    ds = instmix.ShardDataset(build_dir, SEQ, seed=9)
    e0 = [int(i["index"]) for i in ds]
    ds.set_epoch(1)
    e1 = [int(i["index"]) for i in ds]
    ds.set_epoch(0)
    assert [int(i["index"]) for i in ds] == e0
    assert e0 != e1 and sorted(e0) == sorted(e1)
    other = [int(i["index"]) for i in instmix.ShardDataset(build_dir, SEQ, seed=10)]
    assert other != e0


def run_batches(make_loader, k=None):
    loader = make_loader()
    out = []
    for _ in range(3):  # three epochs
        for b in loader:
            out.append(b)
            if k is not None and len(out) == k:
                return out, loader.state_dict()
    return out, loader.state_dict()


BATCH = 16


@pytest.mark.parametrize("k", [1, 7, 26, 27, 40])
def test_resume_equals_uninterrupted_with_other_workers_and_ranks(build_dir, k):
    def make(workers=0, rank=0, world=1, batch=BATCH):
        return instmix.DataLoader(instmix.ShardDataset(build_dir, SEQ, seed=3, rank=rank,
                                                       world_size=world), batch_size=batch,
                                  num_workers=workers)

    full, _ = run_batches(make)
    per_epoch = len(make())
    assert per_epoch == 27  # so k=26, 27 sit at the end of epoch 0 and k=40 inside epoch 1
    head, state = run_batches(lambda: make(workers=2), k)
    assert len(str(state)) < 300 and state["version"] == 1
    loader = make(workers=1)
    loader.load_state_dict(state)
    rest = []
    for _ in range(3):
        rest += list(loader)
    expect = indices(full)
    assert indices(head + rest)[:len(expect)] == expect
    # world size 2 after saving with 1: the two ranks together continue the global order
    r0, r1 = make(rank=0, world=2, batch=BATCH // 2), make(rank=1, world=2, batch=BATCH // 2)
    r0.load_state_dict(state)
    r1.load_state_dict(state)
    merged = []
    for _ in range(2):
        for b0, b1 in itertools.zip_longest(r0, r1):
            for b in (b0, b1):
                merged += b["index"].tolist() if b is not None else []
    done = len(indices(head))
    assert len(merged) > 0
    assert merged == expect[done:done + len(merged)]


def test_state_from_other_data_is_refused(build_dir, tmp_path, paragraphs):
    loader = instmix.DataLoader(instmix.ShardDataset(build_dir, SEQ, seed=3), batch_size=4)
    next(iter(loader))
    state = loader.state_dict()
    other = instmix.DataLoader(instmix.ShardDataset(build_dir, SEQ + 1, seed=3), batch_size=4)
    with pytest.raises(InstmixError, match="saved for other data"):
        other.load_state_dict(state)
    other = instmix.DataLoader(instmix.ShardDataset(build_dir, SEQ, seed=4), batch_size=4)
    with pytest.raises(InstmixError, match="saved with seed 3"):
        other.load_state_dict(state)
    with pytest.raises(InstmixError, match="version"):
        loader.load_state_dict({**state, "version": 99})


def test_torchdata_stateful_dataloader_resumes(build_dir):
    from torchdata.stateful_dataloader import StatefulDataLoader

    def make():
        return StatefulDataLoader(instmix.ShardDataset(build_dir, SEQ, seed=5), batch_size=4,
                                  num_workers=2)

    full = indices(make())
    loader = make()
    it = iter(loader)
    head = [next(it) for _ in range(9)]
    state = loader.state_dict()
    del it
    loader = make()
    loader.load_state_dict(state)
    assert indices(head) + indices(loader) == full


def test_bad_inputs_to_datasets(tmp_path, build_dir):
    with pytest.raises(InstmixError, match="not an instmix build"):
        instmix.ShardDataset(tmp_path, SEQ)
    with pytest.raises(InstmixError, match="seq_len"):
        instmix.ShardDataset(build_dir, 0)
    with pytest.raises(ValueError, match="rank 2"):
        instmix.ShardDataset(build_dir, SEQ, rank=2, world_size=2)
    with pytest.raises(instmix.ConfigError, match="matches no file"):
        instmix.StreamingMixture(config(tmp_path, [{"name": "x", "paths": ["/nope/*.jsonl"]}]),
                                 SEQ)


# -- StreamingMixture -------------------------------------------------------------------

@pytest.fixture(scope="module")
def stream_cfg(tmp_path_factory, paragraphs, real_docs):
    tmp = tmp_path_factory.mktemp("stream")
    long = [write_jsonl(tmp / f"long-{i}.jsonl.zst", real_docs[i * 6:(i + 1) * 6], "zst")
            for i in range(3)]
    short = write_jsonl(tmp / "short.jsonl", [{"question": p[:50], "response": p[50:]}
                                              for p in paragraphs[:600]])
    return config(tmp, [{"name": "long", "paths": long, "ratio": 3},
                        {"name": "short", "paths": [short], "kind": "openorca", "ratio": 7,
                         "max_repetition": 3}], seed=8)


def _docs(stream):
    src, lens = [], []
    while (d := stream.next_doc()) is not None:
        src.append(d[0])
        lens.append(len(d[1]))
    return np.array(src), np.array(lens)


def test_streaming_ratio_holds_at_every_prefix(stream_cfg):
    sm = instmix.StreamingMixture(stream_cfg, SEQ, block_size=32)
    stream = instmix.serve.streams.Stream(sm, 0, 0)
    src, lens = _docs(stream)
    total = np.cumsum(lens)
    longest = lens.max()
    for s, w in ((0, 0.3), (1, 0.7)):
        mine = np.cumsum(np.where(src == s, lens, 0))
        assert np.abs(mine - w * total).max() <= longest
    # without total_tokens the first source to reach its cap ends the stream
    short_tokens = lens[src == 1].sum()
    assert short_tokens > 0 and stream.parts[1].state["pass"] >= 2
    # the packed items carry exactly the documents' tokens, in order
    items = list(instmix.StreamingMixture(stream_cfg, SEQ, block_size=32))
    assert len(items) == int(total[-1]) // SEQ
    for it in items:
        assert int(it["doc_lens"].sum()) == SEQ


def _source_tokens_at_sequence_ends(stream, n_seq, k):
    """[n_seq + 1, k]: tokens of each source in the stream's first j sequences."""
    src, lens = _docs(stream)
    ends = np.cumsum(lens)
    out = np.zeros((n_seq + 1, k))
    for j in range(1, n_seq + 1):
        t = j * SEQ
        full = np.searchsorted(ends, t, side="right")  # documents wholly inside
        for s in range(k):
            out[j, s] = lens[:full][src[:full] == s].sum()
        if full < len(lens):  # the document cut by the sequence boundary
            out[j, src[full]] += t - (ends[full - 1] if full else 0)
    return out, lens.max()


def test_streams_ratio_bound(stream_cfg):
    """Proved bound for two sources: each stream's prefixes at sequence ends within 2D of the
    target share per source, every prefix of the global order within 2*S*D (D the longest
    document; instmix.mix.schedule bounds the schedule by D, the sequence cut adds D)."""
    S = 4
    cfg = dict(stream_cfg, total_tokens=S * SEQ * 40)
    sm = instmix.StreamingMixture(cfg, SEQ, streams=S, block_size=16)
    w = np.array([0.3, 0.7])
    per, longest = [], 0
    for s in range(S):
        x, d = _source_tokens_at_sequence_ends(instmix.serve.streams.Stream(sm, 0, s), 40, 2)
        per.append(x)
        longest = max(longest, d)
        err = np.abs(x - np.arange(41)[:, None] * SEQ * w)
        assert err.max() < 2 * d
    worst = 0
    for p in range(1, S * 40 + 1):  # global prefix of p positions: stream s has ceil((p-s)/S)
        x = sum(per[s][-(-(p - s) // S) if p > s else 0] for s in range(S))
        worst = max(worst, np.abs(x - p * SEQ * w).max())
    assert worst < 2 * S * longest
    assert worst > 0


def test_streaming_total_tokens_length(stream_cfg):
    cfg = dict(stream_cfg, total_tokens=20_000)
    sm = instmix.StreamingMixture(cfg, SEQ, batch_size=4)
    assert sm.length == 20_000 // SEQ
    items = list(sm)
    assert len(items) == len(sm) == sm.length // 4 * 4
    loader = instmix.DataLoader(instmix.StreamingMixture(cfg, SEQ), batch_size=4)
    assert len(loader) == len(list(loader)) == sm.length // 4


def _rows(batches):
    return {i: row for b in batches for i, row in zip(b["index"].tolist(), b["input_ids"])}


@pytest.mark.parametrize("k,streams", [(1, 1), (6, 1), (13, 1), (5, 4)])
def test_streaming_resume_equals_uninterrupted(stream_cfg, k, streams):
    cfg = stream_cfg if streams == 1 else dict(stream_cfg, total_tokens=streams * SEQ * 20)

    def make(workers, rank=0, world=1, batch=4):
        sm = instmix.StreamingMixture(cfg, SEQ, block_size=16, rank=rank, world_size=world,
                                      streams=streams)
        return instmix.DataLoader(sm, batch_size=batch, num_workers=workers)

    full = [b["input_ids"] for b in make(0)]
    assert len(full) > 14
    loader = make(2)
    it = iter(loader)
    head = [next(it)["input_ids"] for _ in range(k)]
    state = loader.state_dict()
    del it
    assert len(str(state)) < 2000 * streams
    resumed = make(1)
    resumed.load_state_dict(state)
    rest = [b["input_ids"] for b in resumed]
    assert torch.equal(torch.cat(head + rest), torch.cat(full))
    # two ranks resuming from a single-rank state continue the same global stream
    r0, r1 = make(0, 0, 2, 2), make(2, 1, 2, 2)
    r0.load_state_dict(state)
    r1.load_state_dict(state)
    b0, b1 = list(r0), list(r1)
    assert len(b0) == len(b1)
    rows = _rows(b0 + b1)
    expect = torch.cat(full)[k * 4:]
    assert torch.equal(torch.stack([rows[i] for i in sorted(rows)]), expect[:len(rows)])
    assert len(rows) >= len(expect) - 3
    if streams > 1:  # and back: the two ranks' states joined resume on one rank
        r0, r1 = make(0, 0, 2, 2), make(0, 1, 2, 2)
        r0.load_state_dict(state)
        r1.load_state_dict(state)
        i0, i1 = iter(r0), iter(r1)
        taken = [next(i0) for _ in range(3)] + [next(i1) for _ in range(3)]
        joined = instmix.serve.loader.merge_states([r0.state_dict(), r1.state_dict()])
        one = make(0)
        one.load_state_dict(joined)
        rows = _rows(taken)
        got = torch.cat([torch.stack([rows[i] for i in sorted(rows)])]
                        + [b["input_ids"] for b in one])
        assert torch.equal(got, expect[:len(got)])
        alone = make(0)
        alone.load_state_dict(r0.state_dict())
        with pytest.raises(InstmixError, match="stream 1 is missing"):
            next(iter(alone))


def test_streaming_exactly_once_over_ranks_and_workers(stream_cfg):
    ref = [b["index"].tolist() for b in instmix.DataLoader(
        instmix.StreamingMixture(stream_cfg, SEQ, block_size=16), batch_size=3)]
    n = sum(map(len, ref))
    for world, workers in ((2, 2), (3, 1)):
        seen, counts = [], []
        for rank in range(world):
            sm = instmix.StreamingMixture(stream_cfg, SEQ, block_size=16, rank=rank,
                                          world_size=world, batch_size=3)
            got = list(torch.utils.data.DataLoader(sm, batch_size=3, num_workers=workers))
            counts.append(len(got))
            seen += indices(got)
        assert len(set(counts)) == 1
        whole = n // (world * 3) * world * 3
        assert sorted(seen) == list(range(whole))


def test_streaming_under_torchdata_stateful_dataloader(stream_cfg):
    from torchdata.stateful_dataloader import StatefulDataLoader

    def make():
        return StatefulDataLoader(instmix.StreamingMixture(stream_cfg, SEQ, block_size=16,
                                                           batch_size=3),
                                  batch_size=3, num_workers=2)

    full = indices(make())
    loader = make()
    it = iter(loader)
    head = [next(it) for _ in range(5)]
    state = loader.state_dict()
    del it
    loader = make()
    loader.load_state_dict(state)
    assert indices(head) + indices(loader) == full
    assert sorted(full) == list(range(len(full)))
