"""The clean stage in real builds: planted duplicates, near duplicates, eval spans and weak
pairs on real text, removed and counted exactly; determinism; no re-tokenization."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import OLMO_TOKENIZER, ROOT, config, read_jsonl_zst, write_jsonl
from tokenizers import Tokenizer

from instmix.builder.pipeline import build
from instmix.builder.sweep import sweep
from instmix.config import load_config
from instmix.errors import ConfigError
from instmix.format.reader import iter_build_documents
from instmix.format.verify import verify
from instmix.serve.streaming import StreamingMixture
from instmix.sources.kinds import kept_cuts
from instmix.sources.registry import get_kind

CHAINS = ROOT / "examples" / "quickstart" / "data" / "augmented" / "chains.jsonl.zst"


def two_words_changed(text: str) -> str:
    ws = text.split(" ")
    ws[len(ws) // 3] = "zebra"
    ws[2 * len(ws) // 3] = "quokka"
    return " ".join(ws)


def prose_run(text: str, start: int = 0) -> str:
    """40 words of running prose (nearly all alphabetic) from ``text``."""
    ws = text.split()
    for s in range(start, len(ws) - 40, 10):
        run = ws[s:s + 40]
        if sum(w.strip(".,;:()").isalpha() for w in run) >= 32:
            return " ".join(run)
    raise AssertionError("no prose")


@pytest.fixture()
def planted(tmp_path, real_docs):
    """Source a: 40 real pages. Source b: 8 exact copies of pages of a (case and spacing
    changed), 12 copies with two words changed, 5 pages carrying 20 words of an eval
    question, 10 other real pages. Eval file: 5 questions from 5 more pages."""
    pages = [" ".join(d["text"].split()) for d in real_docs]
    a = [{"id": f"a{i}", "text": pages[i]} for i in range(40)]
    questions = [prose_run(pages[70 + k]) for k in range(5)]
    b = [{"id": f"exact{i}", "text": pages[i].upper().replace(" ", "  ")} for i in range(8)]
    b += [{"id": f"near{i}", "text": two_words_changed(pages[8 + i])} for i in range(12)]
    b += [{"id": f"contam{k}", "text": pages[50 + k] + " " + " ".join(
        questions[k].split()[10:30]) + " " + pages[55 + k]} for k in range(5)]
    b += [{"id": f"other{i}", "text": pages[60 + i]} for i in range(10)]
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    write_jsonl(tmp_path / "evals" / "qa.jsonl",
                [{"question": q, "answer": "short"} for q in questions])
    return tmp_path


def _config(tmp, **kw):
    kw.setdefault("workers", 1)  # tokenize in this process: count_encodes sees the texts
    return config(tmp, [{"name": "a", "paths": [str(tmp / "a.jsonl")], "id_field": "id"},
                        {"name": "b", "paths": [str(tmp / "b.jsonl")], "id_field": "id"}],
                  **kw)


CLEAN = {"dedup": {"exact": True, "near": {"threshold": 0.8}},
         "decontaminate": {"paths": ["evals/*.jsonl"], "ngram": 13}}


def _listing(out) -> list[dict]:
    with open(os.path.join(out, "removed.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_planted_cases_removed_and_counted_exactly(planted):
    cfg = load_config(_config(planted, **CLEAN), base_dir=str(planted))
    m = build(cfg, workers=1)
    removed = {s["name"]: s["removed"] for s in m["sources"]}
    assert removed["a"]["duplicate"] + removed["b"]["duplicate"] == 8
    assert removed["a"]["near_duplicate"] + removed["b"]["near_duplicate"] == 12
    assert removed["b"]["contaminated"] == 5 and removed["a"]["contaminated"] == 0
    rows = _listing(cfg.output)
    assert len(rows) == 25
    # each removed document matched its own original (or copy), or its eval question
    for r in rows:
        num = int("".join(c for c in r["id"] if c.isdigit()))
        if r["reason"] == "contaminated":
            assert r["id"] == f"contam{num}"
            assert r["eval"].endswith(f"qa.jsonl:{num + 1}")
            continue
        other = int("".join(c for c in r["match"]["id"] if c.isdigit()))
        pair = {r["id"], r["match"]["id"]}
        if r["reason"] == "duplicate":
            assert pair == {f"a{num}", f"exact{num}"} or pair == {f"a{other}", f"exact{other}"}
        else:
            assert r["reason"] == "near_duplicate" and r["jaccard"] >= 0.8
            assert {x.rstrip("0123456789") for x in pair} == {"a", "near"}
            ids = sorted(pair)
            assert int(ids[0][1:]) == int(ids[1][4:]) + 8
    # no unique document removed: 40 + 35 documents, 25 removed, every original kept once
    every = {f"a{i}" for i in range(40)} | {f"exact{i}" for i in range(8)} | \
        {f"near{i}" for i in range(12)} | {f"contam{i}" for i in range(5)} | \
        {f"other{i}" for i in range(10)}
    kept = every - {r["id"] for r in rows}
    assert sum(s["available_documents"] for s in m["sources"]) == len(kept) == 75 - 25
    assert {d.id for d in iter_build_documents(cfg.output)} <= kept
    for i in range(40):
        copy = f"exact{i}" if i < 8 else (f"near{i - 8}" if i < 20 else None)
        assert (f"a{i}" in kept) != (copy in kept) if copy else f"a{i}" in kept
    assert {f"other{i}" for i in range(10)} <= kept
    assert verify(cfg.output)["documents"] == m["documents"]


def _augmented(tmp, chains, eval_question):
    """The quickstart's 20 chains, with planted pairs: chain 0 gets a pair whose answer is
    about something else (an OpenOrca-style response), chain 1 a pair whose question carries an eval span, chain 2's first
    context carries an eval span."""
    rows = [dict(r) for r in chains]
    by_chain = {}
    for r in rows:
        by_chain.setdefault(r["chain_id"], []).append(r)
    ids = sorted(by_chain)
    far = ("Reminder: You have a dental appointment with Dr. Nguyen on Thursday, 5 June at "
           "2:30 p.m. Please arrive 10 minutes early.")  # the quickstart's openorca row 7
    span = " ".join(eval_question.split()[5:25])
    first = [min(by_chain[c], key=lambda r: r["round"]) for c in ids[:3]]
    first[0]["pairs"] = first[0]["pairs"] + [
        {"question": "What does the passage conclude about this, in one sentence?",
         "answer": far}]
    first[1]["pairs"] = first[1]["pairs"] + [
        {"question": "Consider: " + span + ". What follows?", "answer": "It follows."}]
    first[2]["context"] = first[2]["context"] + "\n\n" + span
    write_jsonl(tmp / "aug" / "chains.jsonl", rows)
    return ids, far


def test_augmented_pairs_removed_from_their_chains(tmp_path, real_docs):
    chains = read_jsonl_zst(CHAINS)
    question = prose_run(" ".join(real_docs[80]["text"].split()))
    write_jsonl(tmp_path / "evals" / "qa.jsonl", [{"question": question}])
    ids, far = _augmented(tmp_path, chains, question)
    src = {"name": "aug", "paths": [str(tmp_path / "aug" / "chains.jsonl")],
           "kind": "augmented", "filters": {"grounded": 0.2, "question_words": False,
                                            "answer_words": False, "repeated_ngrams": False,
                                            "duplicate_questions": False}}
    base = load_config(config(tmp_path, [dict(src, filters=False)]), base_dir=str(tmp_path))
    build(base, workers=1)
    before = {d.id: d for d in iter_build_documents(base.output)}
    cfg = load_config(config(tmp_path, [src], output=str(tmp_path / "clean"),
                             decontaminate={"paths": ["evals/*.jsonl"]}),
                      base_dir=str(tmp_path))
    m = build(cfg, workers=1)
    removed = m["sources"][0]["removed"]
    rows = _listing(cfg.output)
    assert removed["contaminated"] == 1  # chain 2: its context carries the eval span
    assert [r["id"] for r in rows if r["reason"] == "contaminated" and "pair" not in r] == \
        [ids[2]]
    assert removed["filtered"]["contaminated"] == 1  # chain 1's planted pair only
    pair_rows = [r for r in rows if "pair" in r]
    planted = {(r["id"], r["reason"]) for r in pair_rows}
    assert (ids[0], "ungrounded") in planted and (ids[1], "contaminated") in planted
    # the unplanted pairs filtered are the real pairs below the threshold (2 in 296)
    assert removed["filtered"]["ungrounded"] == 1 + 2
    tok = Tokenizer.from_file(OLMO_TOKENIZER)
    after = {d.id: d for d in iter_build_documents(cfg.output)}
    assert ids[2] not in after and set(after) == set(before) - {ids[2]}
    text0 = tok.decode(after[ids[0]].tokens.tolist())
    assert far not in text0 and far in tok.decode(before[ids[0]].tokens.tolist())
    ctx0 = min((r for r in chains if r["chain_id"] == ids[0]), key=lambda r: r["round"])
    assert ctx0["context"] in text0                       # the chain's text stays
    assert ctx0["pairs"][0]["answer"] in text0           # and its other pairs
    assert verify(cfg.output)["documents"] == len(after)
    # the written tokens decode to the chain's text with exactly the removed cuts left out
    docs = {d.id: d for d in get_kind("augmented").documents(
        cfg.sources[0], [str(tmp_path / "aug" / "chains.jsonl")], "aug", skip_bad=False,
        stats={})}
    for r in pair_rows:
        if r["id"] != ids[0]:
            continue
        doc = docs[ids[0]]
        removed_parts = [p == r["pair"] for p in range(len(doc.parts))]
        assert doc.parts[r["pair"]].answer == far
        gaps, pos = [], 0
        for c in doc.cuts:
            gaps.append(c.start > pos)
            pos = c.end
        gaps.append(pos < len(doc.text))
        keep = kept_cuts([c.parts or (-1, -1) for c in doc.cuts], gaps, removed_parts)
        expected, pos = [], 0
        for c, k in zip(doc.cuts, keep):
            expected.append(doc.text[pos:c.start] + (doc.text[c.start:c.end] if k else ""))
            pos = c.end
        expected.append(doc.text[pos:])
        assert tok.decode(after[ids[0]].tokens[:-1].tolist()) == "".join(expected)


def test_same_removals_for_any_worker_count_and_file_order(planted):
    out = {}
    for workers, order in ((1, 1), (3, 1), (2, -1)):
        (planted / "b1.jsonl").write_bytes((planted / "b.jsonl").read_bytes())
        paths = [str(planted / "a.jsonl"), str(planted / "b1.jsonl")][::order]
        cfg = load_config(config(planted, [
            {"name": "all", "paths": paths, "id_field": "id"}],
            output=str(planted / f"out-{workers}-{order}"),
            cache_dir=str(planted / f"cache-{workers}"), **CLEAN), base_dir=str(planted))
        m = build(cfg, workers=workers)
        kept = sorted(d.id for d in iter_build_documents(cfg.output))
        out[(workers, order)] = (m["sources"][0]["removed"], kept,
                                 sorted(r["id"] for r in _listing(cfg.output)))
    assert out[(1, 1)] == out[(3, 1)] == out[(2, -1)]
    assert out[(1, 1)][0]["duplicate"] == 8 and out[(1, 1)][0]["near_duplicate"] == 12


def test_dedup_settings_sweep_costs_no_retokenization(planted, count_encodes):
    base = _config(planted)
    build(load_config(base, base_dir=str(planted)), workers=1)
    tokenized = len(count_encodes)
    assert tokenized == 75
    got = []
    for extra in ({"dedup": {"exact": True}},
                  {"dedup": {"exact": False, "near": {"threshold": 0.8}}},
                  {"dedup": {"near": {"threshold": 0.5}}}, CLEAN):
        cfg = load_config(dict(base, **extra), base_dir=str(planted))
        m = build(cfg, workers=1)
        r = [s["removed"] for s in m["sources"]]
        got.append(tuple(sum(x[k] for x in r)
                         for k in ("duplicate", "near_duplicate", "contaminated")))
    assert len(count_encodes) == tokenized  # no setting re-tokenized anything
    # exact copies are near duplicates too when exact dedup is off
    assert got == [(8, 0, 0), (0, 20, 0), (8, 12, 0), (8, 12, 5)]


@pytest.mark.parametrize("extra, message", [
    ({"dedup": {"near": {"threshold": 1.5}}}, "dedup.near.threshold: must be <= 1"),
    ({"dedup": {"exact": "yes"}}, "dedup.exact: expected true or false"),
    ({"dedup": {"nearly": {}}}, "dedup.nearly: unknown key (did you mean 'near'?)"),
    ({"decontaminate": {"paths": ["nothere/*.jsonl"]}}, "decontaminate.paths: "),
    ({"decontaminate": {"paths": ["evals/*.jsonl"], "ngram": 0}}, "decontaminate.ngram: must"),
])
def test_bad_clean_config_is_one_line(planted, extra, message):
    with pytest.raises(ConfigError) as e:
        load_config(dict(_config(planted), **extra), base_dir=str(planted))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_filters_need_a_kind_with_pairs(planted):
    cfg = _config(planted)
    cfg["sources"][0]["filters"] = True
    with pytest.raises(ConfigError, match=r"sources\[0\].filters: kind text has no"):
        load_config(cfg, base_dir=str(planted))


def test_ratio_sweep_cleans_once_and_removes_the_same_everywhere(planted, count_encodes):
    cfg = load_config(_config(planted, **CLEAN), base_dir=str(planted))
    summary = sweep(cfg, [{"a": 1, "b": 0}, {"a": 1, "b": 1}, {"a": 0.5, "b": 1}],
                    out=str(planted / "sweep"))
    assert len(count_encodes) == 75  # tokenized once
    removed = []
    for entry in summary["mixtures"]:
        folder = str(planted / "sweep" / entry["output"])
        with open(os.path.join(folder, "manifest.json")) as f:
            m = json.load(f)
        removed.append([s["removed"] for s in m["sources"]])
        assert verify(folder)["documents"] == m["documents"]
    assert removed[0] == removed[1] == removed[2]


def test_kept_cuts_keeps_one_separator_between_what_stays():
    # "[q0] sep [q1] sep [q2]" after fixed text, with a heading owned by all three
    cuts = [(0, 3), (-1, -1), (0, 1), (-1, -1), (1, 2), (-1, -1), (2, 3)]
    gaps = [True, False, False, False, False, False, False, False]
    assert kept_cuts(cuts, gaps, [False, False, False]) == [True] * 7
    assert kept_cuts(cuts, gaps, [True, False, False]) == \
        [True, False, False, True, True, True, True]
    assert kept_cuts(cuts, gaps, [False, True, True]) == \
        [True, True, True, False, False, False, False]
    assert kept_cuts(cuts, gaps, [True, True, True]) == [False] * 7


def test_streaming_mixture_refuses_to_skip_cleaning(planted):
    with pytest.raises(ConfigError, match="dedup: StreamingMixture does not clean"):
        StreamingMixture(load_config(_config(planted, **CLEAN), base_dir=str(planted)), 128)


def test_summary_report_and_inspect_show_the_removals(planted):
    cfg_path = planted / "mix.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(planted, **CLEAN)))
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def run(*args):
        out = subprocess.run([sys.executable, "-m", "instmix", *args], capture_output=True,
                             text=True, env=env, cwd=str(planted))
        assert out.returncode == 0, out.stderr
        return out.stdout

    built = run("build", "--no-progress", "--workers", "1", str(cfg_path))
    head = next(line for line in built.splitlines() if line.startswith("source"))
    assert head.split()[-5:] == ["dup", "near", "contam", "pairs", "out"]
    listed = run("inspect", str(planted / "out"), "--removed", "--no-summary").splitlines()
    assert listed[1] == "removed (25 records):"
    assert sum(" duplicate of " in x for x in listed) == 8
    assert sum(" near_duplicate of " in x and "(Jaccard" in x for x in listed) == 12
    assert sum(": eval record " in x and "qa.jsonl:" in x for x in listed) == 5
    run("report", str(planted / "out"), "--out", str(planted / "report"))
    html = (planted / "report" / "report.html").read_text()
    assert "Removed by the clean stage" in html
    assert html.count('data-field="contaminated" data-value="5"') == 1
