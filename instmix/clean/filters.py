"""Filters for synthesized (question, answer) pairs, each with its default's source.

- ``grounded`` (0.2): share of the answer's content words that occur in its context,
  counting only words not already in the question (stop words left out). The measure is
  K-Precision, the lexical faithfulness score that agreed best with human judgement in
  Adlakha et al. 2023 ("Evaluating correctness and faithfulness of instruction-following
  models for question answering"); the literature gives no threshold: 0.2 is ours, set on
  the quickstart's 296 real pairs (2 fall below it) against the same answers paired with
  another passage's context (73% fall below it). An answer with no such words (a choice
  among options given in the question, "yes", "no") passes.
- ``question_words`` ([4, 150]): Self-Instruct (Wang et al. 2023) drops instructions of
  3 or fewer or more than 150 words.
- ``answer_words`` ([1, none]): at least one word; no upper bound in the literature.
- ``repeated_ngrams`` (on): Gopher's repetition rule (Rae et al. 2021, table A1) on
  answers of 50 words or more (Gopher's shortest document): the characters inside
  duplicated word n-grams, as a share of all word characters, must not exceed 0.15, 0.14,
  0.13, 0.12, 0.11, 0.10 for n = 5..10. Gopher's top-n-gram rules (n = 2..4) are not applied.
- ``duplicate_questions`` (0.7): a question whose ROUGE-L F1 with an earlier kept question
  of the same chain exceeds 0.7 is a duplicate (Self-Instruct's novelty rule).

Words are those of :mod:`.text`. Reasons: ``ungrounded``, ``question_length``,
``answer_length``, ``repeated_ngrams``, ``duplicate_question``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from instmix.config import PairFilters

from .text import words

GOPHER_MIN_WORDS = 50
GOPHER_DUP = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
STOP = frozenset(b"""a an the and or but if of to in on at by for with from as into onto
about over under than then so that this these those it its is are was were be been being am
do does did done has have had having i you he she we they me him her us them my your his our
their what which who whom whose when where why how not no yes true false there here can could
will would shall should may might must also just only very more most such any all some each
""".split())


def _within(n: int, bounds) -> bool:
    lo, hi = bounds
    return n >= lo and (hi is None or n <= hi)


def grounding(answer: Sequence[bytes], question: set[bytes], context: set[bytes]) -> float:
    novel = [w for w in answer if w not in STOP and w not in question]
    if not novel:
        return 1.0
    return sum(w in context for w in novel) / len(novel)


def repeated(ws: Sequence[bytes]) -> bool:
    """Gopher's duplicate n-gram rule (datatrove's counting: a repeat skips its n words)."""
    total = sum(map(len, ws))
    if len(ws) < GOPHER_MIN_WORDS:
        return False
    for n, limit in GOPHER_DUP:
        seen: set[tuple[bytes, ...]] = set()
        dup, i = 0, 0
        while i <= len(ws) - n:
            gram = tuple(ws[i:i + n])
            if gram in seen:
                dup += sum(map(len, gram))
                i += n
            else:
                seen.add(gram)
                i += 1
        if dup / total > limit:
            return True
    return False


def rouge_l(a: Sequence[bytes], b: Sequence[bytes]) -> float:
    """ROUGE-L F1 of two word sequences (longest common subsequence)."""
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return 2 * prev[-1] / (len(a) + len(b))


def _could_exceed(a, b, limit: float) -> bool:
    """Cheap upper bound of ROUGE-L F1 (common words as a multiset)."""
    common = sum((Counter(a) & Counter(b)).values())
    return 2 * common / (len(a) + len(b)) > limit


def pair_reasons(pairs: Sequence[tuple[str, str, str]], spec: PairFilters) -> list[str | None]:
    """``(context, question, answer)`` of a chain's pairs in order -> the reason each is
    filtered, or None."""
    out: list[str | None] = []
    kept_questions: list[list[bytes]] = []
    context_words: dict[int, set[bytes]] = {}
    for context, question, answer in pairs:
        q, a = words(question), words(answer)
        reason = None
        if spec.question_words and not _within(len(q), spec.question_words):
            reason = "question_length"
        elif spec.answer_words and not _within(len(a), spec.answer_words):
            reason = "answer_length"
        elif spec.repeated_ngrams and repeated(a):
            reason = "repeated_ngrams"
        elif spec.grounded is not None:
            src = context_words.get(id(context))
            if src is None:
                src = context_words[id(context)] = set(words(context))
            if grounding(a, set(q), src) < spec.grounded:
                reason = "ungrounded"
        if reason is None and spec.duplicate_questions is not None:
            limit = spec.duplicate_questions
            if any(_could_exceed(q, k, limit) and rouge_l(q, k) > limit for k in kept_questions):
                reason = "duplicate_question"
        if reason is None:
            kept_questions.append(q)
        out.append(reason)
    return out
