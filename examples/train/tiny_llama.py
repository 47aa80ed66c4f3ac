"""Make a tiny random-init llama model folder for a build: the build's tokenizer folder
(``instmix export tokenizer``: tokenizer.json, EOS and a distinct pad) plus a
``config.json`` (hidden size 32, one layer). No weights: LLaMA-Factory initialises them
with ``train_from_scratch: true``. Nothing is downloaded.

    python examples/train/tiny_llama.py BUILD OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def write_config(folder: str, tokenizer_report: dict, hidden: int = 32, layers: int = 1) -> str:
    """``config.json`` of a ``LlamaForCausalLM`` whose embedding holds every id of the
    tokenizer (rounded up to a multiple of 128)."""
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": hidden, "intermediate_size": 2 * hidden,
              "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 2,
              "vocab_size": -(-tokenizer_report["vocab_size"] // 128) * 128,
              "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
              "tie_word_embeddings": False, "torch_dtype": "float32",
              "eos_token_id": tokenizer_report["eos_token_id"],
              "pad_token_id": tokenizer_report["pad_token_id"]}
    if tokenizer_report.get("bos_token_id") is not None:
        config["bos_token_id"] = tokenizer_report["bos_token_id"]
    path = os.path.join(folder, "config.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return path


def main(build: str, out: str) -> int:
    subprocess.run([sys.executable, "-m", "instmix", "export", "tokenizer", build, "--out", out],
                   check=True)
    with open(os.path.join(out, "instmix-export.json"), encoding="utf-8") as f:
        report = json.load(f)
    print("wrote", write_config(out, report))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
