"""OLMo-core's own Trainer trains on an export (integrations/olmo-core/train.py): the loss
falls, the masked-label fraction is the .mask files', every EOS target is labelled, and a
run resumed from a step-K checkpoint gets the same batches and losses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import SEQ, export, run_check

CHECK = Path(__file__).with_name("check_train.py")
STEPS, K = 8, 4


@pytest.fixture(scope="module")
def trained(builds, tmp_path_factory):
    out = tmp_path_factory.mktemp("olmo-core-train")
    export("olmo-core", builds["inter"], out / "export", "--seq-len", SEQ)
    return run_check("olmo-core", CHECK, out / "export", builds["inter"], out / "work",
                     STEPS, K)


def test_loss_falls(trained):
    losses = [r["loss"] for r in trained["full"]]
    assert [r["step"] for r in trained["full"]] == list(range(1, STEPS + 1))
    assert losses[0] > 10.0  # ln(50,304) = 10.8 at random init
    assert max(losses[-2:]) < losses[0] - 0.5, losses


def test_masked_labels_are_the_mask_files(trained):
    got = [r["masked_labels"] for r in trained["full"]]
    assert got == pytest.approx(trained["expected_masked"], abs=1e-6)
    assert max(got) > 1 / SEQ  # the build masks orca's questions: some batches hold them


def test_every_eos_target_is_labelled(trained):
    rows = trained["full"]
    assert sum(r["eos_targets"] for r in rows) > 0
    assert all(r["eos_labelled"] == r["eos_targets"] for r in rows)


def test_resume_from_step_k_gives_the_same_batches_and_losses(trained):
    full = {r["step"]: r for r in trained["full"]}
    resumed = trained["resumed"]
    assert [r["step"] for r in resumed] == list(range(K + 1, STEPS + 1))
    for r in resumed:
        assert (r["sha256"], r["index"]) == (full[r["step"]]["sha256"], full[r["step"]]["index"])
        assert r["loss"] == full[r["step"]]["loss"]  # bit-identical on CPU
