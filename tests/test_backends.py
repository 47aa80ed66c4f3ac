"""The fast backends (gigatoken, tiktoken) against the reference, and the unit fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import DOLMA2_TOKENIZER, OLMO_TOKENIZER, config, write_jsonl

import instmix
from instmix.builder import pipeline
from instmix.builder.pipeline import SMALL_WORK_BYTES, choose_backend
from instmix.config import TokenizerSpec
from instmix.tokenize import bpe_giga
from instmix.tokenize.bpe_giga import without_special_added
from instmix.tokenize.cache import build_unit
from instmix.tokenize.encoder import Encoder
from instmix.tokenize.facts import load_tokenizer_info

TOKENIZERS = [OLMO_TOKENIZER, DOLMA2_TOKENIZER]


def info_for(path):
    return load_tokenizer_info(TokenizerSpec(path=path))


@pytest.mark.parametrize("path", TOKENIZERS)
def test_gigatoken_gives_reference_ids_on_real_text(path, real_docs, paragraphs):
    info = info_for(path)
    fast = Encoder(info, backend="gigatoken", check_rate=0)
    ref = Encoder(info, backend="hf")
    assert fast.backend == "gigatoken"
    texts = [d["text"] for d in real_docs] + paragraphs[:2000] + [
        "tabs\t\tand  spaces  ", "émoji 🙂 and 中文", "Cafe\u0301", "   ", "\n\n\n x"]
    ids_f, len_f = fast.encode(texts)
    ids_r, len_r = ref.encode(texts)
    assert np.array_equal(len_f, len_r) and np.array_equal(ids_f, ids_r)
    assert len(ids_r) > 300_000


@pytest.mark.parametrize("path", TOKENIZERS)
def test_auto_picks_gigatoken(path):
    assert Encoder(info_for(path)).backend == "gigatoken"


@pytest.mark.parametrize("path", TOKENIZERS)
@pytest.mark.parametrize("backend", ["hf", "gigatoken", "tiktoken"])
def test_special_token_strings_in_text_never_become_special_ids(path, backend):
    info = info_for(path)
    with open(path, encoding="utf-8") as f:
        specials = {t["content"]: t["id"] for t in json.load(f)["added_tokens"] if t["special"]}
    assert info.eos_token in specials and len(specials) >= 1
    texts = [f"a {t} b{t}{t}\n{t}" for t in specials] + ["".join(specials)]
    enc = Encoder(info, backend=backend, check_rate=0)
    ids, lengths = enc.encode(texts)
    assert not set(ids.tolist()) & set(specials.values())
    ref_ids, ref_len = Encoder(info, backend="hf").encode(texts)
    assert np.array_equal(ids, ref_ids) and np.array_equal(lengths, ref_len)


class _LateWrongFast:
    """Wrong ids on documents that a stride-2 sample skips, and from the second batch on
    also on sampled ones: only a whole-unit redo removes the first batch's wrong ids."""

    def __init__(self, ref):
        self.ref, self.calls, self.seen = ref, 0, 0

    def encode(self, texts):
        self.calls += 1
        out = []
        for t in texts:
            ids = self.ref.encode(t, add_special_tokens=False).ids
            if self.seen % 2 == 1 or self.calls >= 2:
                ids = ids[:-1] + [7]
            out.append(ids)
            self.seen += 1
        return (np.array([i for e in out for i in e], dtype=np.uint32),
                np.array([len(e) for e in out], dtype=np.int64))


def test_a_sampled_mismatch_reencodes_the_whole_unit(tmp_path, paragraphs):
    info = info_for(OLMO_TOKENIZER)
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": p} for p in paragraphs[:60]])
    src = instmix.load_config(config(tmp_path, [{"name": "a", "paths": [path]}])).sources[0]
    enc = Encoder(info, backend="tiktoken", check_rate=0.5)
    enc.fast = wrong = _LateWrongFast(info.reference())
    root = str(tmp_path / "cache")
    unit = build_unit(root, "k1", src, [path], "in.jsonl", info, enc, skip_bad=False,
                      batch_bytes=2000)
    assert wrong.calls >= 2  # the first batch passed its sample, the second did not
    ref_enc = Encoder(info, backend="hf")
    ref = build_unit(root, "k2", src, [path], "in.jsonl", info, ref_enc, skip_bad=False,
                     batch_bytes=2000)
    assert np.array_equal(np.asarray(unit.tokens), np.asarray(ref.tokens))
    assert np.array_equal(np.asarray(unit.offsets), np.asarray(ref.offsets))
    assert unit.meta.backend == "hf" and enc.fallbacks == 1
    assert enc.backend == "tiktoken"  # the next unit starts with the fast backend again
    assert sorted(os.listdir(root)) == ["k1", "k2"]  # the abandoned attempt left nothing


def test_sampling_restarts_at_every_unit(tmp_path, paragraphs):
    info = info_for(OLMO_TOKENIZER)
    enc = Encoder(info, backend="tiktoken", check_rate=0.25)
    enc.encode(paragraphs[:3], strict=True)
    assert enc.checked == 3
    enc.start_unit()
    assert enc.checked == 0


def test_auto_takes_the_reference_for_small_work():
    assert choose_backend("auto", SMALL_WORK_BYTES - 1) == "hf"
    assert choose_backend("auto", SMALL_WORK_BYTES) == "auto"
    assert choose_backend("gigatoken", 10) == "gigatoken"


@pytest.mark.parametrize("path", TOKENIZERS)
def test_builds_are_byte_identical_across_backends(tmp_path, real_docs, path):
    files = [write_jsonl(tmp_path / "in" / f"p{i}.jsonl.zst", real_docs[i::3], "zst")
             for i in range(3)]
    outs = []
    for backend in ("hf", "gigatoken", "tiktoken"):
        cfg = config(tmp_path, [{"name": "a", "paths": files}], output=str(tmp_path / backend),
                     cache_dir=str(tmp_path / f"cache-{backend}"),
                     tokenizer={"path": path, "backend": backend})
        instmix.build(instmix.load_config(cfg))
        metas = [json.load(open(os.path.join(tmp_path, f"cache-{backend}", k, "meta.json")))
                 for k in os.listdir(tmp_path / f"cache-{backend}") if "." not in k]
        assert {m["backend"] for m in metas} == {backend}
        outs.append({n: open(os.path.join(tmp_path, backend, n), "rb").read()
                     for n in sorted(os.listdir(tmp_path / backend))})
    assert outs[0] == outs[1] == outs[2]


def test_auto_builds_with_gigatoken_above_the_small_work_size(tmp_path, real_docs, monkeypatch):
    files = [write_jsonl(tmp_path / "in" / f"p{i}.jsonl.zst", real_docs[i::2], "zst")
             for i in range(2)]
    backends = []
    for limit, name in ((1 << 40, "small"), (0, "large")):
        monkeypatch.setattr(pipeline, "SMALL_WORK_BYTES", limit)
        cache = tmp_path / f"cache-{name}"
        instmix.build(instmix.load_config(config(
            tmp_path, [{"name": "a", "paths": files}], output=str(tmp_path / name),
            cache_dir=str(cache))))
        backends.append({json.load(open(cache / k / "meta.json"))["backend"]
                         for k in os.listdir(cache) if "." not in k})
    assert backends == [{"hf"}, {"gigatoken"}]
    assert (tmp_path / "small" / "part-00000.npy").read_bytes() == \
        (tmp_path / "large" / "part-00000.npy").read_bytes()


@pytest.mark.parametrize("path", TOKENIZERS)
@pytest.mark.parametrize("indent", [None, 2])
def test_gigatoken_copy_drops_only_special_added_tokens(path, indent):
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    text = json.dumps(spec, indent=indent, ensure_ascii=False)
    out = json.loads(without_special_added(text))
    kept = [t for t in spec["added_tokens"] if not t["special"]]
    assert len(kept) < len(spec["added_tokens"])
    assert out == dict(spec, added_tokens=kept)
    # added_tokens after the model (not how Hugging Face writes it) is found as well
    moved = json.dumps({"model": spec["model"], "added_tokens": spec["added_tokens"]})
    assert json.loads(without_special_added(moved)) == {"model": spec["model"],
                                                        "added_tokens": kept}
    assert without_special_added('{"model": {"added_tokens": 1}}') == \
        '{"model": {"added_tokens": 1}}'


@pytest.mark.parametrize("path", TOKENIZERS)
def test_gigatoken_text_by_text_and_batch_paths_agree(path, real_docs, paragraphs):
    info = info_for(path)
    fast = bpe_giga.load(path, False, info.reference().model)
    long_texts = [d["text"] for d in real_docs]
    short = paragraphs[:500]
    for texts in (long_texts, short, long_texts[:3] + short[:50]):
        each = fast.encode_each(texts)
        batch = fast.encode(texts, parallel=True)  # the awkward path whatever the lengths
        assert np.array_equal(each[0], batch[0]) and np.array_equal(each[1], batch[1])
        auto = fast.encode(texts)
        assert np.array_equal(auto[0], batch[0]) and np.array_equal(auto[1], batch[1])
    ref = Encoder(info, backend="hf")
    assert np.array_equal(fast.encode(long_texts)[0], ref.encode(long_texts)[0])


def test_gigatoken_probe_check_does_not_import_awkward(tmp_path):
    code = ("import sys; from instmix.config import TokenizerSpec; "
            "from instmix.tokenize.facts import load_tokenizer_info; "
            "from instmix.tokenize.encoder import Encoder; "
            f"e = Encoder(load_tokenizer_info(TokenizerSpec(path={DOLMA2_TOKENIZER!r})), "
            "'gigatoken', threads=1); print(e.backend, 'awkward' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["gigatoken", "False"]
