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


def test_an_unwritable_cache_is_skipped_and_the_file_is_loaded(tmp_path, caplog, paragraphs):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    info = info_for(DOLMA2_TOKENIZER, blocker)
    with caplog.at_level(logging.WARNING, logger="instmix.tokenize.ranks"):
        enc = Encoder(info, "gigatoken", check_rate=0)
    assert "not written" in caplog.text and blocker.read_text() == "mine"
    assert enc.fast.source == "tokenizer.json"
    assert np.array_equal(enc.encode(paragraphs[:300])[0],
                          Encoder(info, "hf").encode(paragraphs[:300])[0])


def test_a_pre_tokenizer_gigatoken_lacks_a_scheme_for_loads_the_file(tmp_path, paragraphs):
    info = info_for(OLMO_TOKENIZER, tmp_path)  # GPT-NeoX: NFC, then the GPT-2 regex
    table = ranks.cached_table(info.path, info.sha256, str(tmp_path))
    assert table.nfc and table.pattern not in bpe_giga.SCHEMES
    with pytest.raises(ranks.Unsupported):
        bpe_giga.from_table(table, False)
    enc = Encoder(info, "gigatoken", check_rate=0)
    assert enc.fast.source == "tokenizer.json"
    assert np.array_equal(enc.encode(paragraphs[:300])[0],
                          Encoder(info, "hf").encode(paragraphs[:300])[0])


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
