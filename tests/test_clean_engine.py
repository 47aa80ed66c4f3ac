"""The clean engine on real text: signatures, exact/near dedup, decontamination, filters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instmix.clean.decontam import fingerprint
from instmix.clean.filters import pair_reasons, rouge_l
from instmix.clean.minhash import MinHasher
from instmix.clean.signatures import UnitSignatures, Wanted, compute, missing
from instmix.clean.stage import CONTAMINATED, DUPLICATE, KEPT, NEAR, find_removals
from instmix.clean.text import concat, word_hashes, words
from instmix.config import PairFilters
from instmix.sources.kinds import Document


def _docs(texts, prefix="d"):
    return [Document(f"{prefix}:{i}", t) for i, t in enumerate(texts)]


def _unit(tmp_path, name, docs, wanted):
    folder = str(tmp_path / name)
    compute(folder, docs, len(docs), wanted, False, missing(folder, wanted, False))
    return UnitSignatures(folder, wanted, False)


def two_words_changed(text: str) -> str:
    ws = text.split(" ")
    ws[len(ws) // 3] = "zebra"
    ws[2 * len(ws) // 3] = "quokka"
    return " ".join(ws)


@pytest.fixture(scope="module")
def passages(real_docs):
    """The quickstart's 86 Python documentation pages (280+ words each)."""
    return [" ".join(d["text"].split()) for d in real_docs]


def test_signatures_equal_datasketch_minhash(passages):
    from datasketch import MinHash

    hasher = MinHasher()
    flat, off = concat([word_hashes(words(t)) for t in passages[:10] + ["two words"]],
                       np.uint32)
    sh, so = hasher.shingles(flat, off)
    sig = hasher.signatures(sh, so)
    for i in range(11):
        ref = MinHash(num_perm=128, seed=1, hashfunc=int)
        ref.update_batch(sh[so[i]:so[i + 1]])
        assert np.array_equal(ref.hashvalues, sig[i])
    assert so[-1] - so[-2] == 1  # fewer words than the shingle size: one shingle


def test_planted_exact_and_near_copies_removed_exactly(tmp_path, passages):
    base = passages[:60]
    exact = [base[i].upper().replace(" ", "  \n") for i in range(0, 10)]   # 10 exact copies
    near = [two_words_changed(base[i]) for i in range(10, 25)]              # 15 near copies
    wanted = Wanted(near=MinHasher())
    a = _unit(tmp_path, "a", _docs(base[:30] + exact, "a"), wanted)
    b = _unit(tmp_path, "b", _docs(base[30:] + near, "b"), wanted)
    out = find_removals(7, ["a", "b"], [[a], [b]], exact=True, near_threshold=0.8,
                        decontaminate=False)
    reason = np.concatenate([o.reason for o in out])
    assert (reason == DUPLICATE).sum() == 10 and (reason == NEAR).sum() == 15
    assert out[0].counts["duplicate"] + out[1].counts["duplicate"] == 10
    # every removed document has its kept original as match; no unique passage removed
    docs = base[:30] + exact + base[30:] + near
    original = {i: i for i in range(60)}
    original.update({60 + k: k for k in range(10)})
    original.update({70 + k: 10 + k for k in range(15)})
    by_pos = list(range(30)) + list(range(30, 40)) + list(range(40, 70)) + list(range(70, 85))
    # positions: a = base[:30] (0-29), exact (30-39); b = base[30:] (40-69), near (70-84)
    group = {}
    for pos in range(85):
        if pos < 30:
            group[pos] = pos
        elif pos < 40:
            group[pos] = pos - 30
        elif pos < 70:
            group[pos] = pos - 10
        else:
            group[pos] = pos - 60
    match = np.concatenate([o.match for o in out])
    for pos in np.flatnonzero(reason != KEPT):
        assert group[int(match[pos])] == group[pos] and reason[match[pos]] == KEPT
    kept_groups = {group[p] for p in np.flatnonzero(reason == KEPT)}
    assert kept_groups == set(range(60)) and (reason == KEPT).sum() == 60
    assert len(docs) == len(by_pos)


def test_kept_copy_depends_on_seed_and_documents_not_order(tmp_path, passages):
    texts = passages[:20] + [passages[i] for i in range(10)]
    wanted = Wanted()
    fwd = _unit(tmp_path, "fwd", _docs(texts), wanted)
    docs = _docs(texts)
    rev = _unit(tmp_path, "rev", docs[::-1], wanted)

    def kept_ids(unit, order_docs, seed):
        out = find_removals(seed, ["s"], [[unit]], exact=True, near_threshold=None,
                            decontaminate=False)[0]
        return {order_docs[i].id for i in np.flatnonzero(out.reason == KEPT)}

    for seed in (0, 1, 2):
        assert kept_ids(fwd, docs, seed) == kept_ids(rev, docs[::-1], seed)
    assert len({frozenset(kept_ids(fwd, docs, s)) for s in range(6)}) > 1  # the seed decides


def prose(passages, pages, count):
    """``count`` real prose sentences runs (40 words, nearly all alphabetic) of ``pages``."""
    out = []
    for page in pages:
        ws = passages[page].split()
        for s in range(0, len(ws) - 40, 40):
            run = ws[s:s + 40]
            if sum(w.strip(".,;:()").isalpha() for w in run) >= 36:
                out.append(" ".join(run))
                break
        if len(out) == count:
            return out
    raise AssertionError("not enough prose")


def test_decontamination_finds_eval_spans_and_names_the_record(tmp_path, passages):
    evals = tmp_path / "evals.jsonl"
    questions = prose(passages, range(60, 86), 5)
    records = [{"question": q, "answers": {"text": ["short answer"]}} for q in questions]
    evals.write_text("".join(json.dumps(r) + "\n" for r in records))
    fp = fingerprint([str(evals)], 13)
    carrying = []
    for k in range(5):
        span = " ".join(questions[k].split()[5:25])  # 20 words of an eval question
        carrying.append(passages[k] + " " + span + " " + passages[k + 5])
    clean_docs = passages[20:40] + ["a document that mentions the short answer only"]
    wanted = Wanted(evals=(fp, (str(evals),), 13))
    u = _unit(tmp_path, "u", _docs(carrying + clean_docs), wanted)
    out = find_removals(0, ["s"], [[u]], exact=False, near_threshold=None,
                        decontaminate=True)[0]
    assert list(np.flatnonzero(out.reason == CONTAMINATED)) == [0, 1, 2, 3, 4]
    assert [out.eval_record[k] for k in range(5)] == [f"{evals}:{k + 1}" for k in range(5)]
    assert out.counts["contaminated"] == 5


def test_pair_filters_on_real_pairs(passages):
    ctx, other = prose(passages, range(0, 40), 2)
    q = "What does the passage say about " + " ".join(ctx.split()[3:8]) + "?"
    grounded = " ".join(ctx.split()[10:30])
    assert set(words(other[40:])) - set(words(ctx))  # the other context is another text
    pairs = [(ctx, q, grounded),                                   # kept
             (ctx, "Why?", grounded),                              # question too short
             (ctx, "Which remark closes the other text?", " ".join(other.split()[10:30])),
             (ctx, "What does the passage say about " + " ".join(ctx.split()[3:8]) + " here?",
              grounded),                                           # duplicate question
             (ctx, "Repeat the sentence several times, please.", " ".join(
                 (ctx.split()[:12]) * 6))]                        # repeated n-grams
    got = pair_reasons(pairs, PairFilters())
    assert got == [None, "question_length", "ungrounded", "duplicate_question",
                   "repeated_ngrams"]
    assert rouge_l([b"a", b"b", b"c"], [b"a", b"c"]) == pytest.approx(0.8)
