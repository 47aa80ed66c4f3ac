"""M-round chaining through the real scheduler, with a scripted engine standing in for
the model (its output is a known function of the prompt)."""

import math

import pytest

from instmix.errors import InstmixError
from instmix.synth import build_prompt, parse_pairs
from instmix.synth.block import BlockEnd, BlockInput, Part, Settings, make_encoder
from instmix.synth.config import SynthesizerConfig
from instmix.synth.engines.base import Request, Result, run_batches
from instmix.synth.schedule import Scheduler

from . import synth_scripted
from .synth_helpers import sample_texts
from .synth_scripted import ScriptedEngine, script


def run_block(tokdir, texts, rounds, *, batch_size=4, per_part=4, options=None,
              max_model_len=1024, done=None, schedule="continuous"):
    synth = SynthesizerConfig(engine="synth.synth_scripted:ScriptedEngine", model="scripted",
                              tokenizer=tokdir, max_model_len=max_model_len,
                              max_new_tokens=64, batch_size=batch_size,
                              options=options or {})
    encoder = make_encoder(synth)
    engine = ScriptedEngine(synth, encoder.tok)
    docs = [(f"s/d:{i}", t) for i, t in enumerate(texts, 1)]
    synth_scripted.CALLS.clear()
    synth_scripted.LENGTHS.clear()
    settings = Settings(synth, rounds, per_part, schedule=schedule)
    items = list(Scheduler(settings, encoder, engine).run(iter([BlockInput(0, docs,
                                                                           done or {})])))
    assert isinstance(items[-1], BlockEnd)
    parts = [p for p in items if isinstance(p, Part)]
    return parts, {e.id: e for p in parts for e in p.entries}


@pytest.mark.parametrize("m,n", [(2, 1), (3, 1), (3, 2), (3, 4), (3, 7), (2, 9), (3, 10)])
def test_reference_failing_cases_and_chain_layout(tiny_tokenizer, m, n):
    texts = sample_texts(n)
    _, entries = run_block(tiny_tokenizer, texts, m)
    assert len(entries) == n  # every text once, none lost, none twice
    size = math.ceil(n / m)
    by_text = {f"s/d:{i + 1}#0": i for i in range(n)}
    for eid, e in entries.items():
        i = by_text[eid]
        r, j = divmod(i, size)
        assert e.round == r
        assert e.chain_id == f"s/d:{j + 1}#0"  # chain j holds texts j, B+j, 2B+j, ...
        assert e.shot == r and e.status == "ok"
        assert [(q, a) for q, a, _ in e.pairs] == parse_pairs(script(e.context))


def test_prompts_carry_the_chain_as_demonstrations(tiny_tokenizer):
    texts = sample_texts(6)
    _, entries = run_block(tiny_tokenizer, texts, 3)
    prompts = {p for call in synth_scripted.CALLS for p in call}
    chains = {}
    for e in sorted(entries.values(), key=lambda e: e.round):
        demos = [(d.context, [(q, a) for q, a, _ in d.pairs]) for d in chains.get(e.chain_id, [])]
        assert build_prompt(e.context, demos) in prompts
        chains.setdefault(e.chain_id, []).append(e)
    assert sorted(len(c) for c in chains.values()) == [3, 3]


def test_no_pairs_starts_a_fresh_chain(tiny_tokenizer):
    texts = sample_texts(4)
    texts[1] = "Silent " + texts[1]
    _, entries = run_block(tiny_tokenizer, texts, 2, options={"silent_on": "Silent"})
    assert entries["s/d:2#0"].status == "no_pairs"
    assert entries["s/d:2#0"].dropped == {"truncated": 1}
    later = entries["s/d:4#0"]  # slot 1 in round 1: its chain had no pairs
    assert later.chain_id == "s/d:4#0" and later.shot == 0
    assert entries["s/d:3#0"].chain_id == "s/d:1#0" and entries["s/d:3#0"].shot == 1


def test_demos_too_long_start_a_fresh_chain(tiny_tokenizer):
    long = "Long " + "the river runs down to the sea and back again " * 9
    texts = [long, "Short one.", long, "Short two."]
    _, entries = run_block(tiny_tokenizer, texts, 2, max_model_len=300)
    assert entries["s/d:1#0"].prompt_tokens <= 300 - 64
    assert entries["s/d:3#0"].shot == 0 and entries["s/d:3#0"].chain_id == "s/d:3#0"
    assert entries["s/d:4#0"].shot == 1 and entries["s/d:4#0"].chain_id == "s/d:2#0"


def test_failing_prompt_is_isolated(tiny_tokenizer):
    texts = sample_texts(8)
    texts[2] = "Poison " + texts[2]
    _, entries = run_block(tiny_tokenizer, texts, 2, batch_size=8,
                           options={"fail_on": "Poison"})
    bad = entries["s/d:3#0"]
    assert bad.status == "failed" and "Poison" in bad.error and bad.pairs == ()
    assert all(e.status == "ok" for k, e in entries.items() if k != "s/d:3#0")
    # the text after it in the same slot starts fresh
    assert entries["s/d:7#0"].chain_id == "s/d:7#0"


def test_results_matched_by_id_not_position(tiny_tokenizer):
    texts = sample_texts(8)
    _, entries = run_block(tiny_tokenizer, texts, 2, options={"reverse": True})
    for e in entries.values():
        assert e.pairs[0][1] == e.context.split()[0]


def test_parts_hold_positions_in_order(tiny_tokenizer):
    texts = sample_texts(10)
    parts, entries = run_block(tiny_tokenizer, texts, 1, batch_size=3, per_part=6)
    assert sorted(p.name for p in parts) == ["part-000000-r0-0000.jsonl.zst",
                                             "part-000000-r0-0001.jsonl.zst"]
    by_name = {p.name: p for p in parts}
    assert [e.id for e in by_name["part-000000-r0-0000.jsonl.zst"].entries] == [
        f"s/d:{i}#0" for i in range(1, 7)]
    assert [e.id for e in by_name["part-000000-r0-0001.jsonl.zst"].entries] == [
        f"s/d:{i}#0" for i in range(7, 11)]
    assert max(len(c) for c in synth_scripted.CALLS) <= 3  # batch_size prompts in flight


@pytest.mark.parametrize("schedule", ["continuous", "barrier"])
def test_schedules_make_the_same_parts(tiny_tokenizer, schedule):
    texts = sample_texts(13)
    texts[4] = "Silent " + texts[4]
    ref, _ = run_block(tiny_tokenizer, texts, 3, batch_size=1, options={"silent_on": "Silent"})
    parts, _ = run_block(tiny_tokenizer, texts, 3, batch_size=5, schedule=schedule,
                         options={"silent_on": "Silent", "reverse": True})
    assert {p.name: p.entries for p in parts} == {p.name: p.entries for p in ref}


def test_next_round_starts_before_the_round_ends(tiny_tokenizer):
    texts = sample_texts(12)
    run_block(tiny_tokenizer, texts, 2, batch_size=2)
    rounds_seen = ["<s> <CON>" in p[3:] or p.count("<CON>") > 1
                   for call in synth_scripted.CALLS for p in call]
    first_continued = rounds_seen.index(True)
    assert first_continued < 6  # a chain went on while round 0 still had prompts to run
    assert not all(rounds_seen[first_continued:])


def test_done_parts_are_reused_not_regenerated(tiny_tokenizer):
    texts = sample_texts(6)
    parts, entries = run_block(tiny_tokenizer, texts, 2, batch_size=2, per_part=2)
    parts.sort(key=lambda p: p.name)
    done = {p.name: list(p.entries) for p in parts[:2]}
    again, entries2 = run_block(tiny_tokenizer, texts, 2, batch_size=2, per_part=2, done=done)
    assert sorted(p.name for p in again) == [p.name for p in parts[2:]]
    assert {**{e.id: e for es in done.values() for e in es}, **entries2} == entries


def test_done_part_with_other_texts_is_an_error(tiny_tokenizer):
    texts = sample_texts(6)
    parts, _ = run_block(tiny_tokenizer, texts, 2, batch_size=2, per_part=2)
    parts.sort(key=lambda p: p.name)
    wrong = {parts[0].name: list(parts[1].entries)}
    with pytest.raises(InstmixError, match="other texts"):
        run_block(tiny_tokenizer, texts, 2, batch_size=2, per_part=2, done=wrong)


class _Recorder:
    def __init__(self):
        self.calls = []

    def generate(self, requests):
        self.calls.append([r.id for r in requests])
        return [Result(r.id, "<QUE> q <ANS> a </END>", 5) for r in requests]


def test_over_long_prompt_never_reaches_the_engine():
    eng = _Recorder()
    reqs = [Request("a", [1] * 10), Request("b", [1] * 11), Request("c", [1] * 3)]
    res = run_batches(eng, [reqs], limit=10)
    assert eng.calls == [["a", "c"]]
    assert res["b"].error.startswith("prompt of 11 tokens") and res["a"].error is None


class _Picky(_Recorder):
    def generate(self, requests):
        self.calls.append([r.id for r in requests])
        if any(r.id == "bad" for r in requests):
            raise RuntimeError("bad prompt in the batch")
        return [Result(r.id, "<QUE> q <ANS> a </END>", 5) for r in requests]


def test_failing_batch_is_split_in_halves():
    from instmix.synth.engines.base import generate_isolated

    eng = _Picky()
    reqs = [Request(f"r{i}", [1, i]) for i in range(15)] + [Request("bad", [1, 99])]
    res = generate_isolated(eng, reqs)
    assert [len(c) for c in eng.calls] == [16, 8, 8, 4, 4, 2, 2, 1, 1]  # not 1 + 16 calls
    assert res["bad"].error == "RuntimeError: bad prompt in the batch"
    assert all(res[f"r{i}"].error is None for i in range(15))
