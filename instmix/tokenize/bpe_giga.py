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

Faster still (0.15-0.2 s against 0.5-0.75 s for dolma2), :func:`load` takes the
tokenizer's cached rank table (:mod:`instmix.tokenize.ranks`) when the tokenizer has no
normalizer and its pre-tokenizer regex is one gigatoken implements itself
(:data:`SCHEMES`): gigatoken's tiktoken loader reads the table, and the non-special added
tokens are the only strings it is told to split out of text.

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
import logging
import re
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from . import ranks

log = logging.getLogger(__name__)

VALIDATED_VERSION = "0.10.0"
PER_TEXT_CHARS = 2048  # mean text length from which a serial batch is encoded text by text


Unsupported = ranks.Unsupported  # gigatoken missing, another version, or cannot load it

# Pre-tokenizer regexes (as Hugging Face writes them) -> the gigatoken scheme that splits
# text the same way.
SCHEMES = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
    r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "gpt4",  # cl100k (OLMo 2's dolma2)
}


class GigaBPE:
    """``encode(texts) -> (ids uint32, lengths int64)``; ``parallel`` uses gigatoken's own
    thread pool (never inside a forked worker: its pool does not survive ``fork``).

    ``backend``: a loaded ``BPETokenizer``; ``lut``: rank -> id when it gives ranks that
    are not the ids; ``source``: what it was loaded from (``tokenizer.json`` or
    ``rank table``).
    """

    def __init__(self, backend, parallel: bool, lut: np.ndarray | None = None,
                 source: str = "tokenizer.json"):
        self.backend = backend
        self._encode_batch = backend.encode_batch
        self._encode_one = backend.encode
        self.parallel = parallel
        self.lut = lut
        self.source = source

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
        return self._ids(ids), np.diff(offsets)

    def encode_each(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """One ``encode`` call per text, on this thread (no ``awkward`` import)."""
        parts = [self._encode_one(t) for t in texts]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        if not parts:
            return np.zeros(0, np.uint32), lengths
        return self._ids(np.concatenate(parts).astype(np.uint32, copy=False)), lengths

    def _ids(self, out: np.ndarray) -> np.ndarray:
        return out if self.lut is None else self.lut[out]


_KEY = re.compile(r'\s*("(?:[^"\\]|\\.)*")\s*:\s*', re.S)
_COMMA = re.compile(r"\s*,")
_decoder = json.JSONDecoder()


def _top_level(text: str, stop: str | None = None):
    """``(key, value, value start, value end)`` of the top-level entries of a JSON object
    ``text``, in order, up to (without decoding) key ``stop``."""
    at = len(text) - len(text.lstrip())
    if text[at:at + 1] != "{":
        raise Unsupported("tokenizer.json is not a JSON object")
    at += 1
    while (m := _KEY.match(text, at)) is not None:
        key = json.loads(m.group(1))
        if key == stop:
            return
        value, end = _decoder.raw_decode(text, m.end())
        yield key, value, m.end(), end
        if (comma := _COMMA.match(text, end)) is None:
            return
        at = comma.end()


def without_special_added(text: str) -> str:
    """``text`` (a ``tokenizer.json``) with the special entries of its top-level
    ``added_tokens`` removed; every other byte unchanged."""
    for key, value, start, end in _top_level(text):
        if key == "added_tokens":
            if not isinstance(value, list):
                raise Unsupported("added_tokens is not a list")
            kept = [t for t in value if not t.get("special")]
            return text[:start] + json.dumps(kept, ensure_ascii=False) + text[end:]
    return text  # no added_tokens: nothing to remove


def table_scheme(text: str) -> str | None:
    """The gigatoken scheme a rank table of this ``tokenizer.json`` would load with: its
    pre-tokenizer's, when it has no normalizer; read from the entries Hugging Face writes
    before the model (None when they come after it, or for any other shape)."""
    head = {key: value for key, value, _, _ in _top_level(text, stop="model")}
    if "pre_tokenizer" not in head or head.get("normalizer"):
        return None
    try:
        return SCHEMES.get(ranks.pattern_of(head["pre_tokenizer"]))
    except (Unsupported, AttributeError, TypeError):
        return None


def _dist_version() -> str | None:
    try:
        return version("gigatoken")
    except PackageNotFoundError:
        return None


def _rs():
    """gigatoken's Rust module, after checking the installed version."""
    try:
        import gigatoken  # lazy: loaded only for this backend; absent means the next one
        from gigatoken import gigatoken_rs
    except ImportError as e:
        raise Unsupported(f"gigatoken is not installed ({e})") from None
    found = getattr(gigatoken, "__version__", None) or _dist_version()
    if found != VALIDATED_VERSION:
        raise Unsupported(f"gigatoken {found} is not the validated {VALIDATED_VERSION}")
    return gigatoken_rs


def from_json(text: str, parallel: bool, model=None) -> GigaBPE:
    """From the ``tokenizer.json`` contents ``text``, its special added tokens removed.
    ``model``: the reference's model (its type, ``dropout`` and ``byte_fallback`` are
    checked), or None to read them from ``text``."""
    rs = _rs()
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
        backend = rs.load_hf_json(without_special_added(text))
    except Exception as e:  # gigatoken raises ValueError/RuntimeError on shapes it lacks
        raise Unsupported(f"gigatoken cannot load it ({str(e).splitlines()[0]})") from None
    if not isinstance(backend, rs.BPETokenizer):
        raise Unsupported("gigatoken loads it as a SentencePiece tokenizer")
    return GigaBPE(backend, parallel)


def from_table(table: ranks.RankTable, parallel: bool) -> GigaBPE:
    """From a cached rank table whose pre-tokenizer is one of gigatoken's own schemes;
    the non-special added tokens are given to it as the tokens it splits out of text."""
    rs = _rs()
    scheme = SCHEMES.get(table.pattern)
    if scheme is None or table.nfc or table.file is None:
        raise Unsupported("no gigatoken scheme for this pre-tokenizer, or not on disk")
    merged = len(table.lut) - len(table.plain)
    direct = bool(np.array_equal(table.lut[:merged], np.arange(merged)))
    split = {t: int(table.lut[r]) if direct else r for t, r in table.plain.items()}
    try:
        backend = rs.BPETokenizer.from_tiktoken(table.file, scheme, split)
    except BaseException as e:  # noqa: BLE001 - a Rust panic is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise Unsupported(f"gigatoken cannot load the rank table ({e})") from None
    return GigaBPE(backend, parallel, None if direct else table.lut, "rank table")


def load(path: str, parallel: bool, model=None, sha256: str | None = None,
         rank_cache: str | None = None) -> GigaBPE:
    """The backend of the ``tokenizer.json`` at ``path``: from its cached rank table
    (about 3x faster to load) when ``sha256`` and ``rank_cache`` are given and its
    pre-tokenizer is one gigatoken implements (:func:`table_scheme`), else from the file's
    text. A table is never built for a tokenizer that could not load from it."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if sha256 and rank_cache and table_scheme(text) is not None:
        try:
            return from_table(ranks.cached_table(path, sha256, rank_cache, need_file=True),
                              parallel)
        except ranks.Unsupported as e:
            log.info("gigatoken from %s's rank table: %s; loading the file", path, e)
    return from_json(text, parallel, model)
