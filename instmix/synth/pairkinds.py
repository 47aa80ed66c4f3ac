"""Pair kinds the synthesizer writes, recognised from their text.

- ``multiple_choice``: the question holds ``\\nOptions:\\n- a\\n- b ...`` (two or more
  options); the answer is usually one of the options.
- ``chain_of_thought``: the question ends with ``\\nLet's think step by step.``; the answer
  holds reasoning, then ``\\nTherefore, the answer is X``.
- ``qa``: anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

OPTIONS_HEAD = "\nOptions:\n"
COT_TRIGGER = "\nLet's think step by step."
COT_CONCLUSION = "\nTherefore, the answer is"

KINDS = ("qa", "multiple_choice", "chain_of_thought")


@dataclass(frozen=True)
class Choice:
    """A question split into its stem, its options and any text after the options."""

    stem: str
    options: tuple[str, ...]
    tail: str


@dataclass(frozen=True)
class Reasoning:
    """A chain-of-thought answer: the reasoning and the final answer (either may be '')."""

    reasoning: str
    final: str


def split_options(question: str) -> Choice | None:
    """The options of a multiple-choice question, or None."""
    at = question.find(OPTIONS_HEAD)
    if at < 0:
        return None
    lines = question[at + len(OPTIONS_HEAD):].split("\n")
    options = []
    for line in lines:
        if not line.startswith("- "):
            break
        options.append(line[2:].strip())
    if len(options) < 2 or not all(options):
        return None
    tail = "\n".join(lines[len(options):]).strip()
    return Choice(question[:at].strip(), tuple(options), tail)


def strip_cot_trigger(question: str) -> str | None:
    """The question without its step-by-step trigger, or None when it has none."""
    q = question.rstrip()
    if not q.endswith(COT_TRIGGER):
        return None
    return q[: -len(COT_TRIGGER)].rstrip()


def split_reasoning(answer: str) -> Reasoning:
    """Split at the last ``Therefore, the answer is``; no marker: all reasoning."""
    at = answer.rfind(COT_CONCLUSION)
    if at < 0:
        return Reasoning(answer.strip(), "")
    final = answer[at + len(COT_CONCLUSION):].strip()
    return Reasoning(answer[:at].strip(), final)


def pair_kind(question: str, answer: str) -> str:
    """``chain_of_thought``, ``multiple_choice`` or ``qa`` (reasoning wins over options)."""
    if strip_cot_trigger(question) is not None:
        return "chain_of_thought"
    if split_options(question) is not None:
        return "multiple_choice"
    return "qa"
