"""Batch encoding of documents with the trainer's tokenizer.

The reference is Hugging Face ``tokenizers`` with ``add_special_tokens=False`` and
special-token strings inside a document encoded as ordinary text, so a literal
``<|endoftext|>`` in raw text can never become a stray EOS. Non-special added tokens (such
as OLMo's PII placeholders and whitespace runs) keep their ids, as in the reference.

Backends: ``hf`` (the reference), ``gigatoken`` (:mod:`instmix.tokenize.bpe_giga`, Rust,
5-15x faster) and ``tiktoken`` (:mod:`instmix.tokenize.bpe_fast`, 2-6x faster), the fast
two for byte-level BPE tokenizers only. ``auto`` takes the first of gigatoken, tiktoken
that loads and gives the reference's ids on the probe strings, else the reference.

During a build every ``check_rate``-th document of each cache unit (counted from the
unit's first document, so the choice depends only on the unit) is re-encoded with the
reference. :meth:`Encoder.encode` with ``strict=True`` raises :class:`BackendMismatch` on a
difference, and the caller re-encodes the whole unit with :meth:`Encoder.reference_only`:
no id from a backend that disagreed is ever cached. Without ``strict`` (streaming) the
batch is re-encoded and the rest of the run uses the reference.
"""

from __future__ import annotations

import copy
import logging
import os
from itertools import chain

import numpy as np

from instmix.errors import InstmixError

from . import bpe_fast, bpe_giga
from .facts import TokenizerInfo

log = logging.getLogger(__name__)

FAST_BACKENDS = ("gigatoken", "tiktoken")

PROBES = (
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces   \n\n\ttabs\r\nCRLF  \n",
    "def f(x):\n    return {'a': [1, 2.5e-3, None]}  # code\n\t'refs/heads/main'\n",
    "Zahlen 1234567890, ½ ¼, naïve café, 中文文本, русский текст, العربية, 🙂🚀",
    "Cafe\u0301 decomposed vs café composed; ﬁ ligature; Ⅻ; ｆｕｌｌ ｗｉｄｔｈ",
    "URLs https://example.com/a?b=c&d=e and emails a.b@example.org, I'm, you're, it's",
    "\u200b zero width \ufeff bom \x00 nul \x7f del",
    "<|endoftext|> in text, <s> and </s> too, |||EMAIL_ADDRESS||| placeholder",
    "<|endoftext|><|endoftext|>x<|padding|><|im_start|>user<|pad|></s><s>",
    "a" * 300 + " " + "ab" * 200 + " " * 40 + "x",
)


class BackendMismatch(Exception):
    """A fast backend gave other ids than the reference on a sampled document."""


def _probes(ref) -> list[str]:
    """The fixed probes plus every added token string of this tokenizer (special or not,
    up to 256) inside text."""
    added = [t.content for t in ref.get_added_tokens_decoder().values()][:256]
    return list(PROBES) + [f"x{t} {t}y\n{t}{t}" for t in added]


class Encoder:
    """``encode(texts) -> (ids uint32, lengths int64)``, without BOS/EOS. One per process.

    ``threads`` > 1 lets the fast backend use its own thread pool; use 1 in a process that
    will fork workers (thread pools do not survive ``fork``).
    """

    def __init__(self, info: TokenizerInfo, backend: str = "auto", check_rate: float = 0.002,
                 threads: int | None = None):
        self.info = info
        self.ref = info.reference()
        self.check_stride = 0 if check_rate <= 0 else max(1, round(1 / check_rate))
        self.checked = 0
        self.fallbacks = 0
        self.fast = None
        self.backend = "hf"
        threads = threads or os.cpu_count() or 1
        names = FAST_BACKENDS if backend == "auto" else (backend,) if backend != "hf" else ()
        for name in names:
            self.fast = self._load_fast(name, threads, required=backend != "auto")
            if self.fast is not None:
                self.backend = name
                break

    def _load_fast(self, name: str, threads: int, required: bool):
        try:
            if name == "gigatoken":
                fast = bpe_giga.load(self.info.path, threads > 1, self.ref.model,
                                     self.info.sha256, self.info.rank_cache)
                probe = fast.encode_each  # on this thread, without importing awkward
            else:
                fast = bpe_fast.load(self.info.path, self.info.sha256, threads,
                                     self.info.rank_cache)
                probe = fast.encode
            probes = _probes(self.ref)
            ids, lengths = probe(probes)
            ref_ids, ref_len = self._encode_ref_serial(probes)
            if not (np.array_equal(ids, ref_ids) and np.array_equal(lengths, ref_len)):
                raise bpe_fast.Unsupported("gives other ids than the reference on probes")
            return fast
        except (bpe_fast.Unsupported, bpe_giga.Unsupported, ImportError) as e:
            if required:
                raise InstmixError(f"{self.info.path}: {name} backend unusable: {e}") from None
            log.info("%s backend unusable for %s (%s)", name, self.info.path, e)
            return None

    def _encode_ref_serial(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The reference one text at a time: leaves its thread pool unused, so a process
        that forks workers afterwards keeps their reference parallel-capable and quiet."""
        encs = [self.ref.encode(t, add_special_tokens=False) for t in texts]
        return _flatten([e.ids for e in encs])

    def encode_ref(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return _flatten([e.ids for e in self.ref.encode_batch_fast(texts,
                                                                    add_special_tokens=False)])

    def start_unit(self) -> None:
        """Restart the sample count: the sampled documents depend only on the unit."""
        self.checked = 0

    def reference_only(self) -> Encoder:
        """This encoder without its fast backend (shares the loaded reference)."""
        clone = copy.copy(self)
        clone.fast, clone.backend = None, "hf"
        return clone

    def encode(self, texts: list[str], strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if self.fast is None or not texts:
            return self.encode_ref(texts)
        ids, lengths = self.fast.encode(texts)
        if self.check_stride and not self._sample_ok(texts, ids, lengths):
            self.fallbacks += 1
            log.warning("the %s backend disagreed with tokenizers on %s", self.backend,
                        self.info.path)
            if strict:
                raise BackendMismatch(self.backend)
            self.fast, self.backend = None, "hf"
            return self.encode_ref(texts)
        return ids, lengths

    def _sample_ok(self, texts: list[str], ids: np.ndarray, lengths: np.ndarray) -> bool:
        """Re-encode every ``check_stride``-th document since :meth:`start_unit`."""
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


def _flatten(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    ids = np.fromiter(chain.from_iterable(lists), dtype=np.uint32, count=int(lengths.sum()))
    return ids, lengths
