"""Sweeps (one tokenization, prefix property, cache invalidation) and loss masks."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import OLMO_TOKENIZER, ROOT, config, write_jsonl
from tokenizers import Tokenizer

import instmix
import instmix.format.manifest
from instmix.builder.sweep import expand, parse_set, sweep
from instmix.format.reader import iter_build_documents
from instmix.format.verify import verify

QUICKSTART = ROOT / "examples" / "quickstart"


@pytest.fixture()
def sources(tmp_path, real_docs, paragraphs):
    for i in range(2):
        write_jsonl(tmp_path / "a" / f"part-{i}.jsonl", real_docs[i * 10:(i + 1) * 10])
    b = write_jsonl(tmp_path / "b.jsonl", [{"question": p[:40], "response": p[40:]}
                                           for p in paragraphs[:500]])
    return config(tmp_path, [
        {"name": "a", "paths": [str(tmp_path / "a" / "*.jsonl")], "ratio": 1},
        {"name": "b", "paths": [b], "kind": "openorca", "ratio": 1, "max_repetition": 5}],
        total_tokens=60_000, workers=1)  # one process: the counts are seen here


def test_sweep_tokenizes_once_and_keeps_the_prefix_property(tmp_path, sources, count_encodes):
    cfg = instmix.load_config(sources)
    sets = expand(cfg, ["b=0.25,0.5,1,2"])
    assert sets == [{"b": 0.25}, {"b": 0.5}, {"b": 1}, {"b": 2}]
    summary = sweep(cfg, sets, out=str(tmp_path / "sweep"))
    tokenized = len(count_encodes)
    assert tokenized == 20 + 500  # every document once, whatever the number of mixtures
    assert [m["label"] for m in summary["mixtures"]] == ["b=0.25", "b=0.5", "b=1", "b=2"]
    with open(tmp_path / "sweep" / "sweep.json") as f:
        assert json.load(f) == summary
    drawn = {}
    for m in summary["mixtures"]:
        out = str(tmp_path / "sweep" / m["output"])
        verify(out)
        man = instmix.format.manifest.load_manifest(out)
        longest = max(len(d.tokens) for d in iter_build_documents(out))
        assert abs(man["total_tokens"] - 60_000) <= longest  # each source within half a doc
        drawn[m["label"]] = {s: [d.id for d in iter_build_documents(out) if d.src == s]
                             for s in ("a", "b")}
    order = ["b=0.25", "b=0.5", "b=1", "b=2"]
    for small, big in zip(order, order[1:]):
        # b grows: its documents for the smaller share are a prefix of the larger's ...
        assert drawn[big]["b"][:len(drawn[small]["b"])] == drawn[small]["b"]
        assert len(drawn[big]["b"]) > len(drawn[small]["b"])
        # ... and a shrinks: the reverse
        assert drawn[small]["a"][:len(drawn[big]["a"])] == drawn[big]["a"]
    # a second sweep of the same inputs tokenizes nothing
    sweep(cfg, [parse_set(cfg, "a=1,b=3")], out=str(tmp_path / "sweep2"))
    assert len(count_encodes) == tokenized


def test_changing_one_input_retokenizes_only_that_file(tmp_path, sources, count_encodes,
                                                       real_docs):
    instmix.build(instmix.load_config(sources))
    first = len(count_encodes)
    write_jsonl(tmp_path / "a" / "part-1.jsonl", real_docs[10:19])  # one document fewer
    instmix.build(instmix.load_config(sources))
    assert len(count_encodes) - first == 9
    assert count_encodes[first:] == [d["text"] for d in real_docs[10:19]]


def test_sweep_cli_and_bad_ratio_sets(tmp_path, sources):
    import subprocess
    import sys

    import yaml

    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(sources))
    r = subprocess.run([sys.executable, "-m", "instmix", "sweep", str(tmp_path / "mix.yaml"),
                        "--ratios", "a=1,2", "--set", "a=0,b=1", "--out", str(tmp_path / "s")],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert "3 mixture(s)" in r.stdout
    assert sorted(os.listdir(tmp_path / "s")) == ["a=0,b=1", "a=1", "a=2", "sweep.json"]
    cfg = instmix.load_config(sources)
    with pytest.raises(instmix.ConfigError, match="no source named 'c'"):
        parse_set(cfg, "c=1")
    with pytest.raises(instmix.ConfigError, match="not a number"):
        expand(cfg, ["a=1,x"])
    with pytest.raises(instmix.ConfigError, match="every ratio is 0"):
        sweep(cfg, [{"a": 0, "b": 0}], out=str(tmp_path / "zero"))


def _mask_build(tmp_path, loss, **kw):
    cfg = instmix.load_config(str(QUICKSTART / "mix.yaml"))
    sources = tuple(s if s.name == "raw" else
                    type(s)(**{**s.__dict__, "loss": loss}) for s in cfg.sources)
    cfg = cfg.with_overrides(sources=sources, output=str(tmp_path / f"out-{loss}"),
                             cache_dir=str(tmp_path / "cache"), **kw)
    return instmix.build(cfg), cfg.output


def test_response_masks_match_answer_spans_on_a_real_tokenizer(tmp_path):
    from instmix.synth.kind import iter_chains
    from instmix.synth.templates import render_chain

    manifest, out = _mask_build(tmp_path, "responses")
    verify(out)
    assert all(s.get("mask", "").endswith(".mask") for s in manifest["shards"])
    tok = Tokenizer.from_file(OLMO_TOKENIZER)
    chains = dict(iter_chains([str(p) for p in (QUICKSTART / "data" / "augmented").glob(
        "*.jsonl.zst")], skip_bad=False, stats={}))
    m = instmix.format.manifest.load_manifest(out)
    masks = {s["path"]: np.fromfile(m.path(s["mask"]), dtype=np.bool_) for s in m.shards}
    checked = 0
    for d in iter_build_documents(out):
        mask = masks[d.shard][d.start:d.end]
        if d.src == "raw":
            assert mask.all()
            continue
        assert mask[-1]  # the closing EOS trains
        trained = tok.decode(d.tokens[mask][:-1].tolist(), skip_special_tokens=False)
        if d.src == "augmented":
            r = render_chain(chains[d.id], 0, d.id)
            expect = ""
            for a, b in r.spans:
                while a > 0 and r.text[a - 1].isspace() and (a - 1, a) not in r.spans:
                    a -= 1
                expect += r.text[a:b]
            assert trained == expect
            # and the untrained tokens are everything else
            whole = tok.decode(d.tokens[:-1].tolist(), skip_special_tokens=False)
            assert whole == r.text
            checked += 1
        else:  # openorca: " {response}"
            whole = tok.decode(d.tokens[:-1].tolist(), skip_special_tokens=False)
            q = whole[: len(whole) - len(trained)]
            assert trained.startswith(" ") and whole == q + trained
    assert checked >= 10
    # ShardDataset turns the mask into -100 labels, and keeps every other label
    items = list(instmix.ShardDataset(out, 256))
    ignored = sum(int((it["labels"] == -100).sum()) for it in items)
    assert ignored > 0.2 * 256 * len(items)
    for it in items:
        keep = it["labels"] != -100
        assert (it["labels"][keep] == it["input_ids"][keep]).all()


def test_ratio_by_loss_tokens(tmp_path):
    manifest, out = _mask_build(tmp_path, "responses", ratio_by="loss_tokens")
    assert manifest["ratio_by"] == "loss_tokens"
    longest = max(len(d.tokens) for d in iter_build_documents(out))
    total_loss = sum(s["loss_tokens"] for s in manifest["sources"])
    for s in manifest["sources"]:
        # shares hold in loss tokens (within a document), not in tokens
        assert abs(s["loss_tokens"] - s["target_ratio"] * total_loss) <= longest
        assert s["achieved_loss_ratio"] == pytest.approx(s["loss_tokens"] / total_loss)
    by_tokens, _ = _mask_build(tmp_path, "responses")
    shares = [s["achieved_ratio"] for s in by_tokens["sources"]]
    assert max(abs(x - 1 / 3) for x in shares) < 0.02
    raw_share = [s for s in manifest["sources"] if s["name"] == "raw"][0]["achieved_ratio"]
    assert raw_share < 0.25  # counted by loss tokens, masked sources need more tokens


def test_loss_none_trains_nothing_but_counts_tokens(tmp_path):
    manifest, out = _mask_build(tmp_path, "none")
    orca = [s for s in manifest["sources"] if s["name"] == "orca"][0]
    assert orca["loss_tokens"] == 0 and orca["tokens"] > 0
    shutil.rmtree(out)


def test_zero_copy_sweep_writes_tokens_once(tmp_path, sources, count_encodes):
    import yaml

    from instmix.export.zero_copy import sweep_zero_copy

    cfg = instmix.load_config(sources)
    summary = sweep_zero_copy(cfg, expand(cfg, ["b=0.25,1,2"]), out=str(tmp_path / "z"),
                              seq_len=256)
    assert len(count_encodes) == 20 + 500
    pool = instmix.format.manifest.load_manifest(str(tmp_path / "z" / "pool"))
    assert pool["layout"] == "per_source"
    verify(str(tmp_path / "z" / "pool"))
    npy = [p for p in (tmp_path / "z").rglob("*.npy")]
    assert all("pool" in p.parts for p in npy)  # the mixtures hold configs, no tokens
    held = {s["name"]: s["tokens"] for s in pool.sources}
    for m in summary["mixtures"]:
        body = yaml.safe_load((tmp_path / "z" / m["output"] / "olmo_core_mixture.yaml").read_text())
        smc = body["source_mixture_config"]
        assert smc["requested_tokens"] == m["requested_tokens"] == sum(m["targets"].values())
        for s in smc["source_list"]["sources"]:
            need = int(m["requested_tokens"] * s["target_ratio"])
            assert need <= held[s["source_name"]] * s["max_repetition_ratio"]
            assert all(p.startswith(str(tmp_path / "z" / "pool" / "sources" /
                                        s["source_name"])) for p in s["paths"])
        # the pool holds every mixture's plan for each source
        for name, target in m["targets"].items():
            assert target <= held[name]


def _sweep_cli(tmp_path, sources, *args):
    import subprocess
    import sys

    import yaml

    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(sources))
    return subprocess.run([sys.executable, "-m", "instmix", "sweep", str(tmp_path / "mix.yaml"),
                           *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_sweep_labels_are_exact_and_never_collide(tmp_path, sources):
    cfg = instmix.load_config(sources)
    summary = sweep(cfg, expand(cfg, ["b=0.1234567,0.1234568"]), out=str(tmp_path / "s"))
    labels = [m["label"] for m in summary["mixtures"]]
    assert labels == ["b=0.1234567", "b=0.1234568"]  # {v:g} made both "b=0.123457"
    assert sorted(os.listdir(tmp_path / "s")) == [*labels, "sweep.json"]
    for m in summary["mixtures"]:
        instmix.format.manifest.load_manifest(str(tmp_path / "s" / m["output"]))  # each built
        assert m["ratios"]["b"] == float(m["label"].split("=")[1])


def test_sweep_refuses_a_ratio_set_given_twice(tmp_path, sources):
    r = _sweep_cli(tmp_path, sources, "--ratios", "b=0.5", "--set", "b=.5",
                   "--out", str(tmp_path / "s"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "instmix: error:" in r.stderr and "b=0.5 is given twice" in r.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was built


def test_zero_copy_sweep_refuses_seq_len_0(tmp_path, sources):
    r = _sweep_cli(tmp_path, sources, "--ratios", "b=1", "--zero-copy", "--seq-len", "0",
                   "--out", str(tmp_path / "z"))
    assert r.returncode == 2, r.stdout
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "--seq-len: expected a whole number >= 1" in r.stderr
    assert not (tmp_path / "z").exists()
