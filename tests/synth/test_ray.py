"""The Ray Data executor on a local Ray cluster (CPU, transformers engine) writes exactly
what a local run writes."""

import os
import shutil

import pytest

from instmix.synth.config import load_augment_config
from instmix.synth.runner import augment

from .synth_helpers import sample_texts, write_jsonl

pytest.importorskip("ray")


def _files(folder):
    return {n: open(os.path.join(folder, n), "rb").read()
            for n in sorted(os.listdir(folder)) if n.endswith(".jsonl.zst")}


def test_ray_local_cluster_equals_local_run(tmp_path, tiny_model):
    texts = sample_texts(16)
    texts[5] = "Long " + " ".join(["the river reaches the sea"] * 50)
    write_jsonl(tmp_path / "in.jsonl", texts)
    base = {"synthesizer": {"engine": "transformers", "model": tiny_model, "threads": 1,
                            "max_model_len": 200, "max_new_tokens": 12, "batch_size": 3},
            "rounds": 2, "block_size": 6, "checkpoint_every": 3,
            "sources": [{"name": "web", "paths": ["in.jsonl"]}]}
    local = load_augment_config({**base, "output": "local"}, base_dir=str(tmp_path))
    augment(local)
    # finish one block locally first: the Ray run must resume around it
    ray_cfg = {**base, "output": "ray", "ray": {"address": "local", "num_cpus": 2,
                                                "replicas": 2, "gpus_per_replica": 0,
                                                "cpus_per_replica": 0.5}}
    cfg = load_augment_config(ray_cfg, base_dir=str(tmp_path))
    os.makedirs(os.path.join(cfg.output, "_state"))
    names = ["augment.json", "_state/block-000000.json"] + [
        n for n in _files(local.output) if n.startswith("part-000000-")] + [
        "part-000001-r0-0000.jsonl.zst"]  # block 0 done, block 1 partly
    for n in names:
        shutil.copy(os.path.join(local.output, n), os.path.join(cfg.output, n))
    stats = augment(cfg)
    assert stats["sessions"][-1]["texts"] < stats["totals"]["texts"]
    assert stats["complete"] and stats["blocks_done"] == 3
    assert _files(cfg.output) == _files(local.output)
