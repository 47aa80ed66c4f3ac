"""Helpers shared by the synth tests."""

import json
import os


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
