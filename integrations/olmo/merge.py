"""Merge ``instmix export olmo`` output into an OLMo (ai2-olmo) training YAML.

    python merge.py TRAIN.yaml BUILD/export-olmo/olmo-data.yaml > train.yaml

The exported ``model:`` ids and ``tokenizer.identifier`` replace yours; the exported
``data:`` file keys (``paths``/``datasets``, ``memmap_dtype``, ``label_mask_paths``)
replace yours, and your other ``data:`` keys (workers, seed, ...) stay. ``embedding_size``
is raised to the next multiple of 128 when it is smaller than the vocabulary. Needs PyYAML.
"""

from __future__ import annotations

import sys

import yaml

FILE_KEYS = ("paths", "datasets", "memmap_dtype", "label_mask_paths")


def merge(train: dict, exported: dict) -> dict:
    out = dict(train)
    model = dict(out.get("model") or {})
    model.update(exported.get("model") or {})
    vocab = model.get("vocab_size")
    if isinstance(vocab, int) and (model.get("embedding_size") or 0) < vocab:
        model["embedding_size"] = -(-vocab // 128) * 128
    out["model"] = model
    if exported.get("tokenizer"):
        out["tokenizer"] = {**(out.get("tokenizer") or {}), **exported["tokenizer"]}
    data = {k: v for k, v in (out.get("data") or {}).items() if k not in FILE_KEYS}
    data.update(exported.get("data") or {})
    out["data"] = data
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    loaded = []
    for path in argv:
        with open(path, encoding="utf-8") as f:
            loaded.append(yaml.safe_load(f) or {})
    yaml.safe_dump(merge(*loaded), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
