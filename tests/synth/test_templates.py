"""The template bank: determinism, exact answer spans, layouts at their documented
frequencies, multiple choice and chain of thought, no stray empty strings, no mutation."""

import copy
import re
from collections import Counter

import pytest

from instmix.synth.templates import bank, render_chain
from instmix.synth.templates.render import chain_rng, choose_layout, labels

PLAIN = [("Who built the bridge?", "The town council."), ("When?", "In 1901."),
         ("Why was it built?", "To reach the market across the river.")]
MC_Q = ("Which animal is on the mat?\nOptions:\n- a dog\n- a cat\n- a bird\n"
        "- not enough information")
COT_Q = "How many legs do two cats have?\nLet's think step by step."
COT_A = "A cat has four legs.\nTwo cats have twice as many.\nTherefore, the answer is 8."
CHAIN = [("The council built the bridge in 1901 so farmers could reach the market.", PLAIN),
         ("A cat sat on the mat all afternoon.", [(MC_Q, "a cat"), (COT_Q, COT_A)]),
         ("A text with no pairs at all.", [])]


def test_same_seed_and_chain_same_document_and_no_shared_state():
    a = render_chain(CHAIN, 3, "c1")
    render_chain(CHAIN, 9, "other")  # rendering something else in between changes nothing
    assert render_chain(CHAIN, 3, "c1") == a
    texts = {render_chain(CHAIN, s, "c1").text for s in range(40)}
    assert len(texts) > 30
    assert render_chain(CHAIN, 3, "c2").text != a.text


def test_inputs_are_not_modified():
    chain = [[c, [list(p) for p in ps]] for c, ps in CHAIN]
    before = copy.deepcopy(chain)
    for s in range(50):
        render_chain(chain, s, f"c{s}")
    assert chain == before


@pytest.mark.parametrize("seed", range(60))
def test_spans_are_exactly_the_answers(seed):
    r = render_chain(CHAIN, seed, "chain")
    answers = [r.text[a:b] for a, b in r.spans]
    assert len(answers) == 5
    assert answers[:3] == [a for _, a in PLAIN]  # plain answers verbatim, in order
    assert all(b <= c for (_, b), (c, _) in zip(r.spans, r.spans[1:]))
    cat_label = dict((o, lab) for lab, o in _options(r.text[:r.spans[3][0]]))["a cat"]
    assert "a cat" in answers[3] or cat_label.strip("().[]:") in answers[3]
    assert "four legs" in answers[4]


@pytest.mark.parametrize("seed", range(60))
def test_no_stray_empty_strings(seed):
    r = render_chain(CHAIN, seed, "chain")
    assert "\n\n\n" not in r.text
    assert r.text == r.text.strip()
    assert all(line == line.rstrip() for line in r.text.split("\n"))
    assert not re.search(r"\n[ \t]+\n", r.text)
    assert all(b > a for a, b in r.spans)
    for ctx, _ in CHAIN:
        assert r.text.count(ctx) == 1
    assert r.text.endswith("A text with no pairs at all.")


def test_layout_frequencies_match_the_documented_weights():
    counts = Counter()
    n = 6000
    for s in range(n):
        counts[choose_layout(chain_rng(s, f"chain-{s}"), 3)] += 1
    for name, weight in bank.LAYOUT_WEIGHTS.items():
        assert abs(counts[name] / n - weight) < 0.02, (name, counts[name] / n)
    # and every layout really renders, with its answers spanned exactly
    seen = Counter()
    for s in range(600):
        r = render_chain(CHAIN[:1], s, f"c{s}")
        seen[r.layouts[0]] += 1
        assert [r.text[a:b] for a, b in r.spans] == [a for _, a in PLAIN]
    assert set(seen) == set(bank.LAYOUT_WEIGHTS)


def test_layout_shapes():
    found = {}
    for s in range(2000):
        r = render_chain(CHAIN[:1], s, f"c{s}")
        found.setdefault(r.layouts[0], r.text)
        if len(found) == 6:
            break
    ctx = CHAIN[0][0]
    q0, q2 = PLAIN[0][0], PLAIN[2][0]
    assert found["classic"].index(ctx) < found["classic"].index(q0)
    assert found["inverted"].index(q0) < found["inverted"].index(ctx) < \
        found["inverted"].index(PLAIN[0][1])
    t = found["numbered"]
    assert t.index(ctx) < t.index(q0) < t.index(q2) < t.index(PLAIN[0][1])
    t = found["fewshot"]
    assert t.index(PLAIN[1][1]) < t.index(q2)  # earlier pairs answered before the last one
    speakers = {f"{a}: " for a, _ in bank.SPEAKERS}
    assert any(f"{sp}{q0}" in found["dialog"] for sp in speakers)
    assert any(found["next_turn"].startswith(sp) for sp in speakers)
    assert found["next_turn"].index(ctx) < found["next_turn"].index(q0)


def _options(text, spans=None):
    """(label, option) lines before the first answer."""
    text = text[:spans[0][0]] if spans else text
    return re.findall(r"^(\S+) (a dog|a cat|a bird|" + "|".join(
        map(re.escape, bank.UNANSWERABLE)) + r")$", text, re.M)


def test_multiple_choice_options_shuffled_and_answer_is_the_label():
    positions = set()
    for s in range(200):
        r = render_chain([("A cat sat on the mat.", [(MC_Q, "a cat")])], s, f"mc{s}")
        opts = _options(r.text, r.spans)
        assert len(opts) == 4, r.text
        shown = [o for _, o in opts]
        assert sorted(o for o in shown if o in ("a dog", "a cat", "a bird")) == \
            ["a bird", "a cat", "a dog"]
        assert sum(o in bank.UNANSWERABLE for o in shown) == 1  # unanswerable rephrased
        assert "not enough information" not in shown and "Options:\n-" not in r.text
        label = dict((o, lab) for lab, o in opts)["a cat"]
        positions.add(shown.index("a cat"))
        (a, b), = r.spans
        answer = r.text[a:b]
        assert answer in _forms(label, "a cat")
    assert len(positions) == 4


def _forms(label, option):
    bare = label.strip("().[]:")
    return {bare, f"{label} {option}", f"{option} ({bare})", f"The correct choice is {bare}."}


def test_unanswerable_answer_follows_its_option():
    q = "Is the dog happy?\nOptions:\n- yes\n- no\n- it is not possible to tell"
    for s in range(50):
        r = render_chain([("A dog.", [(q, "it is not possible to tell")])], s, f"u{s}")
        (a, b), = r.spans
        lines = re.findall(r"^(\S+) (.*)$", r.text[:a], re.M)
        (label, phrase), = [(lab, o) for lab, o in lines if o in bank.UNANSWERABLE]
        assert r.text[a:b] in _forms(label, phrase)


def test_chain_of_thought_rephrased_with_reasoning_kept():
    triggers, conclusions = set(), set()
    for s in range(100):
        r = render_chain([("Cats.", [(COT_Q, COT_A)])], s, f"cot{s}")
        assert "Let's think step by step." not in r.text
        assert "Therefore, the answer is" not in r.text
        trig = [t for t in bank.COT_TRIGGERS if t in r.text]
        assert len(trig) == 1
        triggers.add(trig[0])
        (a, b), = r.spans
        answer = r.text[a:b]
        assert answer.startswith("A cat has four legs.\nTwo cats have twice as many.\n")
        last = answer.split("\n")[-1]
        assert "8" in last and "8.." not in last
        conclusions.add(last)
    assert len(triggers) > 5 and len(conclusions) > 5


def test_entry_without_pairs_is_its_text():
    r = render_chain([("Only text here.", [])], 0, "x")
    assert (r.text, r.spans, r.layouts) == ("Only text here.", (), ("raw",))


def test_labels():
    assert labels("upper", 3) == ["A", "B", "C"]
    assert labels("roman", 4) == ["i", "ii", "iii", "iv"]
    assert labels("lower", 30)[-1] == "30"  # too many for letters: digits
