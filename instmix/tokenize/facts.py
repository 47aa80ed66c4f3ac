"""The trainer's tokenizer: loading, BOS/EOS detection and the dtype of token files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenizers import Tokenizer

from instmix.config import TokenizerSpec
from instmix.errors import ConfigError
from instmix.io import fs
from instmix.io.hashing import sha256_file

log = logging.getLogger(__name__)

EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>")
BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>")
DTYPE_MAX = {"uint16": 0xFFFF, "uint32": 0xFFFFFFFF}


def tokenizer_json_path(path: str, where: str = "<dict>") -> str:
    """``path`` itself, or ``path/tokenizer.json`` for a Hugging Face tokenizer folder."""
    if os.path.isdir(path):
        candidate = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(candidate):
            raise ConfigError(where, "tokenizer.path", f"{path}: folder has no tokenizer.json")
        return candidate
    if not os.path.isfile(path):
        raise ConfigError(where, "tokenizer.path", f"{path}: file not found")
    return path


def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


@dataclass
class TokenizerInfo:
    """What a build records about the tokenizer (and what trainers must agree with)."""

    path: str
    sha256: str
    vocab_size: int
    eos_token_id: int
    bos_token_id: int | None
    add_bos: bool
    dtype: str
    eos_token: str = ""
    bos_token: str | None = None
    special_tokens: tuple[str, ...] = field(default=(), repr=False)
    rank_cache: str | None = field(default=None, repr=False, compare=False)  # the spec's
    _tokenizer: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokenizer": None}  # workers load their own when needed

    def reference(self) -> Tokenizer:
        """The reference tokenizer (Hugging Face ``tokenizers``), loaded once and shared,
        with special-token strings in text encoded as text."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_file(self.path)
        self._tokenizer.encode_special_tokens = True
        return self._tokenizer

    def manifest_dict(self, rel_path: str) -> dict:
        return {
            "path": rel_path,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "eos_token_id": self.eos_token_id,
            "bos_token_id": self.bos_token_id if self.add_bos else None,
            "eos_token": self.eos_token,
            "bos_token": self.bos_token if self.add_bos else None,
        }

    def cache_key(self) -> dict:
        return {"sha256": self.sha256, "eos": self.eos_token_id,
                "bos": self.bos_token_id if self.add_bos else None, "dtype": self.dtype}


def choose_dtype(vocab_size: int, requested: str = "auto", where: str = "<dict>") -> str:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    if requested == "auto":
        return "uint16" if vocab_size - 1 <= DTYPE_MAX["uint16"] else "uint32"
    if vocab_size - 1 > DTYPE_MAX[requested]:
        raise ConfigError(where, "dtype", f"the tokenizer has {vocab_size} ids; id "
                          f"{vocab_size - 1} does not fit {requested} (max "
                          f"{DTYPE_MAX[requested]}); use dtype: uint32 or auto")
    return requested


def _detect(tok, spec: TokenizerSpec, json_path: str, where: str) -> tuple[str, str | None]:
    """Return (eos_token, bos_token or None) by override, tokenizer_config.json, the
    post-processor template, then well-known names."""
    folder_cfg: dict = {}
    cfg_path = os.path.join(os.path.dirname(json_path), "tokenizer_config.json")
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            folder_cfg = json.load(f)
    vocab = _Vocab(tok)

    def check(name: str, key: str) -> str:
        if name not in vocab:
            raise ConfigError(where, f"tokenizer.{key}", f"{name!r} is not in the vocabulary of "
                              f"{json_path}")
        return name

    if spec.eos_token:
        eos = check(spec.eos_token, "eos_token")
    elif _token_content(folder_cfg.get("eos_token")) in vocab:
        eos = _token_content(folder_cfg["eos_token"])
    else:
        eos = next((n for n in EOS_NAMES if n in vocab), None)
        if eos is None:
            raise ConfigError(where, "tokenizer.eos_token", f"cannot tell the EOS token of "
                              f"{json_path}; name it (e.g. eos_token: '</s>')")
    if spec.bos_token:
        bos: str | None = check(spec.bos_token, "bos_token")
    elif "bos_token" in folder_cfg:
        bos = _token_content(folder_cfg.get("bos_token"))
        if folder_cfg.get("add_bos_token") is False:
            bos = None
    else:
        bos = _template_bos(tok) or next((n for n in BOS_NAMES if n in vocab), None)
    if bos is not None and (bos == eos or bos not in vocab):
        bos = None  # GPT-style tokenizers name EOS as BOS too: no separate BOS
    return eos, bos


class _Vocab:
    """``name in vocab`` for a loaded tokenizer, without building its whole vocabulary."""

    def __init__(self, tok):
        self.tok = tok

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and self.tok.token_to_id(name) is not None


def _template_bos(tok) -> str | None:
    """The special token a ``TemplateProcessing`` post-processor puts first, if any (from
    the loaded tokenizer's post-processor, not a second parse of the whole file)."""
    post = json.loads(tok.post_processor.__getstate__()) if tok.post_processor else {}
    procs = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for proc in procs:
        single = proc.get("single") if proc.get("type") == "TemplateProcessing" else None
        if single and "SpecialToken" in single[0]:
            return single[0]["SpecialToken"]["id"]
    return None


def load_tokenizer_info(spec: TokenizerSpec, dtype: str = "auto", where: str = "<dict>",
                        storage_options: Mapping | None = None) -> TokenizerInfo:
    """Read the tokenizer's facts; a URL is downloaded first (``tokenizer.json``, or a folder's
    ``tokenizer.json`` and ``tokenizer_config.json``)."""
    path = spec.path
    if fs.is_url(path):
        names = () if path.endswith(".json") else ("tokenizer.json", "tokenizer_config.json")
        try:
            path = fs.local_copy(path, names, storage_options)
        except FileNotFoundError:
            raise ConfigError(where, "tokenizer.path", f"{path}: not found") from None
    json_path = tokenizer_json_path(path, where)
    try:
        tok = Tokenizer.from_file(json_path)
    except Exception as e:  # tokenizers raises a plain Exception on a bad file
        raise ConfigError(where, "tokenizer.path", f"{json_path}: not a tokenizer.json "
                          f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    eos, bos = _detect(tok, spec, json_path, where)
    add_bos = (bos is not None) if spec.add_bos is None else spec.add_bos
    if add_bos and bos is None:
        raise ConfigError(where, "tokenizer.add_bos", f"{json_path} defines no BOS token; "
                          "name one with bos_token")
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    specials = tuple(t.content for t in tok.get_added_tokens_decoder().values() if t.special)
    return TokenizerInfo(
        path=json_path, sha256=sha256_file(json_path), vocab_size=vocab_size,
        eos_token_id=tok.token_to_id(eos), bos_token_id=None if bos is None else
        tok.token_to_id(bos), add_bos=add_bos, dtype=choose_dtype(vocab_size, dtype, where),
        eos_token=eos, bos_token=bos, special_tokens=specials, rank_cache=spec.rank_cache,
        _tokenizer=tok,
    )
