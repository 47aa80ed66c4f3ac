"""Documents -> token ids with BOS/EOS, and the per-token loss mask of a source.

``loss`` per source: ``all`` (every token trains; no mask is stored), ``none`` (no token
trains; the tokens still count toward ratios) or ``responses`` (only the answer spans that
the kind recorded in ``Document.spans``, plus the closing EOS).

For ``responses`` the text is cut at span boundaries and each piece is encoded on its own,
so no token straddles a boundary and the mask is exact after tokenization. A boundary is
moved back over the whitespace just before it (``"A: Paris"`` is cut as ``"A:" | " Paris"``),
which is where byte-level pre-tokenizers split anyway, so the ids match those of the whole
text in the usual case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from instmix.sources.kinds import Document

from .encoder import Encoder
from .facts import TokenizerInfo


@dataclass
class Encoded:
    """A batch of documents: flat ``tokens`` with BOS/EOS, ``offsets`` (n+1) and ``mask``
    (flat bool, True = loss; None when every token trains)."""

    tokens: np.ndarray
    offsets: np.ndarray
    mask: np.ndarray | None
    # (k, 5) int64 per Cut of the documents: document, token start, token end (into
    # ``tokens``), parts lo, hi (-1, -1 for a separator); None when no document has cuts
    cuts: np.ndarray | None = None

    def select(self, keep: np.ndarray) -> Encoded:
        """The documents where ``keep`` (one bool per document) is True."""
        lengths = np.diff(self.offsets)
        token_keep = np.repeat(keep, lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
        cuts = None
        if self.cuts is not None:
            new_doc = np.cumsum(keep) - 1
            rows = self.cuts[keep[self.cuts[:, 0]]].copy()
            shift = offsets[new_doc[rows[:, 0]]] - self.offsets[rows[:, 0]]
            rows[:, 0] = new_doc[rows[:, 0]]
            rows[:, 1:3] += shift[:, None]
            cuts = rows
        return Encoded(self.tokens[token_keep], offsets,
                       None if self.mask is None else self.mask[token_keep], cuts)

    def split(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        o = self.offsets
        return [(self.tokens[o[i]:o[i + 1]],
                 None if self.mask is None else self.mask[o[i]:o[i + 1]])
                for i in range(len(o) - 1)]


def _cut_points(text: str, spans) -> list[tuple[int, int, bool]]:
    """Pieces ``(start, end, trains)`` covering ``text``; span starts move back over
    one run of whitespace."""
    pieces, pos = [], 0
    for a, b in sorted(spans):
        a = max(a, pos)
        while a > pos and text[a - 1].isspace():
            a -= 1
        if a > pos:
            pieces.append((pos, a, False))
        if b > a:
            pieces.append((a, b, True))
        pos = max(pos, b)
    if pos < len(text):
        pieces.append((pos, len(text), False))
    return pieces


def add_specials(ids: np.ndarray, lengths: np.ndarray, info: TokenizerInfo,
                 body_mask: np.ndarray | None, eos_trains: bool) -> Encoded:
    """Lay out ``[BOS] ids EOS`` per document (and the mask: BOS never trains).

    One boolean pass places the ids (no per-token index arrays): ``body`` is False at
    the BOS and EOS positions only.
    """
    extra = 1 + int(info.add_bos)
    full = lengths + extra
    ends = np.cumsum(full)
    starts = ends - full
    out = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.uint32)
    body = np.ones(out.size, dtype=np.bool_)
    body[ends - 1] = False
    if info.add_bos:
        body[starts] = False
    out[body] = ids
    if info.add_bos:
        out[starts] = info.bos_token_id
    out[ends - 1] = info.eos_token_id
    mask = None
    if body_mask is not None:
        mask = np.zeros(out.size, dtype=np.bool_)
        mask[body] = body_mask
        mask[ends - 1] = eos_trains
    return Encoded(out, np.concatenate([[0], ends]).astype(np.int64), mask)


def _split_at(pieces: list[tuple[int, int, bool]], bounds: Sequence[int]
              ) -> list[tuple[int, int, bool]]:
    """``pieces`` cut further at every position in ``bounds``."""
    if not bounds:
        return pieces
    out = []
    marks = sorted(set(bounds))
    k = 0
    for a, b, t in pieces:
        while k < len(marks) and marks[k] <= a:
            k += 1
        start = a
        while k < len(marks) and marks[k] < b:
            out.append((start, marks[k], t))
            start = marks[k]
            k += 1
        out.append((start, b, t))
    return out


def inner_eos(enc: Encoded, info: TokenizerInfo) -> np.ndarray:
    """Indices of documents holding the EOS id anywhere but at their last token."""
    at = np.flatnonzero(enc.tokens == info.eos_token_id)
    doc = np.searchsorted(enc.offsets, at, side="right") - 1  # sorted, as ``at`` is
    doc = doc[at != enc.offsets[doc + 1] - 1]
    return doc[np.concatenate(([True], doc[1:] != doc[:-1]))] if doc.size else doc


def encode_documents(docs: Sequence[Document], encoder: Encoder, info: TokenizerInfo,
                     loss: str = "all", strict: bool = False) -> Encoded:
    """Frame and encode a batch. Documents with cuts are encoded piece by piece at the
    cuts' ends (like answers under ``loss: responses``), so each cut is a token range.
    ``strict``: a sampled backend mismatch raises (see :meth:`Encoder.encode`)."""
    texts = [d.text for d in docs]
    with_cuts = any(d.cuts for d in docs)
    if loss != "responses" and not with_cuts:
        ids, lengths = encoder.encode(texts, strict=strict)
        mask = None if loss == "all" else np.zeros(ids.size, dtype=np.bool_)
        return add_specials(ids, lengths, info, mask, eos_trains=loss == "all")
    pieces, trains, owner, starts = [], [], [], []
    for i, doc in enumerate(docs):
        if loss == "responses":
            spans = doc.spans if doc.spans is not None else [(0, len(doc.text))]
            cut = _cut_points(doc.text, spans)
        else:
            cut = [(0, len(doc.text), loss == "all")] if doc.text else []
        bounds = [x for c in doc.cuts for x in (c.start, c.end)]
        for a, b, t in _split_at(cut, bounds):
            pieces.append(doc.text[a:b])
            trains.append(t)
            owner.append(i)
            starts.append(a)
    ids, piece_len = encoder.encode(pieces, strict=strict)
    owners = np.asarray(owner, dtype=np.int64)
    lengths = np.bincount(owners, weights=piece_len, minlength=len(docs)).astype(np.int64)
    body_mask = None
    if loss != "all":
        body_mask = np.repeat(np.asarray(trains, dtype=np.bool_), piece_len)
    enc = add_specials(ids, lengths, info, body_mask, eos_trains=loss != "none")
    if with_cuts:
        enc.cuts = _cut_tokens(docs, enc, info, owners, np.asarray(starts), piece_len)
    return enc


def _cut_tokens(docs, enc: Encoded, info: TokenizerInfo, owners, starts, piece_len
                ) -> np.ndarray:
    """Token ranges of every cut (its ends are piece starts, or the document's end)."""
    rows = []
    piece_tok = np.cumsum(piece_len) - piece_len  # token start of each piece, in ids
    doc_first = np.searchsorted(owners, np.arange(len(docs)))
    doc_tok0 = np.cumsum(np.bincount(owners, weights=piece_len, minlength=len(docs)))
    for i, doc in enumerate(docs):
        if not doc.cuts:
            continue
        lo, hi = doc_first[i], (doc_first[i + 1] if i + 1 < len(docs) else len(owners))
        where = {int(starts[k]): int(piece_tok[k] - (doc_tok0[i - 1] if i else 0))
                 for k in range(lo, hi)}
        end = int(doc_tok0[i] - (doc_tok0[i - 1] if i else 0))
        base = int(enc.offsets[i]) + int(info.add_bos)
        for c in doc.cuts:
            a = where[c.start]
            b = where.get(c.end, end) if c.end < len(doc.text) else end
            plo, phi = c.parts if c.parts is not None else (-1, -1)
            rows.append((i, base + a, base + b, plo, phi))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 5)
