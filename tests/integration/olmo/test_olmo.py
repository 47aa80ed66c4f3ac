"""ai2-olmo 0.6.0 (legacy OLMo) reads the build through the exported YAML sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from instmix.export import check_config
from instmix.format.manifest import load_manifest

from ..conftest import SEQ, export, run_check
from ..olmo_core.test_olmo_core import served_per_source

CHECK = Path(__file__).with_name("check_olmo.py")


@pytest.fixture(scope="module", params=["inter", "per", "wide"])
def checked(request, builds, tmp_path_factory):
    build = builds[request.param]
    out = tmp_path_factory.mktemp(f"olmo-{request.param}")
    printed = export("olmo", build, out / "export", "--seq-len", SEQ)
    result = run_check("olmo", CHECK, out / "export", build, out / "work")
    merged = out / "work" / "train.yaml"  # the recipe merged with the export
    return request.param, build, load_manifest(str(build)), result, printed, merged


def test_memmap_dataset_serves_the_build(checked):
    name, build, m, result, printed, merged = checked
    assert result["seq"] == SEQ
    instances = sum(s["tokens"] // SEQ for s in m.shards)
    assert result["instances"] == instances
    assert f"{instances:,} instances of {SEQ} tokens" in printed
    assert result["per_source"] == served_per_source(build, SEQ)
    # OLMo's train loader drops the last partial global batch
    assert result["loader_instances"] == instances // 4 * 4


def test_label_masks_and_labels(checked):
    name, build, m, result, _, _ = checked
    if name == "wide":
        assert result["loss_tokens"] == 0
    else:
        assert 0 < result["loss_tokens"] <= sum(s["loss_tokens"] for s in m.shards)
    if name == "per":
        # datasets are read in sorted label order; label_mask_paths had to follow it
        assert result["paths"] == sorted(result["paths"], key=lambda p: Path(p).parent.name)
        assert set(result["labels"]) == {s["name"] for s in m.sources}
    else:
        assert result["paths"] == [m.path(s["path"]) for s in m.shards]


def test_merged_recipe_passes_the_check(checked):
    name, build, _, _, _, merged = checked
    assert check_config("olmo", str(build), str(merged)) == []
