"""llamafactory 0.9.5 loads both exported routes with a real tokenizer (OLMo's)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from instmix.format.manifest import load_manifest
from instmix.format.reader import open_tokens

from ..conftest import OLMO_TOKENIZER, SEQ, export, run_check

CHECK = Path(__file__).with_name("check_llamafactory.py")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A local Hugging Face tokenizer folder from the shipped OLMo tokenizer.json."""
    d = tmp_path_factory.mktemp("olmo-tokenizer")
    shutil.copy(OLMO_TOKENIZER, d / "tokenizer.json")
    special = {"eos_token": "<|endoftext|>", "pad_token": "<|padding|>"}
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1 << 20,
         "add_bos_token": False, "add_eos_token": False, **special}))
    (d / "special_tokens_map.json").write_text(json.dumps(special))
    return d


@pytest.fixture(scope="module", params=["inter", "per"])
def checked(request, builds, tokenizer_dir, tmp_path_factory):
    build = builds[request.param]
    out = tmp_path_factory.mktemp(f"lf-{request.param}")
    printed = export("llamafactory", build, out / "export", "--seq-len", SEQ,
                     "--model", tokenizer_dir)
    result = run_check("llamafactory", CHECK, out / "export", out / "work")
    report = json.loads((out / "export" / "instmix-export.json").read_text())
    return build, load_manifest(str(build)), result, report, printed


def test_tokenized_route_serves_exactly_our_tokens(checked):
    build, m, result, report, _ = checked
    stream = np.concatenate([open_tokens(m.path(s["path"]), m.dtype).astype(np.int64)
                             for s in m.shards])
    got = result["tokenized"]
    assert got["tokens"] == m["total_tokens"] == len(stream)
    assert got["sha256"] == hashlib.sha256(stream.tobytes()).hexdigest()
    assert got["rows"] == -(-len(stream) // SEQ) == report["tokenized"]["rows"]
    assert got["lengths"] == sorted({SEQ, len(stream) % SEQ or SEQ})
    assert got["columns"] == ["input_ids"]


def test_text_route_loads_packed_into_cutoff_blocks(checked):
    _, _, result, _, _ = checked
    packed = result["text_packed"]
    assert packed["cutoff_len"] == SEQ and packed["lengths"] == [SEQ]
    assert packed["rows"] > 0


def test_text_route_tokenizes_back_to_our_tokens(checked):
    """Decoded documents re-tokenized by LLaMA-Factory give our token counts: exactly for
    `raw` (encoded whole); `orca` masks its loss, so it was encoded in pieces."""
    _, m, result, _, _ = checked
    planned = {s["name"]: s["tokens"] for s in m.sources}
    assert result["text"]["file_tokens"]["raw"] == planned["raw"]
    assert abs(result["text"]["file_tokens"]["orca"] - planned["orca"]) <= 0.01 * planned["orca"]
    assert result["text"]["documents"] == {s["name"]: s["documents"] for s in m.sources}


def test_text_route_default_concat_keeps_the_exact_shares(checked):
    """mix_strategy concat over the one file in the build's order: every document once, so
    each source's served tokens are exactly its exported tokens."""
    _, m, result, report, _ = checked
    text = result["text"]
    assert text["mix_strategy"] == "concat" and report["text"]["datasets"] == ["instmix"]
    assert text["tokens"] == text["file_tokens"]
    assert text["rows"] == text["documents"] == {s["name"]: s["documents"] for s in m.sources}


@pytest.fixture(scope="module")
def interleaved(builds, tokenizer_dir, tmp_path_factory):
    """The same build exported with the interleave_under option."""
    out = tmp_path_factory.mktemp("lf-interleave")
    printed = export("llamafactory", builds["inter"], out / "export", "--seq-len", SEQ,
                     "--model", tokenizer_dir, "--routes", "text",
                     "--mix-strategy", "interleave_under")
    result = run_check("llamafactory", CHECK, out / "export", out / "work")
    report = json.loads((out / "export" / "instmix-export.json").read_text())
    return None, load_manifest(str(builds["inter"])), result, report, printed


def test_interleave_under_token_shares_within_the_printed_error(interleaved):
    _, m, result, report, printed = interleaved
    text = report["text"]
    bound = text["rounding_error"] + text["interleave_under"]["error_worst"]
    assert f"worst {text['interleave_under']['error_worst']:.2%}" in printed
    shares = result["text"]["shares"]
    for name, target in zip(text["datasets"], text["token_shares"]):
        assert abs(shares[name] - target) <= bound, (name, shares[name], target, bound)
    # interleave_under ends when a source runs out: one source is used up, none exceeded
    rows, docs = result["text"]["rows"], result["text"]["documents"]
    assert all(rows[n] <= docs[n] for n in rows) and any(rows[n] == docs[n] for n in rows)
