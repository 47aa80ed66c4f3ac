"""Synthesizer output -> instruction-response pairs.

Rules (the published ones, plus the dedupe rule):

1. Split the output on ``</END>``. If the output does not end with ``</END>`` it was cut by
   ``max_new_tokens``: its last fragment is dropped (reason ``truncated``).
2. A fragment is a pair only if it splits into exactly two parts on ``<ANS>``
   (``no_answer_tag`` / ``extra_answer_tag``), the stripped question part starts with
   ``<QUE>`` (``no_question_tag``) and the stripped answer is non-empty (``empty_answer``).
   The question is the question part with ``<QUE>`` removed, stripped.
3. A pair whose lower-cased question repeats an earlier one is dropped; the first wins
   (``duplicate_question``).

Fragments holding only whitespace (such as the empty string after a final ``</END>``) are
not pairs and are not counted as failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

END_TAG = "</END>"
ANS_TAG = "<ANS>"
QUE_TAG = "<QUE>"

DROP_REASONS = ("truncated", "no_answer_tag", "extra_answer_tag", "no_question_tag",
                "empty_answer", "duplicate_question")


@dataclass(frozen=True)
class Parsed:
    """The pairs kept and the number of fragments dropped per reason."""

    pairs: tuple[tuple[str, str], ...]
    dropped: dict[str, int] = field(default_factory=dict)


def parse_output(output: str) -> Parsed:
    """Parse one generated output; see the module docstring for the rules."""
    fragments = output.split(END_TAG)
    dropped: dict[str, int] = {}
    if not output.endswith(END_TAG):
        last = fragments.pop()
        if last.strip():
            dropped["truncated"] = 1
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for frag in fragments:
        if not frag.strip():
            continue
        reason = None
        parts = frag.split(ANS_TAG)
        if len(parts) != 2:
            reason = "no_answer_tag" if len(parts) < 2 else "extra_answer_tag"
        else:
            q, a = parts[0].strip(), parts[1].strip()
            if not q.startswith(QUE_TAG):
                reason = "no_question_tag"
            elif not a:
                reason = "empty_answer"
            else:
                q = q.replace(QUE_TAG, "").strip()
                if q.lower() in seen:
                    reason = "duplicate_question"
                else:
                    seen.add(q.lower())
                    pairs.append((q, a))
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
    return Parsed(tuple(pairs), dropped)


def parse_pairs(output: str) -> list[tuple[str, str]]:
    """The ``(question, answer)`` pairs of a synthesizer output, in order."""
    return list(parse_output(output).pairs)
