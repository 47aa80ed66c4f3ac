"""OLMo (ai2-olmo 0.6.0) trains on CPU with gloo from an export (integrations/olmo/
train_cpu.py, two DDP processes): the loss falls, the masked-label fraction is the .mask
files', every EOS target is labelled, ranks get disjoint instances, and a run resumed from a
step-K checkpoint gets the same batches and losses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import SEQ, export, run_check

CHECK = Path(__file__).with_name("check_train.py")
STEPS, K, WORLD = 8, 4, 2


@pytest.fixture(scope="module")
def trained(builds, tmp_path_factory):
    out = tmp_path_factory.mktemp("olmo-train")
    export("olmo", builds["inter"], out / "export", "--seq-len", SEQ)
    return run_check("olmo", CHECK, out / "export", builds["inter"], out / "work", STEPS, K,
                     WORLD)


def test_loss_falls(trained):
    rank0 = [r for r in trained["full"] if r["rank"] == 0]
    assert [r["step"] for r in rank0] == list(range(1, STEPS + 1))
    assert rank0[0]["loss"] > 10.0
    assert max(r["loss"] for r in rank0[-2:]) < rank0[0]["loss"] - 0.3


def test_masked_labels_are_the_mask_files(trained):
    got = [r["masked_labels"] for r in trained["full"]]
    assert got == pytest.approx(trained["expected_masked"], abs=1e-6)
    assert max(got) > 0  # the build masks orca's questions


def test_every_eos_target_is_labelled_and_ranks_are_disjoint(trained):
    rows = trained["full"]
    assert sum(r["eos_targets"] for r in rows) > 0
    assert all(r["eos_labelled"] == r["eos_targets"] for r in rows)
    seen = [i for r in rows for i in r["index"]]
    assert len(seen) == len(set(seen)) == STEPS * 2  # global batch 2 = 1 per rank


def test_resume_from_step_k_gives_the_same_batches_and_losses(trained):
    full = {(r["step"], r["rank"]): r for r in trained["full"]}
    resumed = trained["resumed"]
    assert sorted({r["step"] for r in resumed}) == list(range(K + 1, STEPS + 1))
    for r in resumed:
        want = full[(r["step"], r["rank"])]
        assert (r["sha256"], r["index"], r["loss"]) == (want["sha256"], want["index"],
                                                        want["loss"])
