"""The gigatoken backend: a Rust byte-level BPE encoder loaded from the same ``tokenizer.json``.

gigatoken (PyPI ``gigatoken``, validated at 0.10.0) reads a Hugging Face ``tokenizer.json``
and gives the reference's ids for the byte-level BPE tokenizers instmix builds with, 5-15x
faster than ``tokenizers``. One difference is removed here: gigatoken splits special-token
strings out of text and gives them their special ids (a literal ``<|endoftext|>`` would
become EOS), while instmix encodes them as text. The tokenizer is therefore loaded from a
copy of the file whose ``added_tokens`` keep only the non-special entries (OLMo's PII
placeholders and whitespace runs), so special-token strings go through the pre-tokenizer
and the merges like any other text, as in the reference with ``encode_special_tokens``.
The copy is the file's own text with only the top-level ``added_tokens`` array replaced
(found by scanning the top-level keys, which Hugging Face writes before the vocabulary),
so loading does not parse and re-serialise the whole vocabulary.

Two encoding paths give the same ids (one Rust encoder): ``encode_batch`` (one call, an
``awkward`` array; the package imports ``awkward`` on its first call, 0.4 s) and one
``encode`` call per text (a numpy array each). Batches of long texts encoded without the
thread pool take the second, which costs the same there and never imports ``awkward``;
short texts take the first, whose per-call cost is spread over many texts.

Exactness is not assumed: :class:`~instmix.tokenize.encoder.Encoder` checks probe strings
at load time and a sample of every cache unit against the reference.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import PackageNotFoundError, version

import numpy as np

VALIDATED_VERSION = "0.10.0"
PER_TEXT_CHARS = 2048  # mean text length from which a serial batch is encoded text by text


class Unsupported(Exception):
    """gigatoken is missing, another version, or cannot load this tokenizer."""


class GigaBPE:
    """``encode(texts) -> (ids uint32, lengths int64)``; ``parallel`` uses gigatoken's own
    thread pool (never inside a forked worker: its pool does not survive ``fork``).

    ``text``: the ``tokenizer.json`` contents; ``model``: the reference's model (its type,
    ``dropout`` and ``byte_fallback`` are checked), or None to read them from ``text``.
    """

    def __init__(self, text: str, parallel: bool, model=None):
        try:
            import gigatoken  # lazy: loaded only for this backend; absent means the next one
            from gigatoken.gigatoken_rs import BPETokenizer, load_hf_json
        except ImportError as e:
            raise Unsupported(f"gigatoken is not installed ({e})") from None
        version = getattr(gigatoken, "__version__", None) or _dist_version()
        if version != VALIDATED_VERSION:
            raise Unsupported(f"gigatoken {version} is not the validated {VALIDATED_VERSION}")
        if model is None:
            m = json.loads(text).get("model") or {}
            kind, fallback, dropout = m.get("type"), m.get("byte_fallback"), m.get("dropout")
        else:
            kind = type(model).__name__
            fallback, dropout = getattr(model, "byte_fallback", None), getattr(model, "dropout",
                                                                               None)
        if kind != "BPE" or fallback or dropout:
            raise Unsupported("not a byte-level BPE model without byte fallback")
        try:
            backend = load_hf_json(without_special_added(text))
        except Exception as e:  # gigatoken raises ValueError/RuntimeError on shapes it lacks
            raise Unsupported(f"gigatoken cannot load it ({str(e).splitlines()[0]})") from None
        if not isinstance(backend, BPETokenizer):
            raise Unsupported("gigatoken loads it as a SentencePiece tokenizer")
        self._encode_batch = backend.encode_batch
        self._encode_one = backend.encode
        self.parallel = parallel

    def encode(self, texts: list[str], parallel: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        if not texts:
            return np.zeros(0, np.uint32), np.zeros(0, np.int64)
        par = self.parallel if parallel is None else parallel
        if not par and sum(map(len, texts)) >= PER_TEXT_CHARS * len(texts):
            return self.encode_each(texts)
        layout = self._encode_batch(texts, parallel=par).layout
        offsets = np.asarray(layout.offsets.data, dtype=np.int64)
        ids = np.asarray(layout.content.data, dtype=np.uint32)
        if offsets[0] != 0 or offsets[-1] != ids.size:
            ids = ids[offsets[0]:offsets[-1]]
        return ids, np.diff(offsets)

    def encode_each(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """One ``encode`` call per text, on this thread (no ``awkward`` import)."""
        parts = [self._encode_one(t) for t in texts]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        if not parts:
            return np.zeros(0, np.uint32), lengths
        return np.concatenate(parts).astype(np.uint32, copy=False), lengths


_KEY = re.compile(r'\s*("(?:[^"\\]|\\.)*")\s*:\s*', re.S)
_COMMA = re.compile(r"\s*,")
_decoder = json.JSONDecoder()


def without_special_added(text: str) -> str:
    """``text`` (a ``tokenizer.json``) with the special entries of its top-level
    ``added_tokens`` removed; every other byte unchanged."""
    at = len(text) - len(text.lstrip())
    if text[at:at + 1] != "{":
        raise Unsupported("tokenizer.json is not a JSON object")
    at += 1
    while True:
        m = _KEY.match(text, at)
        if m is None:
            return text  # no added_tokens: nothing to remove
        key = json.loads(m.group(1))
        value, end = _decoder.raw_decode(text, m.end())
        if key == "added_tokens":
            if not isinstance(value, list):
                raise Unsupported("added_tokens is not a list")
            kept = [t for t in value if not t.get("special")]
            return text[:m.end()] + json.dumps(kept, ensure_ascii=False) + text[end:]
        comma = _COMMA.match(text, end)
        if comma is None:
            return text
        at = comma.end()


def _dist_version() -> str | None:
    try:
        return version("gigatoken")
    except PackageNotFoundError:
        return None


def load(path: str, parallel: bool, model=None) -> GigaBPE:
    with open(path, encoding="utf-8") as f:
        return GigaBPE(f.read(), parallel, model)
