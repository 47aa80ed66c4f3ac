"""Runs in the olmo venv: ai2-olmo 0.6.0 (the legacy OLMo trainer, numpy<2) reads an
``instmix export olmo`` folder. Merges the export into the shipped recipe
``integrations/olmo/train-instmix.yaml`` with ``integrations/olmo/merge.py``, loads it with
OLMo's own config classes and tokenizer, builds the MemMapDataset and the train loader the
trainer uses, and asserts that every instance is the build's tokens and mask. Prints
observations as one JSON line.

usage: check_olmo.py EXPORT_DIR BUILD_DIR WORK_DIR
"""

import os
import sys
from collections import Counter

import yaml
from olmo.config import DataConfig, TrainConfig
from olmo.data import build_memmap_dataset, build_train_dataloader
from olmo.tokenizer import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = os.path.join(HERE, "..", "..", "..", "integrations", "olmo")
sys.path += [os.path.dirname(HERE), RECIPES]  # appended: tests/integration/<name> must not shadow the framework
from buildfiles import Build, emit  # noqa: E402
from merge import merge  # noqa: E402


def main(export_dir, build_dir, work_dir):
    build = Build(build_dir)
    exported = os.path.join(export_dir, "olmo-data.yaml")
    with open(exported) as f:
        sections = yaml.safe_load(f)
    # what a user does: the recipe with the export merged in (run-specific bits changed)
    with open(os.path.join(RECIPES, "train-instmix.yaml")) as f:
        recipe = yaml.safe_load(f)
    train = merge(recipe, sections)
    train.update(save_folder=os.path.join(work_dir, "run"), save_overwrite=True,
                 global_train_batch_size=4, device_train_microbatch_size=2)
    train["data"].update(num_workers=0, persistent_workers=False, prefetch_factor=None,
                         pin_memory=False)
    path = os.path.join(work_dir, "train.yaml")
    os.makedirs(work_dir, exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(train, f, sort_keys=False)

    data_only = DataConfig.load(exported, key="data")
    cfg = TrainConfig.load(path)
    assert data_only.memmap_dtype == cfg.data.memmap_dtype == build.manifest["dtype"]
    seq = cfg.model.max_sequence_length
    tokenizer = Tokenizer.from_train_config(cfg)  # raises if vocab_size disagrees
    assert tokenizer.eos_token_id == build.manifest["tokenizer"]["eos_token_id"]
    assert cfg.model.embedding_size >= cfg.model.vocab_size
    ds = build_memmap_dataset(cfg, cfg.data)

    per_source, loss, labels, n = Counter(), 0, Counter(), 0
    for path, (lo, hi) in zip(ds._memmap_paths, ds.offsets):
        shard = build.shard(path)
        for i in range(lo, hi):
            item = ds[i]
            a, b = (i - lo) * seq, (i - lo + 1) * seq
            assert item["input_ids"].tolist() == shard.tokens[a:b].tolist(), (path, i - lo)
            if shard.mask is not None:
                m = item["label_mask"].numpy()
                assert m.tolist() == shard.mask[a:b].tolist(), ("mask", path, i - lo)
                loss += int(m.sum())
            else:
                assert "label_mask" not in item
            meta = item["metadata"]
            if "label" in meta:
                assert set(shard.source_counts(a, b)) == {meta["label"]}, meta
                labels[meta["label"]] += 1
            per_source.update(shard.source_counts(a, b))
            n += 1
    assert n == len(ds)

    cfg.device_train_batch_size = cfg.global_train_batch_size
    loader = build_train_dataloader(cfg)
    seen = sum(batch["input_ids"].shape[0] for batch in loader)
    emit({"seq": seq, "instances": len(ds), "per_source": dict(per_source), "loss_tokens": loss,
          "labels": dict(labels), "loader_instances": seen,
          "paths": [str(p) for p in ds._memmap_paths]})


if __name__ == "__main__":
    main(*sys.argv[1:4])
