"""Runs in the olmo-core venv: trains a tiny random-init model on an ``instmix export
olmo-core`` folder with the shipped ``integrations/olmo-core/train.py`` (OLMo-core's own
Trainer), twice: once for STEPS steps with a checkpoint every K steps, and once resumed
from a copy of the step-K checkpoint. Prints one JSON line: both runs' per-step records,
and per step the masked-label fraction the ``.mask`` files give for the batch's instances.

usage: check_train.py EXPORT_DIR BUILD_DIR WORK_DIR STEPS K
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "..", "..", "..", "integrations", "olmo-core", "train.py")
sys.path.append(os.path.dirname(HERE))
from buildfiles import Build, emit  # noqa: E402

TINY = ["--batch", "2", "--d-model", "32", "--layers", "1", "--lr", "1e-2"]


def train(export_dir, save, work, steps, every, record):
    cmd = [sys.executable, "-W", "ignore", TRAIN, export_dir, "--save-folder", save,
           "--work-dir", work, "--steps", str(steps), "--save-interval", str(every),
           "--record", record, *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise SystemExit(f"train.py failed ({proc.returncode})")
    with open(record) as f:
        return [json.loads(line) for line in f]


def expected_masked(build, seq, index):
    """OLMo-core's labels are the next tokens with the label mask applied, the last
    position of each instance unlabelled: per instance, (~mask[a+1:b]).sum() + 1."""
    starts, paths = [], build.paths
    for p in paths:
        starts.append(len(build.shard(p).tokens) // seq)
    offsets = np.cumsum([0, *starts])
    masked = 0
    for i in index:
        f = int(np.searchsorted(offsets, i, side="right") - 1)
        shard = build.shard(paths[f])
        a = (i - offsets[f]) * seq
        mask = shard.mask[a + 1:a + seq] if shard.mask is not None else np.ones(seq - 1, bool)
        masked += int((~mask).sum()) + 1
    return masked / (len(index) * seq)


def main(export_dir, build_dir, work_dir, steps, k):
    steps, k = int(steps), int(k)
    build = Build(build_dir)
    with open(os.path.join(export_dir, "olmo_core_fsl.yaml")) as f:
        seq = next(int(line.split(":")[1]) for line in f if line.startswith("sequence_length"))
    work = os.path.join(work_dir, "olmo-core-work")
    full = train(export_dir, os.path.join(work_dir, "full"), work, steps, k,
                 os.path.join(work_dir, "full.jsonl"))
    resumed_dir = os.path.join(work_dir, "resumed")
    shutil.copytree(os.path.join(work_dir, "full", f"step{k}"),
                    os.path.join(resumed_dir, f"step{k}"))
    resumed = train(export_dir, resumed_dir, work, steps, k,
                    os.path.join(work_dir, "resumed.jsonl"))
    emit({"seq": seq, "full": full, "resumed": resumed,
          "expected_masked": [expected_masked(build, seq, r["index"]) for r in full]})


if __name__ == "__main__":
    main(*sys.argv[1:6])
