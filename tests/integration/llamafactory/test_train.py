"""llamafactory 0.9.5 trains a tiny random-init llama on the token-exact export (its own
``run_exp``, as ``llamafactory-cli train``): the loss falls, no label is masked (its pt
collator trains every non-pad token, as the export says; the build here has no padding
rows but the last), every EOS target is labelled (the model folder from ``instmix export
tokenizer`` has a distinct pad), and a run resumed from checkpoint-K gets the same
batches and losses."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ..conftest import ROOT, SEQ, export, run_check

CHECK = Path(__file__).with_name("check_train.py")
STEPS, K = 8, 4


def tiny_llama(build: Path, out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("tiny_llama",
                                                  ROOT / "examples" / "train" / "tiny_llama.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    export("tokenizer", build, out)
    mod.write_config(str(out), json.loads((out / "instmix-export.json").read_text()))
    return out


@pytest.fixture(scope="module")
def trained(builds, tmp_path_factory):
    out = tmp_path_factory.mktemp("lf-train")
    model = tiny_llama(builds["inter"], out / "model")
    export("llamafactory", builds["inter"], out / "export", "--seq-len", SEQ, "--routes",
           "tokenized", "--model", model)
    recipe = out / "export" / "llamafactory_pt_tokenized.yaml"
    export("llamafactory", builds["inter"], out / "unused", "--check", recipe)  # passes
    return run_check("llamafactory", CHECK, recipe, model, out / "work", STEPS, K)


def test_loss_falls(trained):
    rows = trained["full"]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert rows[0]["loss"] > 10.0
    assert max(r["loss"] for r in rows[-2:]) < rows[0]["loss"] - 0.5


def test_no_label_is_masked_and_every_eos_target_is_labelled(trained):
    rows = trained["full"]
    assert all(r["masked"] == 0 for r in rows)  # full 256-token blocks, no pad
    assert sum(r["eos_targets"] for r in rows) > 0
    assert all(r["eos_labelled"] == r["eos_targets"] for r in rows)


def test_resume_from_checkpoint_k_gives_the_same_batches_and_losses(trained):
    full = {r["step"]: r for r in trained["full"]}
    resumed = trained["resumed"]
    assert [r["step"] for r in resumed] == list(range(K + 1, STEPS + 1))
    for r in resumed:
        assert r["sha256"] == full[r["step"]]["sha256"]
        assert r["loss"] == full[r["step"]]["loss"]
