"""The Ray executor on a local Ray cluster (CPU, the engine model): parts reach storage
while their block is still running, and the output is exactly what a local run writes,
resuming around a local run's parts."""

import os
import shutil
import threading
import time

import pytest

from instmix.errors import ConfigError
from instmix.synth.config import load_augment_config
from instmix.synth.runner import augment

from .synth_helpers import sample_texts, write_jsonl

pytest.importorskip("ray")

MODEL = "instmix.synth.engines.model:EngineModel"


def _files(folder):
    return {n: open(os.path.join(folder, n), "rb").read()
            for n in sorted(os.listdir(folder)) if n.endswith(".jsonl.zst")}


def _base(tokdir, **options):
    return {"synthesizer": {"engine": MODEL, "model": "model", "tokenizer": tokdir,
                            "max_model_len": 512, "max_new_tokens": 64,
                            "options": {"max_num_seqs": 4, "output_min": 20,
                                        "output_max": 60, **options}},
            "rounds": 2, "block_size": 12, "checkpoint_every": 2,
            "sources": [{"name": "web", "paths": ["in.jsonl"]}]}


def test_ray_local_cluster_streams_parts_and_equals_local_run(tmp_path, tiny_tokenizer):
    texts = sample_texts(36)
    texts[5] = "Long " + " ".join(["the river reaches the sea"] * 40)
    write_jsonl(tmp_path / "in.jsonl", texts)
    local = load_augment_config({**_base(tiny_tokenizer), "output": "local"},
                                base_dir=str(tmp_path))
    augment(local)
    ray_cfg = {**_base(tiny_tokenizer, real_s_per_step=0.01), "output": "ray",
               "ray": {"address": "local", "num_cpus": 2, "replicas": 2,
                       "gpus_per_replica": 0, "cpus_per_replica": 0.5}}
    cfg = load_augment_config(ray_cfg, base_dir=str(tmp_path))
    os.makedirs(os.path.join(cfg.output, "_state"))
    names = ["augment.json", "_state/block-000000.json"] + [
        n for n in _files(local.output) if n.startswith("part-000000-")] + [
        "part-000001-r0-0000.jsonl.zst"]  # block 0 done, block 1 partly
    for n in names:
        shutil.copy(os.path.join(local.output, n), os.path.join(cfg.output, n))
    streamed, result = [], {}

    def watch():  # a part of block 2 on disk while block 2 is not finished
        while "stats" not in result:
            parts = [n for n in os.listdir(cfg.output) if n.startswith("part-000002-")]
            done = os.path.exists(os.path.join(cfg.output, "_state", "block-000002.json"))
            if parts and not done:
                streamed.append(parts)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result["stats"] = stats = augment(cfg)
    finally:
        result.setdefault("stats", None)
        watcher.join()
    assert streamed, "parts reached storage only when their block ended"
    assert stats["sessions"][-1]["texts"] < stats["totals"]["texts"]
    assert stats["complete"] and stats["blocks_done"] == 3
    assert _files(cfg.output) == _files(local.output)


def test_ray_replica_needs_a_gpu_per_tensor_parallel_rank(tmp_path, tiny_tokenizer):
    data = {"synthesizer": {"engine": "vllm", "model": "m", "tokenizer": tiny_tokenizer,
                            "tensor_parallel_size": 2},
            "sources": [{"name": "web", "paths": ["in.jsonl"]}], "output": "o",
            "ray": {"gpus_per_replica": 1}}
    with pytest.raises(ConfigError, match="ray.gpus_per_replica: 1 is less than synthesizer."
                       "tensor_parallel_size"):
        load_augment_config(data, base_dir=str(tmp_path))
