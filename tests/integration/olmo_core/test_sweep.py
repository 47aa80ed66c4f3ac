"""A zero-copy sweep: OLMo-core mixes each ratio set from one pool of per-source files and
serves, per source, the tokens of instmix's plan (to whole instances)."""

from __future__ import annotations

from pathlib import Path

import instmix
from instmix.builder.sweep import expand
from instmix.export.zero_copy import sweep_zero_copy

from ..conftest import SEQ, run_check

CHECK = Path(__file__).with_name("check_sweep.py")


def test_zero_copy_sweep_serves_the_planned_tokens(tmp_path, corpus):
    cfg = instmix.load_config({
        "tokenizer": str(Path(__file__).resolve().parents[3] / "examples" / "quickstart" /
                         "tokenizer.json"),
        "seed": 3, "total_tokens": 40_000, "output": str(tmp_path / "sweep"),
        "cache_dir": str(tmp_path / "cache"),
        "sources": [{"name": "raw", "paths": [corpus["raw"]], "ratio": 1},
                    {"name": "orca", "paths": [corpus["orca"]], "kind": "openorca",
                     "ratio": 1, "max_repetition": 4}]})
    summary = sweep_zero_copy(cfg, expand(cfg, ["orca=0.25,1,2"]), seq_len=SEQ)
    pool_files = list((tmp_path / "sweep" / "pool" / "sources").rglob("*.npy"))
    assert len(pool_files) == 2  # tokens written once; the mixtures are configs only
    assert not list((tmp_path / "sweep" / "orca=1").glob("*.npy"))
    served = run_check("olmo-core", CHECK, tmp_path / "sweep", tmp_path / "work")
    for mix in summary["mixtures"]:
        got = served[mix["label"]]
        total = mix["requested_tokens"]
        weights = {k: v / sum(mix["ratios"].values()) for k, v in mix["ratios"].items()}
        for name, w in weights.items():
            # int(requested x share), in whole instances per file and topped up to whole
            # batches (the bound of integrations/olmo-core/README.md); 2 files, 1 per source
            assert abs(got["per_source"][name] - int(total * w)) <= 3 * SEQ
            # and instmix's own plan for that mixture, within half a document more
            assert abs(got["per_source"][name] - mix["targets"][name]) <= 3 * SEQ + 2048
    # more orca, more orca tokens, drawn from the start of the same pool file
    orca = [served[m["label"]]["per_source"]["orca"] for m in summary["mixtures"]]
    assert orca == sorted(orca) and orca[0] < orca[-1]
