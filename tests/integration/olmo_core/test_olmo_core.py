"""ai2-olmo-core 3.0.0 serves exactly the build's tokens through the exported configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from instmix.format.manifest import load_manifest
from instmix.format.reader import read_index

from ..conftest import SEQ, export, run_check

CHECK = Path(__file__).with_name("check_olmo_core.py")


def served_per_source(build: Path, seq: int) -> dict:
    """What concatenate-and-chunk serves per source: each file up to its last whole
    instance, attributed by the .csv.gz document index."""
    m = load_manifest(str(build))
    out: dict = {}
    for shard in m.shards:
        idx = read_index(m.path(shard["path"]))
        cut = shard["tokens"] // seq * seq
        for a, b, src in zip(idx.start.tolist(), idx.end.tolist(), idx.src):
            if min(b, cut) > a:
                out[src] = out.get(src, 0) + min(b, cut) - a
    return out


@pytest.fixture(scope="module", params=["inter", "per", "wide", "bos"])
def checked(request, builds, tmp_path_factory):
    build = builds[request.param]
    out = tmp_path_factory.mktemp(f"olmo-core-{request.param}")
    printed = export("olmo-core", build, out / "export", "--seq-len", SEQ)
    result = run_check("olmo-core", CHECK, out / "export", build, out / "work")
    return request.param, build, load_manifest(str(build)), result, printed


def test_fsl_serves_every_whole_instance_of_every_file(checked):
    name, build, m, result, _ = checked
    fsl = result["fsl"]
    assert fsl["instances"] == sum(s["tokens"] // SEQ for s in m.shards)
    assert fsl["per_source"] == served_per_source(build, SEQ)
    # per-source counts from the .csv.gz indexes add up to the manifest's plan
    for src in m.sources:
        assert sum(s["sources"].get(src["name"], 0) for s in m.shards) == src["tokens"]

def test_recipe_loader_reads_whole_batches(checked):
    """integrations/olmo-core/instmix_data.py: the loader (whose collator rejects ids >=
    vocab_size) reads every whole global batch (8 instances) of an epoch."""
    name, _, _, result, _ = checked
    assert set(result["loader"]) == ({"fsl", "packed", "mixture"} if name == "per"
                                     else {"fsl", "packed"})
    for kind, run in result["loader"].items():
        assert run["instances_read"] == run["instances"] // 8 * 8 == run["batches"] * 8
        assert run["instances"] == result[kind]["instances"]
        assert "input_ids" in run["keys"]
        assert ("label_mask" in run["keys"]) == (name != "wide" and kind != "mixture" or
                                                 kind == "packed")


def test_label_masks_are_applied(checked):
    name, build, m, result, _ = checked
    fsl = result["fsl"]
    if name == "wide":
        assert not fsl["has_label_mask"]
        return
    assert fsl["has_label_mask"]
    total_loss = sum(s["loss_tokens"] for s in m.shards)
    assert 0 < fsl["loss_tokens"] <= total_loss < m["total_tokens"]


def test_packed_serves_every_token_once(checked):
    """The default long_doc_strategy fragment keeps every token: each document is served
    once, split into pieces of at most SEQ tokens. Documents are found by EOS (and EOS
    followed by BOS for the ``bos`` build)."""
    name, build, m, result, printed = checked
    packed = result["packed"]
    assert packed["strategy"] == "fragment"
    assert packed["tokens"] == m["total_tokens"]
    lengths = [b - a for s in m.shards for a, b in zip(*(lambda i: (i.start.tolist(),
               i.end.tolist()))(read_index(m.path(s["path"]))))]
    assert packed["pieces"] == sum(-(-n // SEQ) for n in lengths) > m["documents"]
    assert "every token kept" in printed
    if name != "bos":  # doc_lens: one segment per piece (bos: see check_packed)
        assert packed["segments"] == packed["pieces"]
    assert (m["tokenizer"]["bos_token_id"] is not None) == (name == "bos")


def test_source_mixture_reproduces_the_plan(checked):
    name, build, m, result, printed = checked
    if name != "per":
        assert "mixture" not in result
        return
    mix = result["mixture"]
    # requested_tokens = the build's total: every whole instance of every file, i.e. per
    # source the plan minus each file's last partial instance (< SEQ tokens per file)
    assert mix["per_source"] == served_per_source(build, SEQ)
    for src in m.sources:
        files = sum(1 for s in m.shards if src["name"] in s["sources"])
        assert 0 <= src["tokens"] - mix["per_source"][src["name"]] < files * SEQ
        assert f"{src['name']}: {mix['per_source'][src['name']]:,} of" in printed
    # a smaller request: int(requested x share) per source, rounded to whole instances per
    # file and topped up to whole batches (bound: README of integrations/olmo-core)
    half = result["mixture_half"]
    paths = len(m.shards)
    for src in m.sources:
        files = sum(1 for s in m.shards if src["name"] in s["sources"])
        want = int(half["requested_tokens"] * src["tokens"] / m["total_tokens"])
        assert abs(half["per_source"][src["name"]] - want) <= (files + paths) * SEQ
    assert sum(half["per_source"].values()) >= half["requested_tokens"]
