"""The prompt format, byte for byte, and its token ids (exactly one BOS per block)."""

from instmix.synth import build_prompt

DEMO1 = ("First text.", [("Q1?", "A1."), ("Q2?", "A2.")])
DEMO2 = ("Second text.", [("Only question?", "Only answer.")])


def test_zero_demos():
    assert build_prompt("Hello world.") == "<s> <CON> Hello world. </CON>\n\n"


def test_one_demo():
    assert build_prompt("Hello world.", [DEMO1]) == (
        "<s> <CON> First text. </CON>\n\n"
        "<QUE> Q1? <ANS> A1. </END>\n\n<QUE> Q2? <ANS> A2. </END></s>"
        "<s> <CON> Hello world. </CON>\n\n")


def test_two_demos_oldest_first():
    assert build_prompt("Hello world.", [DEMO1, DEMO2]) == (
        "<s> <CON> First text. </CON>\n\n"
        "<QUE> Q1? <ANS> A1. </END>\n\n<QUE> Q2? <ANS> A2. </END></s>"
        "<s> <CON> Second text. </CON>\n\n"
        "<QUE> Only question? <ANS> Only answer. </END></s>"
        "<s> <CON> Hello world. </CON>\n\n")


def test_demos_not_modified():
    demos = [("a", [("q", "r")])]
    build_prompt("x", demos)
    assert demos == [("a", [("q", "r")])]


def test_ids_have_one_bos_per_block(encoder):
    tok = encoder.tok
    for demos in ([], [DEMO1], [DEMO1, DEMO2]):
        ids = encoder.prompt_ids("Hello world.", demos)
        assert ids[0] == tok.bos_id and ids[1] != tok.bos_id
        assert ids.count(tok.bos_id) == len(demos) + 1
        assert ids.count(tok.eos_id) == len(demos)
        # the ids spell exactly the documented text
        assert tok.decode(ids, skip_special_tokens=False) == build_prompt("Hello world.", demos)


def test_marker_strings_in_raw_text_stay_text(encoder):
    tok = encoder.tok
    text = "A tag <s> and </s> inside the text."
    ids = encoder.prompt_ids(text)
    assert ids.count(tok.bos_id) == 1 and tok.eos_id not in ids
    assert tok.decode(ids, skip_special_tokens=False) == build_prompt(text)
