"""A Hugging Face tokenizer folder for a build (``instmix export tokenizer``).

Trainers built on ``transformers`` (LLaMA-Factory) read a tokenizer folder: ``tokenizer.json``
plus ``tokenizer_config.json`` naming the special tokens. Without a pad token LLaMA-Factory
sets pad = EOS, and its collator then masks every label equal to the pad id, so no EOS is
ever trained (measured with llamafactory 0.9.5: 0 of 28 EOS labelled). The folder written
here names the build's EOS (and BOS), and a pad token distinct from both that never occurs
in the build's token files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from instmix.errors import ConfigError
from instmix.format.reader import load_tokens
from instmix.io import fs
from instmix.io.atomic import write_atomic

from .facts import BuildFacts, load_facts
from .files import export_folder, write_report
from .guard import REPORT, ExportGuard
from .options import ExportResult

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True, kw_only=True)
class TokenizerOptions:
    """``pad``: the pad token's text (default: the tokenizer's pad token by name, else its
    first added special token that is neither EOS nor BOS)."""

    pad: str | None = None
    where: str = "export tokenizer"

    def __post_init__(self):
        if self.pad is not None and (not isinstance(self.pad, str) or not self.pad):
            raise ConfigError(self.where, "pad", "expected a token's text, e.g. <|padding|>")


def _added_tokens(path: str) -> dict[str, int]:
    added = json.loads(fs.read_bytes(path)).get("added_tokens") or []
    return {t["content"]: t["id"] for t in added
            if isinstance(t, dict) and t.get("special") and isinstance(t.get("id"), int)}


def _tokenizer(path: str) -> Tokenizer:
    """The tokenizer at a local path or a URL (a build on an object store)."""
    return Tokenizer.from_str(fs.read_bytes(path).decode("utf-8"))


def occurrences(facts: BuildFacts, token_id: int) -> int:
    """How often ``token_id`` occurs in the build's token files."""
    return sum(int(np.count_nonzero(load_tokens(f.path, facts.dtype) == token_id))
               for f in facts.shards)


def choose_pad(facts: BuildFacts, opts: TokenizerOptions) -> tuple[str, int]:
    tok = _tokenizer(facts.tokenizer_path)
    reserved = {facts.eos_token_id, facts.bos_token_id}
    if opts.pad is not None:
        pad_id = tok.token_to_id(opts.pad)
        if pad_id is None:
            raise ConfigError(opts.where, "pad", f"{opts.pad!r} is not a token of "
                              f"{facts.tokenizer_path}; name one of its tokens")
        candidates = [(opts.pad, pad_id)]
    else:
        candidates = ([(facts.pad_token, facts.pad_token_id)] if facts.pad_token else []) + \
            list(_added_tokens(facts.tokenizer_path).items())
    for text, pad_id in candidates:
        if pad_id in reserved:
            if opts.pad is not None:
                raise ConfigError(opts.where, "pad", f"{text!r} is id {pad_id}, the build's EOS "
                                  "or BOS; the collator would mask every one of them")
            continue
        seen = occurrences(facts, pad_id)
        if seen == 0:
            return text, pad_id
        if opts.pad is not None:
            raise ConfigError(opts.where, "pad", f"{text!r} (id {pad_id}) occurs {seen:,} times "
                              "in the build; those tokens would never train; name another")
    raise ConfigError(opts.where, "pad", f"{facts.tokenizer_path} has no special token that "
                      "is neither EOS nor BOS and never occurs in the build; name one with "
                      "--pad")


def tokenizer_config(facts: BuildFacts, pad: str) -> dict:
    special = {"eos_token": facts.eos_token, "pad_token": pad}
    if facts.bos_token_id is not None:
        special["bos_token"] = _tokenizer(facts.tokenizer_path).id_to_token(
            facts.bos_token_id)
    return special


def export_tokenizer(build: str, out: str | None = None, **options) -> ExportResult:
    """Write ``tokenizer.json`` (the build's), ``tokenizer_config.json`` and
    ``special_tokens_map.json`` into ``out`` (default ``BUILD/export-tokenizer``)."""
    opts = TokenizerOptions(**options)
    facts = load_facts(build)
    out = export_folder(facts.root, out, "export-tokenizer")
    guard = ExportGuard(out)
    guard.check([*FILES, REPORT])
    pad, pad_id = choose_pad(facts, opts)
    special = tokenizer_config(facts, pad)
    # The build frames documents itself (EOS appended, BOS per its template): trainers that
    # tokenize text (LLaMA-Factory appends the EOS string) must not add more.
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1 << 30,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces":
              False, **special}
    os.makedirs(out, exist_ok=True)
    tokenizer_json = fs.read_bytes(facts.tokenizer_path)
    files = [write_atomic(os.path.join(out, FILES[0]), tokenizer_json),
             write_atomic(os.path.join(out, FILES[1]), json.dumps(config, indent=2) + "\n"),
             write_atomic(os.path.join(out, FILES[2]), json.dumps(special, indent=2) + "\n")]
    report = {"framework": "tokenizer", "build": facts.root,
              "manifest_sha256": facts.manifest_sha256, "vocab_size": facts.vocab_size,
              "eos_token_id": facts.eos_token_id, "bos_token_id": facts.bos_token_id,
              "pad_token": pad, "pad_token_id": pad_id, "files": list(FILES)}
    files.append(write_report(guard, report, FILES))
    lines = [f"wrote {out} (tokenizer.json, tokenizer_config.json, special_tokens_map.json)",
             f"  eos {facts.eos_token!r} = {facts.eos_token_id}, pad {pad!r} = {pad_id} (never "
             "in the build, so every EOS label trains)"
             + (f", bos {special['bos_token']!r} = {facts.bos_token_id}"
                if "bos_token" in special else "")]
    return ExportResult(out, files, lines, report)
