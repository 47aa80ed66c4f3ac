"""Runs in the olmo-core venv: ai2-olmo-core 3.0.0 reads an ``instmix export olmo-core``
folder. Builds the FSL, packed and (per_source builds) source-mixture datasets from the
exported Python module and YAML files, iterates every instance and asserts that what
OLMo-core serves is the build's tokens and masks; then reads an epoch through the data
loader with the shipped recipe ``integrations/olmo-core/instmix_data.py``. Prints
observations as one JSON line.

usage: check_olmo_core.py EXPORT_DIR BUILD_DIR WORK_DIR
"""

import importlib.util
import os
import sys
from collections import Counter

import numpy as np
from olmo_core.data import NumpyFSLDatasetConfig, NumpyPackedFSLDatasetConfig

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = os.path.join(HERE, "..", "..", "..", "integrations", "olmo-core")
sys.path += [os.path.dirname(HERE), RECIPES]  # appended: tests/integration/<name> must not shadow the framework
from buildfiles import Build, emit  # noqa: E402
from instmix_data import dry_run  # noqa: E402


def load_module(path):
    spec = importlib.util.spec_from_file_location("olmo_core_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def same_config(a, b):
    for key in ("paths", "label_mask_paths", "sequence_length", "metadata"):
        assert getattr(a, key, None) == getattr(b, key, None), key
    assert str(a.dtype) == str(b.dtype) == str(a.get_dtype().__name__)
    for key in ("vocab_size", "eos_token_id", "pad_token_id", "bos_token_id"):
        assert getattr(a.tokenizer, key) == getattr(b.tokenizer, key), key


def check_chunks(ds, build, seq):
    """Instance j of file f must be tokens [j*seq, (j+1)*seq) of f (and its mask)."""
    per_source, loss, n = Counter(), 0, 0
    for path, (lo, hi) in zip(ds.paths, ds.offsets):
        shard = build.shard(path)
        for i in range(lo, hi):
            item = ds[i]
            a, b = (i - lo) * seq, (i - lo + 1) * seq
            got = item["input_ids"].numpy()
            assert got.tolist() == shard.tokens[a:b].tolist(), f"{path} instance {i - lo}"
            if shard.mask is not None and "label_mask" in item:
                m = item["label_mask"].numpy()
                assert m.tolist() == shard.mask[a:b].tolist(), f"mask {path} {i - lo}"
                loss += int(m.sum())
            per_source.update(shard.source_counts(a, b))
            n += 1
    return {"instances": n, "per_source": dict(per_source), "loss_tokens": loss,
            "has_label_mask": "label_mask" in ds[0]}


def check_packed(ds, build, seq, pad, strategy):
    """Every document is served once, with its mask, as pieces of at most seq tokens
    (``fragment``: all of them; ``truncate``: the first); the rest is pad."""
    served, pad_tokens = Counter(), 0
    for i in range(len(ds)):
        item = ds[i]
        ids = item["input_ids"].numpy()
        mask = item["label_mask"].numpy()
        bounds = np.cumsum([0, *item["doc_lens"].tolist()])
        assert bounds[-1] == len(ids) == seq
        segments = [(ids[a:b], mask[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        # trailing padding: pad ids that never train (a real document always holds text)
        while segments and np.all(segments[-1][0] == pad) and not segments[-1][1].any():
            pad_tokens += len(segments.pop()[0])
        for seg, mseg in segments:
            served[(seg.tobytes(), mseg.tobytes())] += 1
    want, kept = Counter(), 0
    for path in build.paths:
        for _, tokens, mask in build.shard(path).documents():
            stop = len(tokens) if strategy == "fragment" else seq
            for a in range(0, min(stop, len(tokens)), seq):
                t = tokens[a:a + seq].astype(np.int64)
                m = np.ones(len(t), dtype=np.bool_) if mask is None else mask[a:a + seq]
                want[(t.tobytes(), m.tobytes())] += 1
                kept += len(t)
    if build.manifest["tokenizer"].get("bos_token_id") is None:
        assert served == want, (sum(served.values()), sum(want.values()))
    else:
        # With a BOS id, OLMo-core's doc_lens split at EOS followed by BOS, so a fragment
        # that does not start with BOS is counted with the document before it in the same
        # instance: compare the served tokens and masks as a multiset instead.
        def bag(counter):
            out = Counter()
            for (t, m), n in counter.items():
                for pair in zip(np.frombuffer(t, np.int64).tolist(),
                                np.frombuffer(m, np.bool_).tolist()):
                    out[pair] += n
            return out
        assert bag(served) == bag(want)
    return {"instances": len(ds), "pieces": sum(want.values()),
            "segments": sum(served.values()), "pad_tokens": pad_tokens, "tokens": kept,
            "strategy": strategy}


def main(export_dir, build_dir, work_dir):
    build = Build(build_dir)
    mod = load_module(os.path.join(export_dir, "olmo_core_data.py"))
    seq = mod.SEQUENCE_LENGTH
    out = {"seq": seq}

    fsl_py = mod.fsl_dataset_config(work_dir=os.path.join(work_dir, "fsl"))
    fsl_yaml = NumpyFSLDatasetConfig.from_yaml(os.path.join(export_dir, "olmo_core_fsl.yaml"),
                                               overrides=[f"work_dir={work_dir}/fsl"])
    same_config(fsl_py, fsl_yaml)
    ds = fsl_yaml.build()
    ds.prepare()
    out["fsl"] = check_chunks(ds, build, seq)

    packed_py = mod.packed_dataset_config(work_dir=os.path.join(work_dir, "packed"),
                                          generate_doc_lengths=True)
    packed_yaml = NumpyPackedFSLDatasetConfig.from_yaml(
        os.path.join(export_dir, "olmo_core_packed.yaml"))
    same_config(packed_py, packed_yaml)
    ds = packed_py.build()
    ds.prepare()
    out["packed"] = check_packed(ds, build, seq, mod.TOKENIZER.pad_token_id,
                                 str(packed_yaml.long_doc_strategy).split(".")[-1])

    mix_yaml = os.path.join(export_dir, "olmo_core_mixture.yaml")
    if os.path.exists(mix_yaml):
        cfg = NumpyFSLDatasetConfig.from_yaml(mix_yaml, overrides=[f"work_dir={work_dir}/mix"])
        py = mod.mixture_dataset_config(work_dir=os.path.join(work_dir, "mix"))
        assert cfg.source_mixture_config == py.source_mixture_config
        ds = cfg.build()
        ds.prepare()
        out["mixture"] = check_chunks(ds, build, seq)
        half = mod.TOTAL_TOKENS // 2
        ds = mod.mixture_dataset_config(work_dir=os.path.join(work_dir, "mix-half"),
                                        requested_tokens=half).build()
        ds.prepare()
        out["mixture_half"] = check_chunks(ds, build, seq)
        out["mixture_half"]["requested_tokens"] = half
    # the recipe: dataset + loader as a training script builds them, one epoch read
    out["loader"] = {kind: dry_run(export_dir, kind, os.path.join(work_dir, f"dry-{kind}"))
                     for kind in ("fsl", "packed", "mixture")
                     if kind != "mixture" or "mixture" in out}
    emit(out)


if __name__ == "__main__":  # prepare() of packed and mixture datasets uses a process pool
    main(*sys.argv[1:4])
