"""End-to-end builds: round trip, ratios at every prefix, caps, determinism."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
from conftest import OLMO_TOKENIZER, config, write_jsonl
from tokenizers import Tokenizer

import instmix
from instmix.errors import PlanError
from instmix.format.manifest import load_manifest
from instmix.format.reader import iter_build_documents
from instmix.format.verify import verify

REQUIRED_MANIFEST = {"format_version", "tokenizer", "dtype", "seed", "total_tokens", "sources",
                     "shards"}
REQUIRED_SOURCE = {"name", "kind", "target_ratio", "tokens", "documents", "available_tokens",
                   "repetitions", "achieved_ratio"}


@pytest.fixture()
def two_sources(tmp_path, real_docs, paragraphs):
    raw = write_jsonl(tmp_path / "raw.jsonl.zst", real_docs[:40], "zst")
    orca_rows = [{"question": p[: len(p) // 2], "response": p[len(p) // 2:]}
                 for p in paragraphs[:600]]
    orca = write_jsonl(tmp_path / "orca.jsonl", orca_rows)
    return raw, orca, orca_rows


def build(cfg, **kw):
    return instmix.build(instmix.load_config(cfg), **kw)


def test_round_trip_decodes_to_source_documents(tmp_path, two_sources, real_docs):
    raw, orca, orca_rows = two_sources
    cfg = config(tmp_path, [
        {"name": "raw", "paths": [raw], "ratio": 1},
        {"name": "orca", "paths": [orca], "kind": "openorca", "ratio": 1, "max_repetition": 4},
    ], shard_tokens=50_000)
    m = build(cfg)
    tok = Tokenizer.from_file(OLMO_TOKENIZER)
    by_id = {f"raw.jsonl.zst:{i + 1}": d["text"] for i, d in enumerate(real_docs[:40])}
    by_id.update({f"orca.jsonl:{i + 1}": f"{r['question']} {r['response']}"
                  for i, r in enumerate(orca_rows)})
    n = 0
    for doc in iter_build_documents(cfg["output"]):
        assert doc.tokens[-1] == 50279  # EOS closes every document
        assert 50279 not in doc.tokens[:-1].tolist()
        text = tok.decode(doc.tokens[:-1].tolist(), skip_special_tokens=False)
        assert text == by_id[doc.id], doc.id
        n += 1
    assert n == m["documents"] > 600
    assert len(m["shards"]) > 1
    assert REQUIRED_MANIFEST <= set(m)
    assert all(REQUIRED_SOURCE <= set(s) for s in m["sources"])
    assert set(m["tokenizer"]) >= {"path", "sha256", "vocab_size", "eos_token_id", "bos_token_id"}
    assert all(set(s) >= {"path", "tokens", "documents", "sha256"} for s in m["shards"])
    assert m["dtype"] == "uint16"
    # headerless: the file is exactly tokens x 2 bytes
    for s in m["shards"]:
        assert os.path.getsize(os.path.join(cfg["output"], s["path"])) == 2 * s["tokens"]
    verify(cfg["output"])


def running_deviation(docs, names, weights):
    """Largest |e_s - w_s * E| over all prefixes, and the largest document length."""
    lens = np.array([len(d.tokens) for d in docs])
    src = np.array([names.index(d.src) for d in docs])
    total = np.cumsum(lens)
    worst = 0.0
    for s, w in enumerate(weights):
        mine = np.cumsum(np.where(src == s, lens, 0))
        worst = max(worst, float(np.abs(mine - w * total).max()))
    return worst, int(lens.max())


@pytest.mark.parametrize("ratios", [(1, 1), (3, 7), (1, 2, 5), (0.25, 0.25, 0.5)])
def test_ratio_within_one_document_at_every_prefix(tmp_path, real_docs, paragraphs, ratios):
    names = [f"s{i}" for i in range(len(ratios))]
    pools = [real_docs[:30], [{"text": p} for p in paragraphs[:800]],
             [{"text": p} for p in paragraphs[800:1600]]]
    sources = []
    for i, r in enumerate(ratios):
        path = write_jsonl(tmp_path / f"{names[i]}.jsonl", pools[i])
        sources.append({"name": names[i], "paths": [path], "ratio": r, "max_repetition": 20})
    cfg = config(tmp_path, sources, total_tokens=150_000, shard_tokens=40_000)
    m = build(cfg)
    docs = list(iter_build_documents(cfg["output"]))
    weights = [float(Fraction(str(r)) / sum(Fraction(str(x)) for x in ratios)) for r in ratios]
    worst, longest = running_deviation(docs, names, weights)
    assert worst <= longest, (worst, longest)
    for s, w in zip(m["sources"], weights):
        assert abs(s["tokens"] - w * m["total_tokens"]) <= longest
        assert s["target_ratio"] == pytest.approx(w)
        assert s["achieved_ratio"] == pytest.approx(s["tokens"] / m["total_tokens"])
    # each source stops at the document boundary closest to its target
    assert abs(m["total_tokens"] - 150_000) <= longest * len(ratios) / 2


def test_passes_draw_without_replacement_and_respect_caps(tmp_path, paragraphs):
    small = write_jsonl(tmp_path / "small.jsonl", [{"text": p} for p in paragraphs[:50]])
    big = write_jsonl(tmp_path / "big.jsonl", [{"text": p} for p in paragraphs[50:2050]])
    cfg = config(tmp_path, [
        {"name": "small", "paths": [small], "ratio": 1, "max_repetition": 3},
        {"name": "big", "paths": [big], "ratio": 1},
    ])
    m = build(cfg)  # total defaults to the most the caps allow
    small_src = m["sources"][0]
    assert small_src["repetitions"] <= 3.0
    assert small_src["repetitions"] > 2.9  # the binding source uses (almost) its whole cap
    ids = [d.id for d in iter_build_documents(cfg["output"]) if d.src == "small"]
    # pass k is a permutation of all 50 documents
    for k in range(len(ids) // 50):
        assert sorted(ids[50 * k: 50 * (k + 1)]) == sorted(set(ids[:50]))
    assert len(set(ids[:50])) == 50


def test_cap_violation_explains_numbers(tmp_path, paragraphs):
    small = write_jsonl(tmp_path / "small.jsonl", [{"text": p} for p in paragraphs[:50]])
    big = write_jsonl(tmp_path / "big.jsonl", [{"text": p} for p in paragraphs[50:1050]])
    cfg = config(tmp_path, [
        {"name": "small", "paths": [small], "ratio": 1, "max_repetition": 2},
        {"name": "big", "paths": [big], "ratio": 1},
    ], total_tokens=100_000)
    with pytest.raises(PlanError) as e:
        build(cfg)
    msg = str(e.value)
    assert "source 'small' needs 50,000 tokens (50.00% of 100,000)" in msg
    assert "max_repetition 2" in msg and "raise its max_repetition" in msg
    assert "lower total_tokens to <=" in msg
    assert "\n" not in msg
    assert not os.path.exists(cfg["output"])


def test_same_seed_is_byte_identical_other_seed_reorders(tmp_path, two_sources):
    raw, orca, _ = two_sources
    srcs = [{"name": "raw", "paths": [raw]},
            {"name": "orca", "paths": [orca], "kind": "openorca", "max_repetition": 4}]
    outs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = config(tmp_path, srcs, seed=seed, output=str(tmp_path / name), shard_tokens=30_000)
        build(cfg)
        outs.append(cfg["output"])
    files = sorted(os.listdir(outs[0]))
    assert files == sorted(os.listdir(outs[1]))
    for f in files:
        with open(os.path.join(outs[0], f), "rb") as x, open(os.path.join(outs[1], f), "rb") as y:
            assert x.read() == y.read(), f
    order_a = [d.id for d in iter_build_documents(outs[0])]
    order_c = [d.id for d in iter_build_documents(outs[2])]
    assert order_a != order_c
    assert load_manifest(outs[2])["seed"] == 4


def test_uint32_for_large_vocab_and_bos_added(tmp_path, paragraphs, bos_tokenizer):
    from conftest import DOLMA2_TOKENIZER

    path = write_jsonl(tmp_path / "p.jsonl", [{"text": p} for p in paragraphs[:100]])
    cfg = config(tmp_path, [{"name": "p", "paths": [path]}], tokenizer=DOLMA2_TOKENIZER)
    m = build(cfg)
    assert m["dtype"] == "uint32" and m["tokenizer"]["vocab_size"] == 100278
    assert m["tokenizer"]["eos_token_id"] == 100257 and m["tokenizer"]["bos_token_id"] is None
    assert os.path.getsize(os.path.join(cfg["output"], m["shards"][0]["path"])) == \
        4 * m["shards"][0]["tokens"]
    verify(cfg["output"])

    cfg = config(tmp_path, [{"name": "p", "paths": [path]}], tokenizer=bos_tokenizer,
                 output=str(tmp_path / "bos"))
    m = build(cfg)
    tok = Tokenizer.from_file(bos_tokenizer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    assert m["tokenizer"]["bos_token_id"] == bos and m["tokenizer"]["eos_token_id"] == eos
    docs = list(iter_build_documents(cfg["output"]))
    assert all(d.tokens[0] == bos and d.tokens[-1] == eos for d in docs)
    assert all(bos not in d.tokens[1:].tolist() for d in docs)  # exactly one BOS
    verify(cfg["output"])


def test_special_token_strings_in_text_stay_text(tmp_path):
    rows = [{"text": "before <|endoftext|> after"}, {"text": "plain text"}]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    cfg = config(tmp_path, [{"name": "s", "paths": [path]}])
    build(cfg)
    tok = Tokenizer.from_file(OLMO_TOKENIZER)
    for d in iter_build_documents(cfg["output"]):
        assert d.tokens.tolist().count(50279) == 1  # only the appended EOS
        if d.id == "s.jsonl:1":
            assert tok.decode(d.tokens[:-1].tolist(), skip_special_tokens=False) == rows[0]["text"]


def test_total_tokens_and_ratio_zero_source(tmp_path, paragraphs):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": p} for p in paragraphs[:500]])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": p} for p in paragraphs[500:1000]])
    cfg = config(tmp_path, [{"name": "a", "paths": [a], "ratio": 1},
                            {"name": "b", "paths": [b], "ratio": 0}], total_tokens=10_000)
    m = build(cfg)
    assert m["sources"][1]["tokens"] == 0 and m["sources"][1]["documents"] == 0
    longest = max(len(d.tokens) for d in iter_build_documents(cfg["output"]))
    assert abs(m["total_tokens"] - 10_000) <= longest / 2
    assert {d.src for d in iter_build_documents(cfg["output"])} == {"a"}


def test_refuses_to_replace_a_folder_that_is_not_a_build(tmp_path, paragraphs):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": p} for p in paragraphs[:20]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(instmix.InstmixError, match="not an instmix build"):
        build(config(tmp_path, [{"name": "a", "paths": [a]}]))
    assert (out / "precious.txt").read_text() == "keep me"


def test_rebuild_replaces_previous_build(tmp_path, paragraphs):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": p} for p in paragraphs[:300]])
    cfg = config(tmp_path, [{"name": "a", "paths": [a]}], shard_tokens=5_000)
    first = build(cfg)
    cfg2 = dict(cfg, shard_tokens=100_000)
    second = build(cfg2)
    files = os.listdir(cfg["output"])
    assert len(second["shards"]) < len(first["shards"])
    assert sorted(f for f in files if f.endswith(".npy")) == \
        sorted(s["path"] for s in second["shards"])
    verify(cfg["output"])


def test_per_source_layout_keeps_each_source_in_draw_order(tmp_path, two_sources):
    raw, orca, _ = two_sources
    srcs = [{"name": "raw", "paths": [raw]},
            {"name": "orca", "paths": [orca], "kind": "openorca", "max_repetition": 3}]
    inter = build(config(tmp_path, srcs, output=str(tmp_path / "i")))
    per = build(config(tmp_path, srcs, output=str(tmp_path / "p"), layout="per_source",
                       shard_tokens=20_000))
    assert per["layout"] == "per_source"
    assert per["sources"] == inter["sources"]  # the same plan, another layout
    for s in per["shards"]:
        (name,) = s["sources"]
        assert s["path"].startswith(f"sources/{name}/part-")
    verify(str(tmp_path / "p"))
    # each source's documents, in the same (draw) order as within the interleaved build
    for name in ("raw", "orca"):
        a = [d.id for d in iter_build_documents(str(tmp_path / "i")) if d.src == name]
        b = [d.id for d in iter_build_documents(str(tmp_path / "p")) if d.src == name]
        assert a == b
