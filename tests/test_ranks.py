"""Rank tables: built once per tokenizer and machine, read back intact or rebuilt, and the
fast backends loaded from them give the reference's ids."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from conftest import DOLMA2_TOKENIZER, OLMO_TOKENIZER, config

from instmix.config import TokenizerSpec, load_config
from instmix.errors import ConfigError
from instmix.tokenize import bpe_giga, ranks
from instmix.tokenize.encoder import PROBES, Encoder
from instmix.tokenize.facts import load_tokenizer_info

FILES = ("ranks.tiktoken", "lut.npy", "table.json")


def info_for(path, cache):
    return load_tokenizer_info(TokenizerSpec(path=path, rank_cache=None if cache is None
                                             else str(cache)))


def texts_for(real_docs, paragraphs, info) -> list[str]:
    """Probes, every added token (special or not) inside text, and real documents."""
    with open(info.path, encoding="utf-8") as f:
        added = [t["content"] for t in json.load(f)["added_tokens"]]
    inside = [f"x{t} {t}y\n{t}{t}" for t in added]
    return list(PROBES) + inside + [d["text"] for d in real_docs] + paragraphs[:1500]


@pytest.mark.parametrize("backend", ["gigatoken", "tiktoken"])
def test_backends_from_the_cached_table_give_the_reference_ids(tmp_path, real_docs, paragraphs,
                                                              backend):
    info = info_for(DOLMA2_TOKENIZER, tmp_path / "ranks")
    texts = texts_for(real_docs, paragraphs, info)
    ref = Encoder(info, "hf").encode(texts)
    for _ in range(2):  # built and stored, then read back
        enc = Encoder(info, backend, check_rate=0)
        assert enc.backend == backend
        ids, lengths = enc.encode(texts)
        assert np.array_equal(lengths, ref[1]) and np.array_equal(ids, ref[0])
    assert sorted(os.listdir(tmp_path / "ranks" / info.sha256)) == sorted(FILES)
    if backend == "gigatoken":
        assert enc.fast.source == "rank table"


def test_the_table_is_built_once_and_read_back_equal(tmp_path, monkeypatch):
    info = info_for(DOLMA2_TOKENIZER, None)
    built = []
    real_build = ranks.build
    monkeypatch.setattr(ranks, "build", lambda spec: built.append(1) or real_build(spec))
    first = ranks.cached_table(info.path, info.sha256, str(tmp_path))
    again = ranks.cached_table(info.path, info.sha256, str(tmp_path))
    assert len(built) == 1 and again.file == first.file
    assert again._ranks is None  # read from the file, not rebuilt
    assert again.ranks == first.ranks and np.array_equal(again.lut, first.lut)
    assert (again.pattern, again.nfc, again.plain) == (first.pattern, first.nfc, first.plain)
    assert len(first.ranks) > 100_000 and first.plain  # dolma2: its PII placeholders
    none = ranks.cached_table(info.path, info.sha256, None)  # no cache: built in memory
    assert none.file is None and none.ranks == first.ranks and np.array_equal(none.lut,
                                                                             first.lut)
    assert len(built) == 2


@pytest.mark.parametrize("damage", ["ranks.tiktoken", "lut.npy", "table.json"])
def test_a_damaged_table_is_rebuilt_with_a_warning(tmp_path, caplog, real_docs, paragraphs,
                                                  damage):
    info = info_for(DOLMA2_TOKENIZER, tmp_path)
    ranks.cached_table(info.path, info.sha256, str(tmp_path))
    target = tmp_path / info.sha256 / damage
    intact = target.read_bytes()
    target.write_bytes(intact[:len(intact) // 2] + b"x" * 7)
    with caplog.at_level(logging.WARNING, logger="instmix.tokenize.ranks"):
        enc = Encoder(info, "gigatoken", check_rate=0)
    assert "building it again" in caplog.text
    assert target.read_bytes() == intact
    texts = texts_for(real_docs, paragraphs, info)
    assert np.array_equal(enc.encode(texts)[0], Encoder(info, "hf").encode(texts)[0])


def test_an_unwritable_cache_is_never_built_for_and_the_file_is_loaded(tmp_path, monkeypatch,
                                                                        paragraphs):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    info = info_for(DOLMA2_TOKENIZER, blocker)
    built = []
    real_build = ranks.build
    monkeypatch.setattr(ranks, "build", lambda spec: built.append(1) or real_build(spec))
    enc = Encoder(info, "gigatoken", check_rate=0)
    assert enc.fast.source == "tokenizer.json" and not built  # no table built for nothing
    assert blocker.read_text() == "mine"
    assert np.array_equal(enc.encode(paragraphs[:300])[0],
                          Encoder(info, "hf").encode(paragraphs[:300])[0])
    tik = Encoder(info, "tiktoken", check_rate=0)  # needs the table: built in memory
    assert tik.backend == "tiktoken" and len(built) == 1 and blocker.read_text() == "mine"
    assert np.array_equal(tik.encode(paragraphs[:300])[0],
                          Encoder(info, "hf").encode(paragraphs[:300])[0])


def test_a_pre_tokenizer_gigatoken_lacks_a_scheme_for_loads_the_file(tmp_path, paragraphs):
    info = info_for(OLMO_TOKENIZER, tmp_path)  # GPT-NeoX: NFC, then the GPT-2 regex
    with open(info.path, encoding="utf-8") as f:
        assert bpe_giga.table_scheme(f.read()) is None
    enc = Encoder(info, "gigatoken", check_rate=0)
    assert enc.fast.source == "tokenizer.json"
    assert not (tmp_path / info.sha256).exists()  # gigatoken built no table it cannot use
    table = ranks.cached_table(info.path, info.sha256, str(tmp_path))  # tiktoken's is fine
    assert table.nfc and table.pattern not in bpe_giga.SCHEMES
    with pytest.raises(ranks.Unsupported):
        bpe_giga.from_table(table, False)
    assert np.array_equal(enc.encode(paragraphs[:300])[0],
                          Encoder(info, "hf").encode(paragraphs[:300])[0])


def test_ranks_that_are_not_the_ids_go_through_the_lookup(tmp_path, real_docs, paragraphs):
    """dolma2 with every id moved up by one, a special token at id 0 and one more
    non-special added token: gigatoken gives ranks, the table maps them to the ids."""
    with open(DOLMA2_TOKENIZER, encoding="utf-8") as f:
        spec = json.load(f)
    spec["model"]["vocab"] = {t: i + 1 for t, i in spec["model"]["vocab"].items()}
    for t in spec["added_tokens"]:
        t["id"] += 1
    top = max(t["id"] for t in spec["added_tokens"])
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
    spec["added_tokens"] = [{"id": 0, "content": "<|zero|>", "special": True, **flags},
                            *spec["added_tokens"],
                            {"id": top + 1, "content": "  zz", "special": False, **flags}]
    path = tmp_path / "shifted" / "tokenizer.json"
    path.parent.mkdir()
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    info = info_for(str(path), tmp_path / "ranks")
    enc = Encoder(info, "gigatoken", check_rate=0)
    assert enc.fast.source == "rank table" and enc.fast.lut is not None
    texts = texts_for(real_docs, paragraphs, info) + ["a  zz b  zzz <|zero|>x"]
    ids, lengths = enc.encode(texts)
    ref_ids, ref_len = Encoder(info, "hf").encode(texts)
    assert np.array_equal(lengths, ref_len) and np.array_equal(ids, ref_ids)
    assert 0 not in set(ids.tolist()) and top + 1 in set(ids.tolist())


def test_a_parsable_change_to_the_table_metadata_is_caught(tmp_path, caplog):
    info = info_for(DOLMA2_TOKENIZER, tmp_path)
    first = ranks.cached_table(info.path, info.sha256, str(tmp_path))
    meta_path = tmp_path / info.sha256 / "table.json"
    meta = json.loads(meta_path.read_text())
    meta["pattern"] = r"\S+|\s+"  # still valid JSON and a valid regex: wrong splits
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="instmix.tokenize.ranks"):
        again = ranks.cached_table(info.path, info.sha256, str(tmp_path))
    assert "fails its checksum" in caplog.text and again.pattern == first.pattern
    meta_path.write_text("[1, 2]")  # JSON, not an object
    assert ranks.cached_table(info.path, info.sha256, str(tmp_path)).pattern == first.pattern


def test_ignore_merges_and_odd_shapes_are_refused_not_guessed(tmp_path):
    with open(DOLMA2_TOKENIZER, encoding="utf-8") as f:
        spec = json.load(f)
    spec["model"]["ignore_merges"] = True
    with pytest.raises(ranks.Unsupported, match="ignore_merges"):
        ranks.build(spec)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"model": {"type": "BPE", "vocab": [1, 2]},
                               "pre_tokenizer": {"type": "ByteLevel"}}))
    from instmix.io.hashing import sha256_file

    with pytest.raises(ranks.Unsupported, match="unexpected tokenizer.json shape"):
        ranks.cached_table(str(odd), sha256_file(str(odd)), str(tmp_path))


def test_rank_cache_config(tmp_path):
    def spec(**tok):
        return load_config(config(tmp_path, [{"name": "a", "paths": ["x.jsonl"]}],
                                  tokenizer={"path": OLMO_TOKENIZER, **tok}),
                           base_dir=str(tmp_path)).tokenizer

    assert spec().rank_cache == "~/.cache/instmix/tokenizers"
    assert spec(rank_cache=None).rank_cache is None
    assert spec(rank_cache="r").rank_cache == str(tmp_path / "r")
    assert spec(rank_cache="~/elsewhere").rank_cache == "~/elsewhere"
    for bad in ("s3://bucket/ranks", 3, ""):
        with pytest.raises(ConfigError, match="tokenizer.rank_cache"):
            spec(rank_cache=bad)
