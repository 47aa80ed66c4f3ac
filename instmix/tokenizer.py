"""The trainer's tokenizer: loading, BOS/EOS detection, dtype choice and fast batch encoding.

Reference behaviour is Hugging Face ``tokenizers`` with ``add_special_tokens=False`` and
special-token strings inside a document encoded as ordinary text (so a literal
``<|endoftext|>`` in raw text can never become a stray EOS). Non-special added tokens (such
as OLMo's PII placeholders) keep their ids, as in the reference.

The ``tokie`` backend is 15-25x faster on the same files; it is used only after it matches
the reference on probe strings, documents holding special-token strings always go through
the reference, and a sample of every batch (``check_rate``) is re-encoded with the
reference. A mismatch switches the rest of the run to the reference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from .config import TokenizerSpec
from .errors import ConfigError, InstmixError

log = logging.getLogger(__name__)

EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>")
BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>")
DTYPE_MAX = {"uint16": 0xFFFF, "uint32": 0xFFFFFFFF}

PROBES = (
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces   \n\n\ttabs\r\nCRLF",
    "def f(x):\n    return {'a': [1, 2.5e-3, None]}  # code\n",
    "Zahlen 1234567890, ½ ¼, naïve café, 中文文本, русский текст, العربية, 🙂🚀",
    "URLs https://example.com/a?b=c&d=e and emails a.b@example.org",
    "\u200b zero width \ufeff bom \x00 nul \x7f del",
    "a" * 300 + " " + "ab" * 200,
)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    vocab = tok.get_vocab(with_added_tokens=True)

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
        bos = _template_bos(json_path) or next((n for n in BOS_NAMES if n in vocab), None)
    if bos is not None and (bos == eos or bos not in vocab):
        bos = None  # GPT-style tokenizers name EOS as BOS too: no separate BOS
    return eos, bos


def _template_bos(json_path: str) -> str | None:
    with open(json_path, encoding="utf-8") as f:
        post = json.load(f).get("post_processor") or {}
    procs = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for proc in procs:
        single = proc.get("single") if proc.get("type") == "TemplateProcessing" else None
        if single and "SpecialToken" in single[0]:
            return single[0]["SpecialToken"]["id"]
    return None


def load_tokenizer_info(spec: TokenizerSpec, dtype: str = "auto", where: str = "<dict>"
                        ) -> TokenizerInfo:
    from tokenizers import Tokenizer

    json_path = tokenizer_json_path(spec.path, where)
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
        eos_token=eos, bos_token=bos, special_tokens=specials,
    )


class Encoder:
    """Batch encoder: ``encode(texts) -> (ids uint32, lengths int64)`` with no BOS/EOS.

    One instance per process; not shared across processes.
    """

    def __init__(self, info: TokenizerInfo, backend: str = "auto", check_rate: float = 0.01):
        from tokenizers import Tokenizer

        self.info = info
        self.ref = Tokenizer.from_file(info.path)
        self.ref.encode_special_tokens = True  # special-token strings in text are text
        self.check_stride = 0 if check_rate <= 0 else max(1, round(1 / check_rate))
        self.checked = 0
        self.fallbacks = 0
        self.fast = None
        if backend in ("auto", "tokie"):
            self.fast = self._load_tokie(required=backend == "tokie")
        self.backend = "tokie" if self.fast is not None else "hf"

    def _load_tokie(self, required: bool):
        try:
            import tokie

            fast = tokie.Tokenizer.from_json(self.info.path)
            for text in PROBES:
                got = fast.encode(text, add_special_tokens=False).ids
                if list(got) != self.ref.encode(text, add_special_tokens=False).ids:
                    raise InstmixError(f"tokie gives other ids than tokenizers for {text!r}")
            return fast
        except Exception as e:
            if required:
                raise InstmixError(f"{self.info.path}: tokie backend unusable: {e}") from None
            log.info("tokie unusable for %s (%s); using tokenizers", self.info.path, e)
            return None

    def _has_special(self, text: str) -> bool:
        return any(s in text for s in self.info.special_tokens)

    def encode_ref(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self.ref.encode_batch_fast(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        ids = np.fromiter(chain.from_iterable(e.ids for e in encs), dtype=np.uint32,
                          count=int(lengths.sum()))
        return ids, lengths

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.fast is None or not texts:
            return self.encode_ref(texts)
        special = [i for i, t in enumerate(texts) if self._has_special(t)]
        ids, lengths = self.fast.encode_batch_flat(texts, add_special_tokens=False)
        lengths = lengths.astype(np.int64)
        if special:
            ids, lengths = self._patch(texts, ids, lengths, special)
        if self.check_stride and not self._sample_ok(texts, ids, lengths):
            self.fallbacks += 1
            log.warning("tokie disagreed with tokenizers on %s; using tokenizers from now on",
                        self.info.path)
            self.fast, self.backend = None, "hf"
            return self.encode_ref(texts)
        return ids, lengths

    def _patch(self, texts, ids, lengths, special):
        """Re-encode documents that hold special-token strings with the reference."""
        ref_ids, ref_len = self.encode_ref([texts[i] for i in special])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        ref_off = np.concatenate([[0], np.cumsum(ref_len)])
        parts, prev = [], 0
        for j, i in enumerate(special):
            parts.append(ids[offsets[prev]:offsets[i]])
            parts.append(ref_ids[ref_off[j]:ref_off[j + 1]])
            prev = i + 1
        parts.append(ids[offsets[prev]:])
        lengths = lengths.copy()
        lengths[special] = ref_len
        return np.concatenate(parts), lengths

    def _sample_ok(self, texts, ids, lengths) -> bool:
        n = len(texts)
        first = (-self.checked) % self.check_stride
        picks = list(range(first, n, self.check_stride))
        self.checked += n
        if not picks:
            return True
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        ref_ids, ref_len = self.encode_ref([texts[i] for i in picks])
        ref_off = np.concatenate([[0], np.cumsum(ref_len)])
        for j, i in enumerate(picks):
            if not np.array_equal(ids[offsets[i]:offsets[i + 1]], ref_ids[ref_off[j]:ref_off[j + 1]]):
                return False
        return True

    def decode(self, ids) -> str:
        return self.ref.decode([int(i) for i in ids], skip_special_tokens=False)
