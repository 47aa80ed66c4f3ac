"""Batch encoding of documents with the trainer's tokenizer.

The reference is Hugging Face ``tokenizers`` with ``add_special_tokens=False`` and
special-token strings inside a document encoded as ordinary text, so a literal
``<|endoftext|>`` in raw text can never become a stray EOS. Non-special added tokens (such
as OLMo's PII placeholders and whitespace runs) keep their ids, as in the reference.

Backends: ``hf`` (the reference) and ``tiktoken`` (:mod:`instmix.tokenize.bpe_fast`, 2-6x faster,
byte-level BPE tokenizers only). ``auto`` picks ``tiktoken`` when it loads and matches the
reference on probe strings. During a run a sample of every batch (``check_rate``) is
re-encoded with the reference; a mismatch switches the rest of the run to the reference.
The benchmark (``bench/build.py``) checks identity on its whole corpus.
"""

from __future__ import annotations

import logging
import os
from itertools import chain

import numpy as np
from tokenizers import Tokenizer

from instmix.errors import InstmixError

from . import bpe_fast
from .facts import TokenizerInfo

log = logging.getLogger(__name__)

PROBES = (
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces   \n\n\ttabs\r\nCRLF  \n",
    "def f(x):\n    return {'a': [1, 2.5e-3, None]}  # code\n\t'refs/heads/main'\n",
    "Zahlen 1234567890, ½ ¼, naïve café, 中文文本, русский текст, العربية, 🙂🚀",
    "Cafe\u0301 decomposed vs café composed; ﬁ ligature; Ⅻ; ｆｕｌｌ ｗｉｄｔｈ",
    "URLs https://example.com/a?b=c&d=e and emails a.b@example.org, I'm, you're, it's",
    "\u200b zero width \ufeff bom \x00 nul \x7f del",
    "<|endoftext|> in text, <s> and </s> too, |||EMAIL_ADDRESS||| placeholder",
    "a" * 300 + " " + "ab" * 200 + " " * 40 + "x",
)


class Encoder:
    """``encode(texts) -> (ids uint32, lengths int64)``, without BOS/EOS. One per process."""

    def __init__(self, info: TokenizerInfo, backend: str = "auto", check_rate: float = 0.01,
                 threads: int | None = None):

        self.info = info
        self.ref = Tokenizer.from_file(info.path)
        self.ref.encode_special_tokens = True  # special-token strings in text are text
        self.check_stride = 0 if check_rate <= 0 else max(1, round(1 / check_rate))
        self.checked = 0
        self.fallbacks = 0
        self.fast = None
        if backend in ("auto", "tiktoken"):
            self.fast = self._load_fast(threads or os.cpu_count() or 1,
                                        required=backend == "tiktoken")
        self.backend = "tiktoken" if self.fast is not None else "hf"

    def _load_fast(self, threads: int, required: bool):
        try:
            fast = bpe_fast.load(self.info.path, threads)
            ids, lengths = fast.encode(list(PROBES))
            ref_ids, ref_len = self.encode_ref(list(PROBES))
            if not (np.array_equal(ids, ref_ids) and np.array_equal(lengths, ref_len)):
                raise bpe_fast.Unsupported("gives other ids than the reference on probes")
            return fast
        except (bpe_fast.Unsupported, ImportError) as e:
            if required:
                raise InstmixError(f"{self.info.path}: tiktoken backend unusable: {e}") from None
            log.info("tiktoken backend unusable for %s (%s); using tokenizers",
                     self.info.path, e)
            return None

    def encode_ref(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self.ref.encode_batch_fast(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        ids = np.fromiter(chain.from_iterable(e.ids for e in encs), dtype=np.uint32,
                          count=int(lengths.sum()))
        return ids, lengths

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.fast is None or not texts:
            return self.encode_ref(texts)
        ids, lengths = self.fast.encode(texts)
        if self.check_stride and not self._sample_ok(texts, ids, lengths):
            self.fallbacks += 1
            log.warning("the tiktoken backend disagreed with tokenizers on %s; using "
                        "tokenizers from now on", self.info.path)
            self.fast, self.backend = None, "hf"
            return self.encode_ref(texts)
        return ids, lengths

    def _sample_ok(self, texts: list[str], ids: np.ndarray, lengths: np.ndarray) -> bool:
        """Re-encode every ``check_stride``-th document of the run with the reference."""
        first = (-self.checked) % self.check_stride
        picks = list(range(first, len(texts), self.check_stride))
        self.checked += len(texts)
        if not picks:
            return True
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        ref_ids, ref_len = self.encode_ref([texts[i] for i in picks])
        ref_off = np.concatenate([[0], np.cumsum(ref_len)])
        return all(np.array_equal(ids[offsets[i]:offsets[i + 1]], ref_ids[ref_off[j]:ref_off[j + 1]])
                   for j, i in enumerate(picks))

    def decode(self, ids) -> str:
        return self.ref.decode([int(i) for i in ids], skip_special_tokens=False)
