"""Runs in the olmo venv: trains a tiny random-init OLMo (ai2-olmo 0.6.0) on an ``instmix
export olmo`` folder with the shipped CPU/gloo driver ``integrations/olmo/train_cpu.py``
(the export merged into ``integrations/olmo/train-instmix.yaml``), twice: STEPS steps with
a checkpoint every K, then resumed from a copy of the step-K checkpoint. With WORLD > 1 both
runs are ``torchrun`` jobs of WORLD gloo processes (DDP). Prints one JSON line: each run's
per-rank records and, per record, the masked-label fraction the ``.mask`` files give.

usage: check_train.py EXPORT_DIR BUILD_DIR WORK_DIR STEPS K WORLD
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = os.path.join(HERE, "..", "..", "..", "integrations", "olmo")
sys.path += [os.path.dirname(HERE), RECIPES]
from buildfiles import Build, emit  # noqa: E402
from merge import merge  # noqa: E402

TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.mlp_ratio=2",
        "global_train_batch_size=2", "optimizer.learning_rate=0.02",
        "optimizer.weight_decay=0", "data.num_workers=0", "data.persistent_workers=false",
        "data.prefetch_factor=null"]


def train(config, save, steps, every, record, world):
    script = [os.path.join(RECIPES, "train_cpu.py"), config, "--save-folder", save,
              "--steps", str(steps), "--save-interval", str(every), "--record", record, *TINY]
    if world > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={world}", *script]
    else:
        cmd = [sys.executable, "-W", "ignore", *script]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise SystemExit(f"train_cpu.py failed ({proc.returncode})")
    rows = []
    for rank in range(world):
        with open(f"{record}.rank{rank}") as f:
            rows += [json.loads(line) for line in f]
    return sorted(rows, key=lambda r: (r["step"], r["rank"]))


def expected_masked(build, seq, index):
    """OLMo's labels are the next tokens with the mask applied: per instance at offset a,
    the fraction of False in mask[a+1:a+seq]."""
    counts = [len(build.shard(p).tokens) // seq for p in build.paths]
    offsets = np.cumsum([0, *counts])
    masked = 0
    for i in index:
        f = int(np.searchsorted(offsets, i, side="right") - 1)
        shard = build.shard(build.paths[f])
        a = (i - offsets[f]) * seq
        masked += int((~shard.mask[a + 1:a + seq]).sum()) if shard.mask is not None else 0
    return masked / (len(index) * (seq - 1))


def main(export_dir, build_dir, work_dir, steps, k, world):
    steps, k, world = int(steps), int(k), int(world)
    build = Build(build_dir)
    os.makedirs(work_dir, exist_ok=True)
    with open(os.path.join(RECIPES, "train-instmix.yaml")) as f:
        recipe = yaml.safe_load(f)
    with open(os.path.join(export_dir, "olmo-data.yaml")) as f:
        train_cfg = merge(recipe, yaml.safe_load(f))
    config = os.path.join(work_dir, "train.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(train_cfg, f, sort_keys=False)
    seq = train_cfg["model"]["max_sequence_length"]
    full = train(config, os.path.join(work_dir, "full"), steps, k,
                 os.path.join(work_dir, "full.jsonl"), world)
    resumed_dir = os.path.join(work_dir, "resumed")
    os.makedirs(resumed_dir)
    shutil.copy(os.path.join(work_dir, "full", f"step{k}.pt"), resumed_dir)
    resumed = train(config, resumed_dir, steps, k, os.path.join(work_dir, "resumed.jsonl"),
                    world)
    emit({"seq": seq, "world": world, "full": full, "resumed": resumed,
          "expected_masked": [expected_masked(build, seq, r["index"]) for r in full]})


if __name__ == "__main__":
    main(*sys.argv[1:7])
