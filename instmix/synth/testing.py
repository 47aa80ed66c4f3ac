"""A tiny random synthesizer built on the spot (no download): for tests, benchmarks and
dry runs of the pipeline. Its output is junk; its shapes and special tokens are real
(a Mistral-architecture model, BOS ``<s>`` = 1, EOS ``</s>`` = 2).
"""

from __future__ import annotations

import json
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

_CORPUS = (
    "The river rises in the hills and runs south to the sea, past farms and two towns.",
    "Question answering needs a passage, a question about it, and an answer taken from it.",
    "def add(a, b):\n    return a + b  # numbers 0123456789\n",
    "Prices rose by 3.5% in March; wages by 2.1%. Analysts expect a pause in May.",
    "Les chats dorment beaucoup. Der Hund schläft. 猫はよく眠る。 Кошки спят.",
    "<CON> </CON> <QUE> <ANS> </END> Options: - yes - no Let's think step by step.",
    "Therefore, the answer is the second option, because the text says so.",
)


def build_tokenizer(path: str, vocab_size: int = 512) -> str:
    """Train a small byte-level BPE with ``<unk>``, ``<s>``, ``</s>`` (ids 0, 1, 2)."""

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(_CORPUS) * 20, trainer)
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}, f)
    return path


def build_model(path: str, *, layers: int = 2, hidden: int = 64, seed: int = 0,
                max_len: int = 4096) -> str:
    """Save a random ``MistralForCausalLM`` and the tokenizer in ``path``."""
    import torch  # lazy: with transformers, only this test model needs them
    from transformers import MistralConfig, MistralForCausalLM

    build_tokenizer(path)

    vocab = Tokenizer.from_file(os.path.join(path, "tokenizer.json")).get_vocab_size()
    cfg = MistralConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=max_len, sliding_window=None,
                        bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = MistralForCausalLM(cfg)
    model.generation_config.pad_token_id = 2
    model.save_pretrained(path)
    return path
