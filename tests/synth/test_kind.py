"""Source kind ``augmented``: augment output -> one templated document per chain, through
the real builder and on its own (order, spans, bad input); one cache unit per block, with
the output of reading all the files together (a chain id in two blocks: one unit)."""

import json
import os

import pytest
import zstandard
from conftest import read_tree
from conftest import write_jsonl as write_rows

import instmix
from instmix.builder.inspection import decoded_documents
from instmix.config import SourceConfig
from instmix.errors import ConfigError, InputError
from instmix.format.manifest import load_manifest
from instmix.synth.config import load_augment_config
from instmix.synth.kind import AugmentedKind
from instmix.synth.runner import augment
from instmix.synth.templates import render_chain

from .synth_helpers import read_parts, sample_texts, write_jsonl


@pytest.fixture
def augmented(tmp_path, tiny_tokenizer):
    write_jsonl(tmp_path / "in.jsonl", sample_texts(14))
    cfg = load_augment_config({
        "synthesizer": {"engine": "synth.synth_scripted:ScriptedEngine", "model": "scripted",
                        "tokenizer": tiny_tokenizer, "max_model_len": 2048,
                        "max_new_tokens": 64, "batch_size": 2},
        "rounds": 3, "block_size": 7, "checkpoint_every": 2,
        "sources": [{"name": "web", "paths": ["in.jsonl"]}], "output": "aug"},
        base_dir=str(tmp_path))
    augment(cfg)
    return cfg.output


def expected_chains(folder):
    chains = {}
    for entries in read_parts(folder).values():
        for e in entries:
            chains.setdefault(e["chain_id"], []).append(e)
    return {cid: [(e["context"], [(p["question"], p["answer"]) for p in e["pairs"]])
                  for e in sorted(es, key=lambda e: e["round"])] for cid, es in chains.items()}


def _src(paths=(), **options):
    return SourceConfig(name="aug", paths=tuple(paths), kind="augmented", options=options)


def test_through_the_builder(tmp_path, augmented, tiny_tokenizer):
    manifest = instmix.build({
        "tokenizer": tiny_tokenizer, "output": str(tmp_path / "build"),
        "sources": [{"name": "aug", "kind": "augmented",
                     "paths": [os.path.join(augmented, "*.jsonl.zst")],
                     "options": {"template_seed": 7}}]})
    chains = expected_chains(augmented)
    assert len(chains) == 6 and sorted(len(c) for c in chains.values()) == [2, 2, 2, 2, 3, 3]
    assert manifest["documents"] == len(chains)
    docs = {d["id"]: d["text"] for d in decoded_documents(load_manifest(str(tmp_path / "build")),
                                                           100)}
    assert set(docs) == set(chains)
    for cid, entries in chains.items():
        text = docs[cid]
        assert text.startswith("<s>") and text.endswith("</s>")
        assert text[3:-4] == render_chain(entries, 7, cid).text
        positions = [text.index(ctx) for ctx, _ in entries]
        assert positions == sorted(positions)  # rounds in order


def test_documents_order_spans_and_seed(augmented):
    paths = sorted(os.path.join(augmented, n) for n in os.listdir(augmented)
                   if n.endswith(".jsonl.zst"))
    docs = list(AugmentedKind().documents(_src(template_seed=3), paths, "aug",
                                          skip_bad=False, stats={}))
    ids = [d.id for d in docs]
    assert ids == sorted(ids[:3]) + sorted(ids[3:])  # per block, by chain id
    chains = expected_chains(augmented)
    for d in docs:
        answers = [a for _, pairs in chains[d.id] for _, a in pairs]
        assert [d.text[a:b] for a, b in d.spans] == answers
    other = list(AugmentedKind().documents(_src(template_seed=4), paths, "aug",
                                           skip_bad=False, stats={}))
    assert [d.text for d in other] != [d.text for d in docs]


def _row(**kw):
    e = {"id": "t#0", "source_id": "t", "chain_id": "t#0", "round": 0, "context": "Text.",
         "pairs": [{"question": "Q?", "answer": "A.", "kind": "qa"}], "status": "ok"}
    e.update(kw)
    return e


def _entry(**kw):
    return json.dumps(_row(**kw))


def test_bad_entries_name_file_line_and_field(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(_entry() + "\n" + _entry(id="u#0", chain_id="u#0", round="one") + "\n")
    kind = AugmentedKind()
    with pytest.raises(InputError) as e:
        list(kind.documents(_src(), [str(f)], "aug", skip_bad=False, stats={}))
    assert str(e.value).startswith(f"{f}:2: field 'round':")
    stats = {}
    docs = list(kind.documents(_src(), [str(f)], "aug", skip_bad=True, stats=stats))
    assert [d.id for d in docs] == ["t#0"] and stats == {"bad_entry": 1}


def test_duplicate_round_and_split_chain(tmp_path):
    a = tmp_path / "part-000000-r0-0000.jsonl.zst"
    b = tmp_path / "part-000001-r0-0000.jsonl.zst"

    a.write_bytes(zstandard.ZstdCompressor().compress(
        (_entry() + "\n" + _entry(id="t#1") + "\n").encode()))
    b.write_bytes(zstandard.ZstdCompressor().compress((_entry(round=1) + "\n").encode()))
    kind = AugmentedKind()
    with pytest.raises(InputError, match="round 0 twice"):
        list(kind.documents(_src(), [str(a), str(b)], "aug", skip_bad=False, stats={}))
    stats = {}
    docs = list(kind.documents(_src(), [str(a), str(b)], "aug", skip_bad=True, stats=stats))
    assert len(docs) == 1 and stats == {"duplicate_entry": 1, "split_chain": 1}


def test_options_are_checked():
    with pytest.raises(ConfigError, match="options.template_seed"):
        list(AugmentedKind().documents(_src(template_seed=-1), [], "aug", skip_bad=False,
                                       stats={}))
    with pytest.raises(ConfigError, match="options.seed: unknown option"):
        list(AugmentedKind().documents(_src(seed=1), [], "aug", skip_bad=False, stats={}))


def _units(cache) -> int:
    return sum(1 for n in os.listdir(cache) if os.path.isfile(os.path.join(cache, n,
                                                                          "meta.json")))


def _build_aug(tmp_path, tokenizer, paths, name, **kw):
    return instmix.build({
        "tokenizer": tokenizer, "output": str(tmp_path / name),
        "cache_dir": str(tmp_path / f"cache-{name}"), "sources": [
            {"name": "aug", "kind": "augmented", "paths": paths}], **kw})


@pytest.fixture
def whole(monkeypatch):
    """Read an augmented source's files together (what the builder did before)."""
    def use_whole():
        monkeypatch.setattr(AugmentedKind, "groups", lambda self, paths: [list(paths)])
    return use_whole


def test_blocks_are_units_with_the_output_of_one_unit(tmp_path, augmented, tiny_tokenizer,
                                                      whole):
    paths = [os.path.join(augmented, "*.jsonl.zst")]
    blocks = {n.split("-")[1] for n in os.listdir(augmented) if n.startswith("part-")}
    assert len(blocks) == 2
    grouped = _build_aug(tmp_path, tiny_tokenizer, paths, "grouped", workers=2)
    assert _units(tmp_path / "cache-grouped") == 2
    whole()
    one = _build_aug(tmp_path, tiny_tokenizer, paths, "one")
    assert _units(tmp_path / "cache-one") == 1
    assert grouped == one and grouped["documents"] == 6
    assert read_tree(tmp_path / "grouped") == read_tree(tmp_path / "one")


def test_a_chain_in_two_blocks_gives_the_error_and_skips_of_one_unit(tmp_path, tiny_tokenizer,
                                                                     whole):
    d = tmp_path / "aug"
    d.mkdir()
    a = write_rows(d / "part-000000-r0-0000.jsonl.zst",
                   [_row(), _row(id="u#0", chain_id="u#0")], compress="zst")
    b = write_rows(d / "part-000001-r0-0000.jsonl.zst",
                   [_row(id="v#0", chain_id="v#0"), _row(id="t#1", round=1)], compress="zst")
    with pytest.raises(InputError) as e:
        _build_aug(tmp_path, tiny_tokenizer, [a, b], "strict")
    assert str(e.value).startswith(f"{b}:2: field 'chain_id':")
    assert "also appears in another block" in str(e.value)
    grouped = _build_aug(tmp_path, tiny_tokenizer, [a, b], "grouped", skip_bad_records=True)
    assert grouped["sources"][0]["skipped"] == {"split_chain": 1}
    assert grouped["documents"] == 3
    assert _units(tmp_path / "cache-grouped") == 3  # the two blocks, then the whole source
    whole()
    one = _build_aug(tmp_path, tiny_tokenizer, [a, b], "one", skip_bad_records=True)
    assert grouped == one
    assert read_tree(tmp_path / "grouped") == read_tree(tmp_path / "one")


def test_a_block_without_documents_is_read_with_the_others(tmp_path, tiny_tokenizer, whole):
    d = tmp_path / "aug"
    d.mkdir()
    a = write_rows(d / "part-000000-r0-0000.jsonl.zst", [_row()], compress="zst")
    b = write_rows(d / "part-000001-r0-0000.jsonl.zst",
                   [_row(id="w#0", chain_id="w#0", status="failed")], compress="zst")
    grouped = _build_aug(tmp_path, tiny_tokenizer, [a, b], "grouped")
    assert grouped["sources"][0]["skipped"] == {"failed_entry": 1}
    assert _units(tmp_path / "cache-grouped") == 2  # one unit per block, the empty one too
    whole()
    one = _build_aug(tmp_path, tiny_tokenizer, [a, b], "one")
    assert _units(tmp_path / "cache-one") == 1
    assert grouped == one and grouped["documents"] == 1
    assert read_tree(tmp_path / "grouped") == read_tree(tmp_path / "one")
