"""The documented parse rules, the dedupe rule, drop reasons and pair kinds."""

from instmix.synth import parse_pairs
from instmix.synth.pairkinds import pair_kind, split_options, split_reasoning
from instmix.synth.parse import parse_output


def test_plain_pairs():
    out = "<QUE> Who? <ANS> Ann. </END>\n\n<QUE> When? <ANS> Today </END>"
    assert parse_pairs(out) == [("Who?", "Ann."), ("When?", "Today")]
    assert parse_output(out).dropped == {}


def test_truncated_last_pair_dropped():
    out = "<QUE> Who? <ANS> Ann. </END>\n\n<QUE> Where? <ANS> In the gar"
    p = parse_output(out)
    assert p.pairs == (("Who?", "Ann."),)
    assert p.dropped == {"truncated": 1}


def test_truncated_even_when_fragment_looks_complete():
    # without a final </END> the output was cut: the last fragment never counts
    p = parse_output("<QUE> Who? <ANS> Ann. </END>\n\n<QUE> Why? <ANS> Because")
    assert p.pairs == (("Who?", "Ann."),)


def test_missing_tags():
    out = ("Who? <ANS> Ann. </END>"            # no <QUE>
           "<QUE> Where? In town. </END>"      # no <ANS>
           "<QUE> A <ANS> b <ANS> c </END>"    # two <ANS>
           "<QUE> Fine? <ANS> Yes. </END>")
    p = parse_output(out)
    assert p.pairs == (("Fine?", "Yes."),)
    assert p.dropped == {"no_question_tag": 1, "no_answer_tag": 1, "extra_answer_tag": 1}


def test_empty_answer():
    p = parse_output("<QUE> Anything? <ANS>   </END><QUE> Ok? <ANS> ok </END>")
    assert p.pairs == (("Ok?", "ok"),)
    assert p.dropped == {"empty_answer": 1}


def test_duplicate_question_first_wins_case_insensitive():
    out = "<QUE> What is X? <ANS> one </END><QUE> what is x? <ANS> two </END>"
    p = parse_output(out)
    assert p.pairs == (("What is X?", "one"),)
    assert p.dropped == {"duplicate_question": 1}


def test_no_pairs_at_all():
    assert parse_pairs("") == []
    assert parse_pairs("just chatter") == []
    assert parse_output("just chatter").dropped == {"truncated": 1}


def test_options_question_kept_whole():
    q = "Is the sky green?\nOptions:\n- yes\n- no"
    pairs = parse_pairs(f"<QUE> {q} <ANS> no </END>")
    assert pairs == [(q, "no")]
    assert pair_kind(*pairs[0]) == "multiple_choice"
    c = split_options(q)
    assert c.stem == "Is the sky green?" and c.options == ("yes", "no") and c.tail == ""


def test_chain_of_thought():
    q = "How many legs do two cats have?\nLet's think step by step."
    a = "A cat has four legs.\nTwo cats have 8.\nTherefore, the answer is 8"
    pairs = parse_pairs(f"<QUE> {q} <ANS> {a} </END>")
    assert pairs == [(q, a)]
    assert pair_kind(q, a) == "chain_of_thought"
    r = split_reasoning(a)
    assert r.reasoning == "A cat has four legs.\nTwo cats have 8." and r.final == "8"


def test_plain_kind_and_single_option_is_not_multiple_choice():
    assert pair_kind("Who?", "Ann") == "qa"
    assert pair_kind("Pick\nOptions:\n- only", "only") == "qa"
