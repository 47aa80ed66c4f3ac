"""Tokenizer loading, BOS/EOS detection and the fast backend's equivalence checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import DOLMA2_TOKENIZER, OLMO_TOKENIZER
from tokenizers import Tokenizer

from instmix.config import TokenizerSpec
from instmix.errors import ConfigError
from instmix.tokenize.encoder import Encoder
from instmix.tokenize.facts import choose_dtype, load_tokenizer_info


def info_for(path, **kw):
    return load_tokenizer_info(TokenizerSpec(path=path, **kw))


def test_detects_olmo_eos_and_no_bos():
    info = info_for(OLMO_TOKENIZER)
    assert (info.eos_token_id, info.bos_token_id, info.add_bos) == (50279, None, False)
    assert info.vocab_size == 50280 and info.dtype == "uint16"
    info = info_for(DOLMA2_TOKENIZER)
    assert (info.eos_token_id, info.vocab_size, info.dtype) == (100257, 100278, "uint32")


def test_template_bos_is_detected(bos_tokenizer):
    info = info_for(bos_tokenizer)
    tok = Tokenizer.from_file(bos_tokenizer)
    assert info.bos_token_id == tok.token_to_id("<s>") and info.add_bos
    assert info.eos_token_id == tok.token_to_id("</s>")
    assert not info_for(bos_tokenizer, add_bos=False).add_bos


def test_folder_with_tokenizer_config_and_overrides(tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copy(OLMO_TOKENIZER, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|padding|>", "bos_token": "<|endoftext|>"}))
    info = info_for(str(folder))
    assert info.eos_token_id == 1 and info.bos_token_id == 50279 and info.add_bos
    info = info_for(str(folder), eos_token="<|endoftext|>", add_bos=False)
    assert info.eos_token_id == 50279 and not info.add_bos
    with pytest.raises(ConfigError, match="tokenizer.eos_token: 'nope' is not in the vocabulary"):
        info_for(str(folder), eos_token="nope")


def test_choose_dtype_edges():
    assert choose_dtype(65536) == "uint16"
    assert choose_dtype(65537) == "uint32"
    with pytest.raises(ConfigError):
        choose_dtype(65537, "uint16")


@pytest.mark.parametrize("path", [OLMO_TOKENIZER, DOLMA2_TOKENIZER])
def test_fast_backend_gives_reference_ids_on_real_text(path, real_docs, paragraphs):
    info = info_for(path)
    fast = Encoder(info, backend="tiktoken", check_rate=0)
    ref = Encoder(info, backend="hf")
    assert fast.backend == "tiktoken" and ref.backend == "hf"
    texts = [d["text"] for d in real_docs] + paragraphs[:2000] + [
        "x <|endoftext|> y", "tabs\t\tand  spaces  ", "émoji 🙂 and 中文"]
    ids_f, len_f = fast.encode(texts)
    ids_r, len_r = ref.encode(texts)
    assert np.array_equal(len_f, len_r) and np.array_equal(ids_f, ids_r)
    assert len(ids_r) > 300_000


def test_special_token_strings_are_encoded_as_text_by_both_backends():
    info = info_for(OLMO_TOKENIZER)
    for backend in ("hf", "tiktoken"):
        ids, lengths = Encoder(info, backend=backend).encode(["a <|endoftext|> b", "plain"])
        assert 50279 not in ids.tolist()
        assert lengths.tolist()[1] == 1


class _WrongFast:
    """A fast backend that drops the last id of every document (a broken backend)."""

    def __init__(self, ref):
        self.ref = ref

    def encode(self, texts):
        encs = [self.ref.encode(t, add_special_tokens=False).ids[:-1] for t in texts]
        return (np.array([i for e in encs for i in e], dtype=np.uint32),
                np.array([len(e) for e in encs], dtype=np.int64))


def test_sampled_check_falls_back_to_reference_on_mismatch(paragraphs):
    info = info_for(OLMO_TOKENIZER)
    enc = Encoder(info, backend="tiktoken", check_rate=0.1)
    enc.fast = _WrongFast(enc.ref)
    texts = paragraphs[:50]
    ids, lengths = enc.encode(texts)
    ref_ids, ref_len = Encoder(info, backend="hf").encode(texts)
    assert np.array_equal(ids, ref_ids) and np.array_equal(lengths, ref_len)
    assert enc.backend == "hf" and enc.fallbacks == 1


def test_unsupported_tokenizers_use_the_reference(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "hello": 1, "</s>": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "wordlevel.json"
    tok.save(str(path))
    info = info_for(str(path))
    assert Encoder(info).backend == "hf"
    with pytest.raises(Exception, match="tiktoken backend unusable"):
        Encoder(info, backend="tiktoken")
    ids, lengths = Encoder(info).encode(["hello hello", "nope"])
    assert ids.tolist() == [1, 1, 0] and lengths.tolist() == [2, 1]


def test_auto_backend_is_a_fast_one_for_byte_level_bpe(bos_tokenizer):
    for path in (OLMO_TOKENIZER, DOLMA2_TOKENIZER, bos_tokenizer):
        assert Encoder(info_for(path)).backend in ("gigatoken", "tiktoken")
    assert Encoder(info_for(OLMO_TOKENIZER)).backend == "gigatoken"


def test_inner_eos_names_each_document_with_an_eos_before_its_last_token():
    import dataclasses

    from instmix.tokenize.framing import Encoded, inner_eos

    rng = np.random.default_rng(3)
    info = dataclasses.replace(load_tokenizer_info(TokenizerSpec(path=OLMO_TOKENIZER)),
                               eos_token_id=2)
    for _ in range(200):
        lengths = rng.integers(1, 6, rng.integers(0, 12))
        docs = [list(rng.integers(0, 4, n - 1)) + [2] for n in lengths]  # EOS last
        tokens = np.array([t for d in docs for t in d], np.uint32)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        enc = Encoded(tokens, offsets, None)
        want = [i for i, d in enumerate(docs) if 2 in d[:-1]]
        assert inner_eos(enc, info).tolist() == want
