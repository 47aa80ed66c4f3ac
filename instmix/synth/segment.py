"""Raw documents -> texts that fit the synthesizer with room for its answer.

A document whose context block fits ``max_model_len - max_new_tokens`` tokens (counted by
the synthesizer's tokenizer) is one text, unchanged. A longer one is cut into consecutive
segments at the last paragraph break, else line break, else sentence end, else space in the
second half of each window (a hard cut at a token boundary when there is none), each
segment stripped of surrounding whitespace and checked by encoding its real prompt.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from .prompt import PromptEncoder

_SENTENCE_END = re.compile(r"[.!?;:][\"')\]]*\s|[。！？；]")


@dataclass(frozen=True, slots=True)
class Text:
    """One text to synthesize for: ``id`` is ``{source_id}#{segment}``."""

    id: str
    source_id: str
    text: str


def best_break(text: str, lo: int, hi: int) -> int:
    """A cut position in ``(lo, hi]``, preferring the strongest break nearest ``hi``."""
    window = text[lo:hi]
    for sep in ("\n\n", "\n"):
        at = window.rfind(sep)
        if at >= 0:
            return lo + at + len(sep)
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends:
        return lo + ends[-1]
    at = max(window.rfind(" "), window.rfind("\t"))
    if at > 0:
        return lo + at + 1
    return hi


def split_text(text: str, encoder: PromptEncoder) -> list[tuple[str, list[int]]]:
    """Cut ``text`` into pieces whose prompts fit; returns ``(piece, context ids)``."""
    limit = encoder.limit
    ids, offsets = encoder.tok.encode_offsets(text)
    starts = [a for a, _ in offsets]
    cap = limit - encoder.overhead
    out: list[tuple[str, list[int]]] = []
    t = 0
    while t < len(ids):
        budget = cap
        while True:
            if len(ids) - t <= budget:
                end = len(text)
            else:
                hard = starts[t + budget]
                end = best_break(text, starts[t + budget // 2], hard)
                end = end if end > starts[t] else hard
            piece = text[starts[t]:end].strip()
            ctx = encoder.context_ids([piece])[0] if piece else []
            excess = 1 + len(ctx) - limit
            if excess <= 0:
                break
            budget -= excess + 4  # tokens merge differently at the edges; shrink and retry
            if budget < 1:
                raise ValueError(f"cannot fit any of the text at token {t} into {limit} tokens")
        if piece:
            out.append((piece, ctx))
        t = max(bisect_left(starts, end, lo=t), t + 1)
    return out


def segment_documents(docs: Sequence[tuple[str, str]], encoder: PromptEncoder
                      ) -> tuple[list[Text], dict[str, list[int]], int]:
    """``(source_id, text)`` documents -> texts, their context ids by text id, and the
    number of documents that were split."""
    texts: list[Text] = []
    ids: dict[str, list[int]] = {}
    split = 0
    whole = encoder.context_ids([t for _, t in docs])
    for (source_id, text), ctx in zip(docs, whole):
        if 1 + len(ctx) <= encoder.limit:
            pieces = [(text, ctx)]
        else:
            pieces = split_text(text, encoder)
            split += 1
        for k, (piece, piece_ids) in enumerate(pieces):
            t = Text(f"{source_id}#{k}", source_id, piece)
            texts.append(t)
            ids[t.id] = piece_ids
    return texts, ids, split
