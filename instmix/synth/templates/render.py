"""Render a chain of (text, pairs) entries into one training document.

Each entry with pairs gets a layout (``classic``, ``inverted``, ``dialog``, ``numbered``,
``fewshot``, ``next_turn``) and a style (prefixes, option labels, reasoning phrasings),
drawn from a ``random.Random`` seeded by sha256 of (seed, chain id): every choice is a pure
function of those two. An entry without pairs is its text alone. Entries and blocks are
joined by a blank line; nothing empty is ever emitted and no input is modified.

The result carries the character spans of every rendered answer, and the cuts that let the
clean stage leave a pair out without re-tokenizing: each pair's own text, the entry
headings that go with its last pair, and the separators between them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from instmix.sources.kinds import Cut
from instmix.synth.pairkinds import split_options, split_reasoning, strip_cot_trigger

from . import bank

GLUE = "glue"
# (text, is it answer text, owner): owner None is fixed text, (lo, hi) the text of the
# entry's pairs lo..hi-1 (kept while one of them is), GLUE a separator (see Cut)
Piece = tuple[str, bool, object]
Block = list[Piece]
SEP = "\n\n"


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: tuple[tuple[int, int], ...]
    layouts: tuple[str, ...]
    cuts: tuple[Cut, ...] = ()  # what goes with which pair (numbered in chain order)


@dataclass(frozen=True)
class Style:
    """Per-entry choices for multiple-choice and chain-of-thought pairs."""

    label_set: str
    label_format: str
    option_header: str
    answer_form: str
    unanswerable: str
    trigger: str
    conclusion: str


def chain_rng(seed: int, chain_id: str) -> random.Random:
    digest = hashlib.sha256(f"instmix-templates/1\0{seed}\0{chain_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def pick_style(rng: random.Random) -> Style:
    return Style(rng.choice(bank.LABEL_SETS), rng.choice(bank.LABEL_FORMATS),
                 rng.choice(bank.OPTION_HEADERS), rng.choice(bank.ANSWER_FORMS),
                 rng.choice(bank.UNANSWERABLE), rng.choice(bank.COT_TRIGGERS),
                 rng.choice(bank.COT_CONCLUSIONS))


_ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii")


def labels(label_set: str, n: int) -> list[str]:
    """``n`` bare labels of a set; sets too short for ``n`` fall back to digits."""
    if label_set == "upper" and n <= 26:
        return [chr(65 + i) for i in range(n)]
    if label_set == "lower" and n <= 26:
        return [chr(97 + i) for i in range(n)]
    if label_set == "roman" and n <= len(_ROMAN):
        return list(_ROMAN[:n])
    return [str(i + 1) for i in range(n)]


def _norm(s: str) -> str:
    return s.strip().rstrip(".").strip().casefold()


def _unanswerable(option: str) -> bool:
    low = option.casefold()
    return any(m in low for m in bank.UNANSWERABLE_MARKERS)


def surface(question: str, answer: str, style: Style, rng: random.Random) -> tuple[str, str]:
    """The question and answer as shown: options shuffled and labelled (an answer that is
    an option becomes its label), reasoning phrased with the style's words."""
    stem = strip_cot_trigger(question)
    cot = stem is not None
    base = stem if cot else question
    choice = split_options(base)
    to_label = None
    if choice is not None:
        order = list(range(len(choice.options)))
        rng.shuffle(order)
        shown = [choice.options[i] for i in order]
        shown = [style.unanswerable if _unanswerable(o) else o for o in shown]
        bare = labels(style.label_set, len(shown))
        marks = [style.label_format.format(x) for x in bare]
        lines = [f"{m} {o}" for m, o in zip(marks, shown)]
        base = "\n".join(p for p in (choice.stem, style.option_header, *lines, choice.tail) if p)
        where = {_norm(choice.options[i]): k for k, i in enumerate(order)}

        def to_label(x: str) -> str:
            k = where.get(_norm(x))
            if k is None:
                return style.unanswerable if _unanswerable(x) else x
            return style.answer_form.format(bare=bare[k], label=marks[k], option=shown[k])

    if not cot:
        return base, to_label(answer) if to_label else answer
    r = split_reasoning(answer)
    final = to_label(r.final) if (to_label and r.final) else r.final
    text = r.reasoning
    if final:
        tmpl = style.conclusion
        x = final.rstrip(".") if tmpl.endswith("{x}.") else final
        text = "\n".join(p for p in (r.reasoning, tmpl.format(x=x)) if p)
    return f"{base}\n{style.trigger}", text or answer


def _text_block(rng: random.Random, context: str, opener_p: float = 0.5) -> Block:
    if rng.random() < opener_p:
        return [(rng.choice(bank.OPENERS) + "\n", False, None), (context, False, None)]
    return [(context, False, None)]


def _qa_pieces(qp: str, ap: str, joiner: str, q: str, a: str, i: int) -> Block:
    joiner = "\n" if "\n" in q else joiner  # a multi-line question ends its line
    return [(f"{qp}{q}{joiner}{ap}", False, (i, i + 1)), (a, True, (i, i + 1))]


def _joined(items: Sequence[Block], sep: str) -> Block:
    """Items with a separator between them (a GLUE piece)."""
    out: Block = []
    for i, item in enumerate(items):
        if i:
            out.append((sep, False, GLUE))
        out.extend(item)
    return out


def _head(text: str, owner: tuple[int, int]) -> Block:
    return [(text, False, owner)]


def _qa_style(rng: random.Random) -> tuple[str, str, str, str]:
    qp, ap = rng.choice(bank.QA_STYLES)
    joiner = " " if qp and rng.random() < 0.2 else "\n"
    pair_sep = "\n\n" if rng.random() < 0.7 else "\n"
    return qp, ap, joiner, pair_sep


def classic(rng, context, pairs) -> list[Block]:
    blocks = [_text_block(rng, context)]
    if rng.random() < 0.6:
        blocks.append(_head(rng.choice(bank.LEAD_INS), (0, len(pairs))))
    qp, ap, joiner, sep = _qa_style(rng)
    blocks.append(_joined([_qa_pieces(qp, ap, joiner, q, a, i)
                           for i, (q, a) in enumerate(pairs)], sep))
    return blocks


def _numbered(rng, pairs, fmt_q: str, fmt_a: str) -> tuple[Block, Block]:
    qs = _joined([[(fmt_q.format(n=i + 1) + q, False, (i, i + 1))]
                  for i, (q, _) in enumerate(pairs)], "\n")
    ans = _joined([[(fmt_a.format(n=i + 1), False, (i, i + 1)), (a, True, (i, i + 1))]
                   for i, (_, a) in enumerate(pairs)], "\n")
    return qs, ans


def numbered(rng, context, pairs) -> list[Block]:
    fq, fa = rng.choice(bank.NUMBERINGS)
    qs, ans = _numbered(rng, pairs, fq, fa)
    every = (0, len(pairs))
    return [_text_block(rng, context), _head(rng.choice(bank.QUESTION_HEADERS), every), qs,
            _head(rng.choice(bank.ANSWER_HEADERS), every), ans]


def inverted(rng, context, pairs) -> list[Block]:
    fq, fa = rng.choice(bank.NUMBERINGS)
    qs, ans = _numbered(rng, pairs, fq, fa)
    every = (0, len(pairs))
    return [_head(rng.choice(bank.INVERTED_INTROS), every), qs,
            [(rng.choice(bank.INVERTED_BRIDGES) + "\n", False, every), (context, False, None)],
            _head(rng.choice(bank.ANSWER_HEADERS), every), ans]


def dialog(rng, context, pairs) -> list[Block]:
    asker, answerer = rng.choice(bank.SPEAKERS)
    blocks = [_text_block(rng, context)]
    if rng.random() < 0.5:
        blocks.append(_head(rng.choice(bank.DIALOG_INTROS), (0, len(pairs))))
    blocks.append(_joined([[(f"{asker}: {q}\n{answerer}: ", False, (i, i + 1)),
                            (a, True, (i, i + 1))] for i, (q, a) in enumerate(pairs)], "\n"))
    return blocks


def next_turn(rng, context, pairs) -> list[Block]:
    asker, answerer = rng.choice(bank.SPEAKERS)
    intro = rng.choice(bank.NEXT_TURN_INTROS)
    (q0, a0), rest = pairs[0], pairs[1:]
    turns: Block = [(f"{asker}: {intro}\n", False, (0, len(pairs))), (context, False, None),
                    (f"\n\n{q0}\n{answerer}: ", False, (0, 1)), (a0, True, (0, 1))]
    for i, (q, a) in enumerate(rest, 1):
        turns += [(f"\n{asker}: {q}\n{answerer}: ", False, (i, i + 1)), (a, True, (i, i + 1))]
    return [turns]


def fewshot(rng, context, pairs) -> list[Block]:
    if len(pairs) < 2:
        return classic(rng, context, pairs)
    qp, ap, joiner, sep = _qa_style(rng)
    last = len(pairs) - 1
    examples = _joined([_qa_pieces(qp, ap, joiner, q, a, i)
                        for i, (q, a) in enumerate(pairs[:-1])], sep)
    q, a = pairs[-1]
    return [_text_block(rng, context), _head(rng.choice(bank.FEWSHOT_INTROS), (0, last)),
            examples, _head(rng.choice(bank.FEWSHOT_LASTS), (last, last + 1)),
            _qa_pieces(qp, ap, joiner, q, a, last)]


LAYOUTS = {"classic": classic, "inverted": inverted, "dialog": dialog, "numbered": numbered,
           "fewshot": fewshot, "next_turn": next_turn}


def choose_layout(rng: random.Random, n_pairs: int) -> str:
    names = list(bank.LAYOUT_WEIGHTS)
    name = rng.choices(names, weights=[bank.LAYOUT_WEIGHTS[n] for n in names])[0]
    return "classic" if name == "fewshot" and n_pairs < 2 else name


def render_chain(entries: Sequence[tuple[str, Sequence[tuple[str, str]]]], seed: int,
                 chain_id: str) -> Rendered:
    """One document from a chain's ``(text, [(question, answer), ...])`` entries, oldest
    first."""
    rng = chain_rng(seed, chain_id)
    blocks: list[Block] = []
    layouts = []
    first = 0  # number of the entry's first pair in the chain
    for context, pairs in entries:
        if not pairs:
            blocks.append([(context, False, None)])
            layouts.append("raw")
            continue
        style = pick_style(rng)
        layout = choose_layout(rng, len(pairs))
        shown = [surface(q, a, style, rng) for q, a in pairs]
        for block in LAYOUTS[layout](rng, context, shown):
            blocks.append([(t, ans, (first + o[0], first + o[1]) if isinstance(o, tuple) else o)
                           for t, ans, o in block])
        layouts.append(layout)
        first += len(pairs)
    pieces = _joined(blocks, SEP)
    parts, spans, cuts, pos = [], [], [], 0
    for text, is_answer, owner in pieces:
        if not text:
            continue
        if is_answer:
            spans.append((pos, pos + len(text)))
        if owner is not None:
            tag = None if owner == GLUE else owner
            if cuts and cuts[-1][1] == pos and cuts[-1][2] == tag:
                cuts[-1] = (cuts[-1][0], pos + len(text), tag)
            else:
                cuts.append((pos, pos + len(text), tag))
        parts.append(text)
        pos += len(text)
    return Rendered("".join(parts), tuple(spans), tuple(layouts),
                    tuple(Cut(a, b, t) for a, b, t in cuts))
