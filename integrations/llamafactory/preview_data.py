"""Load the pre-training data of a LLaMA-Factory (0.9.x) recipe exactly as ``llamafactory-cli
train`` would (``run_pt`` up to the dataset; no model is loaded) and print what it holds.

    python preview_data.py RECIPE.yaml [key=value ...]     # e.g. packing=false

Needs only LLaMA-Factory's data-path packages (see README.md). Offline use: set
HF_HUB_OFFLINE=1 and point model_name_or_path at a local model or tokenizer folder.
"""

from __future__ import annotations

import os
import sys

import yaml


def load_pt(recipe: str | dict, **changes):
    """``(train_dataset, tokenizer, data_args)`` for a pt recipe (a YAML path or a dict)."""
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")  # else transformers logs at INFO
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    if isinstance(recipe, str):
        with open(recipe, encoding="utf-8") as f:
            recipe = yaml.safe_load(f)
    args = {**recipe, **changes}
    model_args, data_args, training_args, _, _ = get_train_args(args)
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    dm = get_dataset(template, model_args, data_args, training_args, stage="pt", **module)
    return dm["train_dataset"], module["tokenizer"], data_args


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    changes = dict(yaml.safe_load(f"{{{k}: {v}}}").popitem() for k, v in
                   (a.split("=", 1) for a in argv[1:]))
    ds, tok, data_args = load_pt(argv[0], **changes)
    lengths = [len(x) for x in ds["input_ids"]]
    print(f"{len(ds):,} rows, {sum(lengths):,} tokens, row lengths {min(lengths)}.."
          f"{max(lengths)}, cutoff_len {data_args.cutoff_len}, packing {data_args.packing}")
    print("first row:", repr(tok.decode(ds[0]["input_ids"][:64])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
