"""Helpers shared by the synth tests."""

import json
import os

# Files holding a run's throughput, which differs between runs: compared trees skip them.
TIMING = ("stats.json", "_state/session-")


def write_jsonl(path, texts, field="text"):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({field: t}, ensure_ascii=False) + "\n")
    return str(path)


def sample_texts(n, seed=0):
    """``n`` distinct English-like texts of varied length."""
    import random

    rng = random.Random(seed)
    words = ("river sea town farm market bridge winter harvest school library music "
             "engine garden letter window mountain story").split()
    out = []
    for i in range(n):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        out.append(f"Text{i} {body}.")
    return out


def read_parts(folder):
    """All entries of an augment output, as dicts, keyed by part file name."""
    from instmix.io.readers import iter_jsonl

    return {name: [obj for _, obj in iter_jsonl(os.path.join(folder, name))]
            for name in sorted(os.listdir(folder)) if name.endswith(".jsonl.zst")}


def config(tmp, tokdir, out="out", *, engine="synth.synth_scripted:ScriptedEngine",
           model="scripted", n=24, rounds=2, **synth):
    """An augment config mapping over ``tmp/in.jsonl`` (``n`` texts, written once)."""
    inp = tmp / "in.jsonl"
    if not inp.exists():
        texts = sample_texts(n)
        texts[3] = "Long " + " ".join(["the river reaches the sea"] * 60)  # gets split
        write_jsonl(inp, texts)
    s = {"engine": engine, "model": model, "tokenizer": tokdir, "max_model_len": 256,
         "max_new_tokens": 32, "batch_size": 2, **synth}
    return {"synthesizer": s, "rounds": rounds, "block_size": 10, "checkpoint_every": 4,
            "sources": [{"name": "web", "paths": ["in.jsonl"]}], "output": out}


def load(tmp, data):
    from instmix.synth.config import load_augment_config

    return load_augment_config(data, base_dir=str(tmp))
