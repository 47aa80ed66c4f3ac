"""Runs in the olmo-core venv: every mixture config of an ``instmix sweep --zero-copy``
folder builds an OLMo-core source mixture over the sweep's pool files; iterates every
instance, checks it against the pool's tokens and counts tokens per source. Prints one
JSON line: ``{label: {"requested": n, "per_source": {...}}}``.

usage: check_sweep.py SWEEP_DIR WORK_DIR
"""

import json
import os
import sys

from olmo_core.data import NumpyFSLDatasetConfig

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path += [os.path.dirname(HERE), HERE]
from buildfiles import Build, emit  # noqa: E402
from check_olmo_core import check_chunks  # noqa: E402


def main(sweep_dir, work_dir):
    with open(os.path.join(sweep_dir, "sweep.json")) as f:
        summary = json.load(f)
    pool = Build(os.path.join(sweep_dir, summary["pool"]))
    out = {}
    for mix in summary["mixtures"]:
        path = os.path.join(sweep_dir, mix["output"], "olmo_core_mixture.yaml")
        cfg = NumpyFSLDatasetConfig.from_yaml(
            path, overrides=[f"work_dir={os.path.join(work_dir, mix['output'])}"])
        ds = cfg.build()
        ds.prepare()
        got = check_chunks(ds, pool, cfg.sequence_length)
        out[mix["label"]] = {"requested": mix["requested_tokens"],
                             "per_source": got["per_source"], "instances": got["instances"]}
    emit(out)


if __name__ == "__main__":  # prepare() uses a process pool
    main(*sys.argv[1:3])
