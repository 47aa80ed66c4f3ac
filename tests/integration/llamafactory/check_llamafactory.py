"""Runs in the llamafactory venv: llamafactory 0.9.5's pre-training (pt) data path loads
both routes of an ``instmix export llamafactory`` folder, from the exported recipes, with
the same calls as its ``run_pt`` workflow up to the dataset (the shipped
``integrations/llamafactory/preview_data.py``). Prints one JSON line:

- tokenized: the rows it serves (sha256 of the concatenated ids, count, lengths);
- text: rows as LLaMA-Factory packs them by default, and per-source tokens of the
  recipe's stream (mix_strategy concat by default, or interleave_under), read with packing
  off (one row per document) and attributed to sources by matching each row against the
  exported documents (each record names its source) tokenized by LLaMA-Factory's own
  tokenizer.

usage: check_llamafactory.py EXPORT_DIR WORK_DIR
"""

import hashlib
import json
import os
import sys
import tempfile

os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="lf-hf-"))

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = os.path.join(HERE, "..", "..", "..", "integrations", "llamafactory")
sys.path += [os.path.dirname(HERE), RECIPES]  # appended: tests/integration/<name> must not shadow the framework
from buildfiles import emit  # noqa: E402
from preview_data import load_pt as load_recipe  # noqa: E402


def load_pt(recipe, work_dir, **changes):
    """The recipe's pt data, loaded by integrations/llamafactory/preview_data.py."""
    return load_recipe(recipe, output_dir=os.path.join(work_dir, "out"), **changes)


def main(export_dir, work_dir):
    out = {}
    tok_recipe = os.path.join(export_dir, "llamafactory_pt_tokenized.yaml")
    if os.path.exists(tok_recipe):
        ds, _, _ = load_pt(tok_recipe, work_dir)
        rows = ds["input_ids"]
        flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
        out["tokenized"] = {"rows": len(rows), "tokens": int(flat.size),
                            "sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
                            "lengths": sorted({len(r) for r in rows}),
                            "columns": ds.column_names}

    text_recipe = os.path.join(export_dir, "llamafactory_pt_text.yaml")
    ds, tok, data_args = load_pt(text_recipe, work_dir)
    out["text_packed"] = {"rows": len(ds), "cutoff_len": data_args.cutoff_len,
                          "lengths": sorted({len(r) for r in ds["input_ids"]})}

    # The same interleave_under stream, one row per document (no packing, no truncation).
    ds, tok, data_args = load_pt(text_recipe, work_dir, packing=False, cutoff_len=1 << 20)
    with open(os.path.join(data_args.dataset_dir, "dataset_info.json")) as f:
        info = json.load(f)
    owner, docs, file_tokens = {}, {}, {}
    for entry in info.values():
        with open(os.path.join(data_args.dataset_dir, entry["file_name"])) as f:
            records = [json.loads(line) for line in f]
        encoded = tok([r["text"] + tok.eos_token for r in records],
                      add_special_tokens=False)["input_ids"]
        for r, ids in zip(records, encoded):
            docs[r["source"]] = docs.get(r["source"], 0) + 1
            file_tokens[r["source"]] = file_tokens.get(r["source"], 0) + len(ids)
            owner.setdefault(tuple(ids), set()).add(r["source"])
    tokens = dict.fromkeys(docs, 0)
    rows = dict.fromkeys(docs, 0)
    for ids in ds["input_ids"]:
        (name,) = owner[tuple(ids)]  # every served row is one exported document
        tokens[name] += len(ids)
        rows[name] += 1
    total = sum(tokens.values())
    out["text"] = {"tokens": tokens, "rows": rows, "documents": docs,
                   "mix_strategy": data_args.mix_strategy,
                   "file_tokens": file_tokens,
                   "shares": {k: v / total for k, v in tokens.items()},
                   "eos_token_id": tok.eos_token_id, "vocab": len(tok)}
    emit(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
