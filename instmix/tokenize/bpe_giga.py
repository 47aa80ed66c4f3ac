"""The gigatoken backend: a Rust byte-level BPE encoder loaded from the same ``tokenizer.json``.

gigatoken (PyPI ``gigatoken``, validated at 0.10.0) reads a Hugging Face ``tokenizer.json``
and gives the reference's ids for the byte-level BPE tokenizers instmix builds with, 5-15x
faster than ``tokenizers``. One difference is removed here: gigatoken splits special-token
strings out of text and gives them their special ids (a literal ``<|endoftext|>`` would
become EOS), while instmix encodes them as text. The tokenizer is therefore loaded from a
copy of the file whose ``added_tokens`` keep only the non-special entries (OLMo's PII
placeholders and whitespace runs), so special-token strings go through the pre-tokenizer
and the merges like any other text, as in the reference with ``encode_special_tokens``.

Exactness is not assumed: :class:`~instmix.tokenize.encoder.Encoder` checks probe strings
at load time and a sample of every cache unit against the reference.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import numpy as np

VALIDATED_VERSION = "0.10.0"


class Unsupported(Exception):
    """gigatoken is missing, another version, or cannot load this tokenizer."""


class GigaBPE:
    """``encode(texts) -> (ids uint32, lengths int64)``; ``parallel`` uses gigatoken's own
    thread pool (never inside a forked worker: its pool does not survive ``fork``)."""

    def __init__(self, spec: dict, parallel: bool):
        try:
            import gigatoken  # lazy: loaded only for this backend; absent means the next one
            from gigatoken.gigatoken_rs import BPETokenizer
        except ImportError as e:
            raise Unsupported(f"gigatoken is not installed ({e})") from None
        version = getattr(gigatoken, "__version__", None) or _dist_version()
        if version != VALIDATED_VERSION:
            raise Unsupported(f"gigatoken {version} is not the validated {VALIDATED_VERSION}")
        model = spec.get("model") or {}
        if model.get("type") != "BPE" or model.get("byte_fallback") or model.get("dropout"):
            raise Unsupported("not a byte-level BPE model without byte fallback")
        plain = dict(spec, added_tokens=[t for t in spec.get("added_tokens", [])
                                         if not t.get("special")])
        try:
            tok = gigatoken.Tokenizer.from_json(json.dumps(plain))
        except Exception as e:  # gigatoken raises ValueError/RuntimeError on shapes it lacks
            raise Unsupported(f"gigatoken cannot load it ({str(e).splitlines()[0]})") from None
        if not isinstance(tok.backend, BPETokenizer):
            raise Unsupported("gigatoken loads it as a SentencePiece tokenizer")
        self._encode_batch = tok.backend.encode_batch
        self.parallel = parallel

    def encode(self, texts: list[str], parallel: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        if not texts:
            return np.zeros(0, np.uint32), np.zeros(0, np.int64)
        par = self.parallel if parallel is None else parallel
        layout = self._encode_batch(texts, parallel=par).layout
        offsets = np.asarray(layout.offsets.data, dtype=np.int64)
        ids = np.asarray(layout.content.data, dtype=np.uint32)
        if offsets[0] != 0 or offsets[-1] != ids.size:
            ids = ids[offsets[0]:offsets[-1]]
        return ids, np.diff(offsets)


def _dist_version() -> str | None:
    try:
        return version("gigatoken")
    except PackageNotFoundError:
        return None


def load(path: str, parallel: bool) -> GigaBPE:
    with open(path, encoding="utf-8") as f:
        return GigaBPE(json.load(f), parallel)
