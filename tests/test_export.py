"""instmix export: generated configs parse and match the build; probability math;
config checks; atomic writes. (The real trainer packages: tests/integration.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from fractions import Fraction

import numpy as np
import pytest
import yaml
from conftest import DOLMA2_TOKENIZER, ROOT, config, write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

import instmix
from instmix.errors import ConfigError, InstmixError
from instmix.export import check_config, export, load_facts
from instmix.export.files import trainer_path
from instmix.export.hf_tokenizer import export_tokenizer
from instmix.export.interleave import (
    doc_probabilities,
    expected_token_shares,
    round_probabilities,
    simulate_interleave_under,
)
from instmix.format.manifest import load_manifest
from instmix.format.reader import iter_build_documents, open_tokens

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def builds(tmp_path_factory, paragraphs, bos_tokenizer) -> dict:
    root = tmp_path_factory.mktemp("export-builds")
    raw = write_jsonl(root / "raw.jsonl", [{"text": p} for p in paragraphs[:400]])
    orca = write_jsonl(root / "orca.jsonl", [{"question": p[: len(p) // 2],
                                              "response": p[len(p) // 2:]}
                                             for p in paragraphs[400:550]])

    def make(name, **kw):
        loss = kw.pop("orca_loss", "responses")
        srcs = [{"name": "raw", "paths": [raw], "ratio": 2},
                {"name": "orca", "paths": [orca], "kind": "openorca", "ratio": 1,
                 "max_repetition": 2, "loss": loss}]
        cfg = config(root, srcs, output=str(root / name), shard_tokens=6000, **kw)
        instmix.build(instmix.load_config(cfg))
        return str(root / name)

    return {"inter": make("inter"), "per": make("per", layout="per_source"),
            "wide": make("wide", tokenizer=DOLMA2_TOKENIZER, orca_loss="all"),
            "bos": make("bos", tokenizer=bos_tokenizer, orca_loss="all")}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "instmix", *args], capture_output=True,
                          text=True, env=ENV)


# ---------------------------------------------------------------- facts

def test_facts_pad_ids_and_dtypes(builds):
    olmo, wide, bos = (load_facts(builds[k]) for k in ("inter", "wide", "bos"))
    assert (olmo.vocab_size, olmo.eos_token_id, olmo.pad_token_id, olmo.dtype) == \
        (50280, 50279, 1, "uint16")
    assert (wide.vocab_size, wide.eos_token_id, wide.pad_token_id, wide.dtype) == \
        (100278, 100257, 100277, "uint32")
    # no pad token: BOS, which OLMo-core does not take for part of the last document
    assert bos.bos_token_id is not None and bos.pad_token_id == bos.bos_token_id
    assert olmo.has_masks and not wide.has_masks
    per = load_facts(builds["per"])
    assert all(len(s.files) >= 1 for s in per.used_sources)


def test_not_a_build(tmp_path):
    with pytest.raises(InstmixError, match="not an instmix build"):
        load_facts(str(tmp_path))


@pytest.mark.parametrize("framework", ["olmo", "olmo-core", "llamafactory", "tokenizer"])
def test_an_object_store_out_is_a_one_line_error_naming_why(builds, framework):
    """Trainers load an export's files locally: ``--out s3://...`` is refused (exit 2) with
    the reason, before anything is written or any store is contacted."""
    def tree():
        return sorted((d, sorted(names)) for d, _, names in os.walk(builds["inter"]))

    before = tree()
    r = cli("export", framework, builds["inter"], "--out", "s3://no-such-bucket-x/exp")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "s3://no-such-bucket-x/exp: --out must be a local " \
        "folder: trainers read these configs" in r.stderr and "Traceback" not in r.stderr
    assert tree() == before  # nothing written into the build


# ---------------------------------------------------------------- OLMo

def test_olmo_yaml_matches_the_build(builds, tmp_path):
    r = export("olmo", builds["inter"], str(tmp_path), seq_len=128)
    doc = yaml.safe_load((tmp_path / "olmo-data.yaml").read_text())
    m = load_manifest(builds["inter"])
    assert doc["model"] == {"vocab_size": 50280, "eos_token_id": 50279, "pad_token_id": 1,
                            "max_sequence_length": 128}
    assert doc["data"]["paths"] == m.shard_paths()
    assert doc["data"]["label_mask_paths"] == m.mask_paths()
    assert doc["data"]["memmap_dtype"] == "uint16"
    assert r.report["instances"] == sum(s["tokens"] // 128 for s in m.shards)
    text = (tmp_path / "olmo-data.yaml").read_text()
    assert text.startswith("# OLMo") and "Merge it into your training YAML" in text


def test_olmo_per_source_datasets_and_mask_order(builds, tmp_path):
    export("olmo", builds["per"], str(tmp_path), seq_len=128, data_root="s3://bucket/mix")
    data = yaml.safe_load((tmp_path / "olmo-data.yaml").read_text())["data"]
    assert list(data["datasets"]) == ["raw", "orca"]
    # OLMo reads labels in sorted order: orca first, so its masks come first
    order = [p for k in sorted(data["datasets"]) for p in data["datasets"][k]]
    assert [p[:-len(".npy")] + ".mask" for p in order] == data["label_mask_paths"]
    assert all(p.startswith("s3://bucket/mix/sources/") for p in order)


def test_seq_len_longer_than_every_file(builds, tmp_path):
    with pytest.raises(InstmixError, match="seq_len 100000 is longer than every token file"):
        export("olmo-core", builds["inter"], str(tmp_path), seq_len=100_000)
    r = export("olmo", builds["inter"], str(tmp_path), seq_len=5000)
    assert any("of the tokens are dropped at file ends" in line for line in r.lines)


def test_olmo_no_masks_no_mask_paths(builds, tmp_path):
    export("olmo", builds["wide"], str(tmp_path))
    data = yaml.safe_load((tmp_path / "olmo-data.yaml").read_text())["data"]
    assert "label_mask_paths" not in data and data["memmap_dtype"] == "uint32"


# ---------------------------------------------------------------- OLMo-core

class _Recorder:
    """Stands in for an OLMo-core config class: records its keyword arguments."""

    def __init__(self, **kw):
        self.kw = kw

    @classmethod
    def from_src_mix(cls, mix, **kw):
        return cls(source_mixture_config=mix, **kw)


@pytest.fixture
def fake_olmo_core(monkeypatch):
    names = ["NumpyFSLDatasetConfig", "NumpyPackedFSLDatasetConfig", "TokenizerConfig",
             "SourceMixtureConfig", "SourceMixtureDatasetConfig", "SourceMixtureList"]
    classes = {n: type(n, (_Recorder,), {}) for n in names}
    for mod in ("olmo_core", "olmo_core.data", "olmo_core.data.source_mixture"):
        module = types.ModuleType(mod)
        module.__dict__.update(classes)
        monkeypatch.setitem(sys.modules, mod, module)
    return classes


def load_snippet(path):
    ns: dict = {}
    exec(compile(open(path).read(), str(path), "exec"), ns)
    return ns


def test_olmo_core_snippet_and_yaml(builds, tmp_path, fake_olmo_core):
    export("olmo-core", builds["inter"], str(tmp_path), seq_len=64, work_dir="/w")
    ns = load_snippet(tmp_path / "olmo_core_data.py")
    m = load_manifest(builds["inter"])
    fsl = ns["fsl_dataset_config"]().kw
    assert fsl["paths"] == m.shard_paths() and fsl["label_mask_paths"] == m.mask_paths()
    assert fsl["dtype"] == "uint16" and fsl["sequence_length"] == 64 and fsl["work_dir"] == "/w"
    assert fsl["tokenizer"].kw == {"vocab_size": 50280, "eos_token_id": 50279,
                                   "pad_token_id": 1, "bos_token_id": None}
    packed = ns["packed_dataset_config"]().kw  # default: fragment, nothing dropped
    assert packed["long_doc_strategy"] == "fragment" and packed["paths"] == fsl["paths"]
    assert "mixture_dataset_config" not in ns  # interleaved builds: no source mixture
    y = yaml.safe_load((tmp_path / "olmo_core_fsl.yaml").read_text())
    assert y["paths"] == fsl["paths"] and y["label_mask_paths"] == fsl["label_mask_paths"]
    assert y["tokenizer"] == fsl["tokenizer"].kw and y["dtype"] == "uint16"
    assert yaml.safe_load((tmp_path / "olmo_core_packed.yaml").read_text())[
        "long_doc_strategy"] == "fragment"
    assert not (tmp_path / "olmo_core_mixture.yaml").exists()


def test_olmo_core_packed_truncate_reports_and_refuses_drops(builds, tmp_path):
    m = load_manifest(builds["inter"])
    lengths: dict = {}
    for d in iter_build_documents(builds["inter"]):
        lengths.setdefault(d.src, []).append(len(d.tokens))
    want = {s: sum(max(0, n - 64) for n in v) for s, v in lengths.items()}
    assert all(want.values())  # both sources have documents longer than 64 tokens
    r = export("olmo-core", builds["inter"], str(tmp_path / "f"), seq_len=64)
    assert r.report["packed_long_doc_strategy"] == "fragment"
    assert r.report["packed_tokens_dropped"] == {"raw": 0, "orca": 0}
    assert {s: v["truncate_drops"] for s, v in r.report["long_documents"].items()} == want
    assert any("every token kept" in line for line in r.lines)
    share = max(want[s["name"]] / s["tokens"] for s in m.sources)
    with pytest.raises(InstmixError, match=r"truncate at seq_len 64 drops .* above "
                       r"max_dropped 0.01; use fragment, or raise --max-dropped"):
        export("olmo-core", builds["inter"], str(tmp_path / "t"), seq_len=64,
               long_doc_strategy="truncate")
    assert not (tmp_path / "t").exists()
    r = export("olmo-core", builds["inter"], str(tmp_path / "t"), seq_len=64,
               long_doc_strategy="truncate", max_dropped=share)
    assert r.report["packed_tokens_dropped"] == want
    assert yaml.safe_load((tmp_path / "t" / "olmo_core_packed.yaml").read_text())[
        "long_doc_strategy"] == "truncate"
    with pytest.raises(ConfigError, match="long_doc_strategy: expected fragment or truncate"):
        export("olmo-core", builds["inter"], str(tmp_path / "x"), long_doc_strategy="cut")


def test_olmo_core_source_mixture_reproduces_the_plan(builds, tmp_path, fake_olmo_core):
    r = export("olmo-core", builds["per"], str(tmp_path), seq_len=64, global_batch_size=256)
    m = load_manifest(builds["per"])
    ns = load_snippet(tmp_path / "olmo_core_data.py")
    cfg = ns["mixture_dataset_config"]().kw
    mix = cfg["source_mixture_config"].kw
    assert mix["requested_tokens"] == m["total_tokens"] and mix["global_batch_size"] == 256
    sources = {s.kw["source_name"]: s.kw for s in mix["source_list"].kw["sources"]}
    assert sum(s["target_ratio"] for s in sources.values()) == pytest.approx(1, abs=1e-12)
    for src in m.sources:
        s = sources[src["name"]]
        assert s["target_ratio"] == src["tokens"] / m["total_tokens"]
        assert s["max_repetition_ratio"] == 1.0
        assert s["paths"] == [m.path(x["path"]) for x in m.shards
                              if x["sources"].keys() == {src["name"]}]
        # every whole instance of every file, and nothing more
        want = sum(x["tokens"] // 64 * 64 for x in m.shards if src["name"] in x["sources"])
        assert r.report["mixture_expected_tokens"][src["name"]] == want
    y = yaml.safe_load((tmp_path / "olmo_core_mixture.yaml").read_text())
    ysrc = y["source_mixture_config"]["source_list"]["sources"]
    assert [s["source_name"] for s in ysrc] == list(sources)
    assert "label_mask_paths" not in y  # OLMo-core rejects masks with a source mixture


def test_olmo_core_options_are_validated(builds, tmp_path):
    with pytest.raises(ConfigError, match="global_batch_size: 100 tokens is not a multiple"):
        export("olmo-core", builds["per"], str(tmp_path), seq_len=64, global_batch_size=100)
    with pytest.raises(ConfigError, match="requested_tokens: .* exceeds the build's"):
        export("olmo-core", builds["per"], str(tmp_path), requested_tokens=10 ** 12)
    with pytest.raises(ConfigError, match="seq_len: expected a whole number >= 1"):
        export("olmo", builds["per"], str(tmp_path), seq_len=0)


# ---------------------------------------------------------------- LLaMA-Factory

def test_llamafactory_tokenized_rows_are_our_stream(builds, tmp_path):
    import datasets

    r = export("llamafactory", builds["inter"], str(tmp_path), seq_len=100, routes=("tokenized",))
    m = load_manifest(builds["inter"])
    stream = np.concatenate([open_tokens(p, m.dtype) for p in m.shard_paths()])
    rows = datasets.load_from_disk(str(tmp_path / "tokenized"))["input_ids"]
    assert np.array_equal(np.concatenate([np.asarray(x) for x in rows]), stream)
    assert [len(x) for x in rows[:-1]] == [100] * (len(rows) - 1)
    assert len(rows) == -(-len(stream) // 100) == r.report["tokenized"]["rows"]
    recipe = yaml.safe_load((tmp_path / "llamafactory_pt_tokenized.yaml").read_text())
    assert recipe["tokenized_path"] == str(tmp_path / "tokenized")
    assert recipe["stage"] == "pt" and recipe["cutoff_len"] == 100 and recipe["dataset"]
    assert not (tmp_path / "text").exists()


def test_llamafactory_document_rows(builds, tmp_path):
    import datasets

    export("llamafactory", builds["bos"], str(tmp_path), routes=("tokenized",),
           rows="documents")
    rows = datasets.load_from_disk(str(tmp_path / "tokenized"))["input_ids"]
    docs = [d.tokens.tolist() for d in iter_build_documents(builds["bos"])]
    assert rows == docs


def test_llamafactory_text_route_default_concat_is_exact(builds, tmp_path):
    """One file, every document once in the build's order: mix_strategy concat trains on
    exactly the built token shares."""
    from tokenizers import Tokenizer

    r = export("llamafactory", builds["inter"], str(tmp_path), routes=("text",), sim_runs=50)
    info = json.loads((tmp_path / "text" / "dataset_info.json").read_text())
    assert info == {"instmix": {"file_name": "instmix.jsonl", "columns": {"prompt": "text"}}}
    rows = [json.loads(x) for x in (tmp_path / "text" / "instmix.jsonl").open()]
    docs = list(iter_build_documents(builds["inter"]))
    assert [x["source"] for x in rows] == [d.src for d in docs]  # the build's order
    tok = Tokenizer.from_file(load_facts(builds["inter"]).tokenizer_path)
    raw = [x["text"] for x in rows if x["source"] == "raw"]
    assert [e.ids for e in tok.encode_batch(raw, add_special_tokens=False)] == \
        [d.tokens[:-1].tolist() for d in docs if d.src == "raw"]
    recipe = yaml.safe_load((tmp_path / "llamafactory_pt_text.yaml").read_text())
    assert recipe["dataset"] == "instmix" and recipe["mix_strategy"] == "concat"
    assert "interleave_probs" not in recipe and "packing" not in recipe
    m = load_manifest(builds["inter"])
    assert r.report["text"]["token_shares"] == [s["tokens"] / m["total_tokens"]
                                                for s in m.sources]
    assert any("exactly the built token shares" in line for line in r.lines)
    assert any("interleave_under instead: keeps" in line for line in r.lines)


def test_llamafactory_text_route_interleave_option(builds, tmp_path):
    from tokenizers import Tokenizer

    r = export("llamafactory", builds["inter"], str(tmp_path), routes=("text",), sim_runs=50,
               mix_strategy="interleave_under")
    info = json.loads((tmp_path / "text" / "dataset_info.json").read_text())
    assert info == {n: {"file_name": f"{n}.jsonl", "columns": {"prompt": "text"}}
                    for n in ("raw", "orca")}
    tok = Tokenizer.from_file(load_facts(builds["inter"]).tokenizer_path)
    raw = [json.loads(x)["text"] for x in (tmp_path / "text" / "raw.jsonl").open()]
    ours = [d.tokens[:-1].tolist() for d in iter_build_documents(builds["inter"])
            if d.src == "raw"]
    assert [e.ids for e in tok.encode_batch(raw, add_special_tokens=False)] == ours
    recipe = yaml.safe_load((tmp_path / "llamafactory_pt_text.yaml").read_text())
    text = r.report["text"]
    assert recipe["dataset"] == "raw,orca" and recipe["mix_strategy"] == "interleave_under"
    assert recipe["interleave_probs"] == ",".join(text["interleave_probs"])
    assert sum(Fraction(p) for p in text["interleave_probs"]) == 1
    assert "packing" not in recipe  # an explicit true would shorten blocks by one
    # probabilities are by documents: p_s proportional to share_s / mean length_s
    m = load_manifest(builds["inter"])
    docs = {s["name"]: s["documents"] for s in m.sources}
    assert [float(p) for p in text["interleave_probs"]] == pytest.approx(
        [docs["raw"] / sum(docs.values()), docs["orca"] / sum(docs.values())], abs=1e-6)
    assert any("interleave_under stops" in line for line in r.lines)
    with pytest.raises(ConfigError, match="mix_strategy: expected one of concat"):
        export("llamafactory", builds["inter"], str(tmp_path), mix_strategy="interleave_once")


def test_llamafactory_one_source_is_not_interleaved(tmp_path, paragraphs):
    raw = write_jsonl(tmp_path / "raw.jsonl", [{"text": p} for p in paragraphs[:50]])
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": p} for p in paragraphs[50:60]])
    cfg = config(tmp_path, [{"name": "raw", "paths": [raw]},
                            {"name": "other", "paths": [other], "ratio": 0}])
    instmix.build(instmix.load_config(cfg))
    r = export("llamafactory", cfg["output"], str(tmp_path / "lf"), routes=("text",))
    recipe = yaml.safe_load((tmp_path / "lf" / "llamafactory_pt_text.yaml").read_text())
    assert recipe["dataset"] == "instmix" and "interleave_probs" not in recipe
    assert recipe["mix_strategy"] == "concat" and r.report["text"]["interleave_under"] is None
    assert sorted(os.listdir(tmp_path / "lf" / "text")) == ["dataset_info.json",
                                                            "instmix.jsonl"]


def test_llamafactory_options_are_validated(builds, tmp_path):
    with pytest.raises(ConfigError, match="rows: expected one of blocks, documents"):
        export("llamafactory", builds["inter"], str(tmp_path), rows="lines")
    with pytest.raises(ConfigError, match="routes: expected some of tokenized, text"):
        export("llamafactory", builds["inter"], str(tmp_path), routes=("json",))


# ---------------------------------------------------------------- probabilities

def test_doc_probabilities_turn_token_shares_into_document_odds():
    # 50/50 by tokens with documents of 1000 and 50 tokens: 1 long per 20 short
    p = doc_probabilities([0.5, 0.5], [1000, 50])
    assert p.tolist() == pytest.approx([1 / 21, 20 / 21])
    assert expected_token_shares(p, [1000, 50]).tolist() == pytest.approx([0.5, 0.5])
    with pytest.raises(InstmixError):
        doc_probabilities([0.5, 0.5], [10, 0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.001, 1000), min_size=1, max_size=8), st.integers(2, 9))
def test_rounded_probabilities_sum_to_one(weights, decimals):
    p = np.asarray(weights) / sum(weights)
    s = round_probabilities(p, decimals)
    assert sum(Fraction(x) for x in s) == 1
    assert max(abs(float(a) - b) for a, b in zip(s, p)) <= 10 ** -decimals


def test_simulated_stop_matches_the_rule():
    # one source with 3 docs, probability ~1: the stream is those 3 docs, error 0
    lengths = [np.array([5, 5, 5]), np.array([7])]
    e = simulate_interleave_under(lengths, [1.0, 0.0], [1.0, 0.0], runs=5)
    assert e.error_worst == 0 and e.used_fraction_mean == pytest.approx(15 / 22)
    # balanced odds over many equal documents: the stop costs little
    lengths = [np.full(2000, 10), np.full(1000, 20)]
    e = simulate_interleave_under(lengths, [2 / 3, 1 / 3], [0.5, 0.5], runs=50, seed=1)
    assert e.error_p50 < 0.03 and e.used_fraction_mean > 0.9
    assert simulate_interleave_under(lengths, [2 / 3, 1 / 3], [0.5, 0.5], budget=10) is None


# ---------------------------------------------------------------- checks

def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_check_accepts_the_exported_configs(builds, tmp_path):
    for fw, name in (("olmo", "olmo-data.yaml"), ("olmo-core", "olmo_core_fsl.yaml"),
                     ("olmo-core", "olmo_core_mixture.yaml")):
        out = tmp_path / fw
        export(fw, builds["per"], str(out))
        assert check_config(fw, builds["per"], str(out / name)) == []
    export("llamafactory", builds["per"], str(tmp_path / "lf"), sim_runs=0,
           model=load_facts(builds["per"]).tokenizer_path)
    for name in ("llamafactory_pt_tokenized.yaml", "llamafactory_pt_text.yaml"):
        check_config("llamafactory", builds["per"], str(tmp_path / "lf" / name))


@pytest.mark.parametrize("change, message", [
    ({"model": {"vocab_size": 50304}}, "model.vocab_size: 50304 but the build's tokenizer "
     "has 50280 ids"),
    ({"model": {"eos_token_id": 0}}, "model.eos_token_id: 0 but every document of the build "
     "ends with 50279"),
    ({"model": {"pad_token_id": 60000}}, "model.pad_token_id: 60000 is not an id below"),
    ({"model": {"embedding_size": 50000}}, "model.embedding_size: 50000 is smaller"),
    ({"data": {"memmap_dtype": "uint32"}}, "data.memmap_dtype: uint32 but the build's token "
     "files are uint16"),
])
def test_check_olmo_mismatches(builds, tmp_path, change, message):
    export("olmo", builds["inter"], str(tmp_path))
    doc = yaml.safe_load((tmp_path / "olmo-data.yaml").read_text())
    for section, values in change.items():
        doc[section].update(values)
    path = write_yaml(tmp_path / "train.yaml", doc)
    with pytest.raises(ConfigError) as e:
        check_config("olmo", builds["inter"], path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_check_olmo_defaults_and_files(builds, tmp_path):
    # OLMo's defaults are GPT-2's: vocab 50257, EOS 50256
    path = write_yaml(tmp_path / "a.yaml", {"data": {"paths": ["x.npy"]}})
    with pytest.raises(ConfigError, match="model.vocab_size: 50257"):
        check_config("olmo", builds["inter"], path)
    export("olmo", builds["per"], str(tmp_path / "e"))
    doc = yaml.safe_load((tmp_path / "e" / "olmo-data.yaml").read_text())
    masks = doc["data"]["label_mask_paths"]
    doc["data"]["label_mask_paths"] = masks[::-1]  # manifest order, not OLMo's sorted order
    path = write_yaml(tmp_path / "b.yaml", doc)
    with pytest.raises(ConfigError, match=r"data.label_mask_paths\[0\]: .* is not the mask of"):
        check_config("olmo", builds["per"], path)
    del doc["data"]["label_mask_paths"]
    path = write_yaml(tmp_path / "c.yaml", doc)
    with pytest.raises(ConfigError, match="label_mask_paths: missing, but the build masks"):
        check_config("olmo", builds["per"], path)


def test_check_olmo_core_mismatches(builds, tmp_path):
    base = {"tokenizer": {"vocab_size": 100278, "eos_token_id": 100257, "pad_token_id": 100277},
            "paths": [], "sequence_length": 64}
    cfg = {"dataset": dict(base)}
    check_config("olmo-core", builds["wide"], write_yaml(tmp_path / "ok.yaml", cfg))
    cfg = {"dataset": dict(base, tokenizer={"identifier": "allenai/dolma2-tokenizer"})}
    check_config("olmo-core", builds["wide"], write_yaml(tmp_path / "preset.yaml", cfg))
    cfg = {"dataset": dict(base, tokenizer={"identifier": "gpt2"})}
    with pytest.raises(ConfigError, match="dataset.tokenizer.vocab_size: 50257"):
        check_config("olmo-core", builds["wide"], write_yaml(tmp_path / "gpt2.yaml", cfg))
    cfg = {"dataset": dict(base, dtype="uint16")}
    with pytest.raises(ConfigError, match="dataset.dtype: uint16 but the build's token files "
                       "are uint32"):
        check_config("olmo-core", builds["wide"], write_yaml(tmp_path / "dt.yaml", cfg))
    # the OLMo 2 preset on a GPT-NeoX build: the most reported mistake
    cfg = {"tokenizer": {"identifier": "allenai/dolma2-tokenizer"}, "paths": []}
    with pytest.raises(ConfigError, match="tokenizer.vocab_size: 100278 but the build's "
                       "tokenizer has 50280 ids"):
        check_config("olmo-core", builds["inter"], write_yaml(tmp_path / "d2.yaml", cfg))
    facts = load_facts(builds["bos"])
    cfg = {"tokenizer": {"vocab_size": facts.vocab_size, "eos_token_id": facts.eos_token_id,
                         "pad_token_id": facts.pad_token_id}}
    with pytest.raises(ConfigError, match=f"tokenizer.bos_token_id: None but the build needs "
                       f"{facts.bos_token_id}"):
        check_config("olmo-core", builds["bos"], write_yaml(tmp_path / "bos.yaml", cfg))
    with pytest.raises(ConfigError, match="no dataset config with a `tokenizer:`"):
        check_config("olmo-core", builds["bos"], write_yaml(tmp_path / "none.yaml", {"a": 1}))


def test_check_llamafactory(builds, tmp_path):
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_bytes(open(DOLMA2_TOKENIZER, "rb").read())
    r = export("llamafactory", builds["inter"], str(tmp_path / "lf"), seq_len=64, sim_runs=0,
               model=str(tok_dir), mix_strategy="interleave_under")
    recipe = str(tmp_path / "lf" / "llamafactory_pt_tokenized.yaml")
    with pytest.raises(ConfigError, match="model_name_or_path: .* has 100278 ids but the "
                       "build's tokenizer has 50280"):
        check_config("llamafactory", builds["inter"], recipe)
    doc = yaml.safe_load(open(recipe))
    doc.update(model_name_or_path="org/hub-model", cutoff_len=2048)
    with pytest.raises(ConfigError, match="cutoff_len: 2048 but .* holds 64-token blocks"):
        check_config("llamafactory", builds["inter"], write_yaml(tmp_path / "a.yaml", doc))
    doc = yaml.safe_load(open(tmp_path / "lf" / "llamafactory_pt_text.yaml"))
    doc.update(model_name_or_path="org/hub-model", interleave_probs="0.5,0.5")
    with pytest.raises(ConfigError, match="interleave_probs: '0.5,0.5' does not give the "
                       "build's token shares; use '" + ",".join(r.report["text"][
                           "interleave_probs"])):
        check_config("llamafactory", builds["inter"], write_yaml(tmp_path / "b.yaml", doc))
    doc.update(interleave_probs=",".join(r.report["text"]["interleave_probs"]), packing=True)
    notes = check_config("llamafactory", builds["inter"], write_yaml(tmp_path / "c.yaml", doc))
    assert any("not a local tokenizer" in n for n in notes)
    assert any("cutoff_len - 1" in n for n in notes)


# ---------------------------------------------------------------- command line and files

def test_cli_export_and_check(builds, tmp_path):
    r = cli("export", "olmo", builds["inter"], "--seq-len", "256")
    assert r.returncode == 0, r.stderr
    out = os.path.join(builds["inter"], "export-olmo")
    assert f"wrote {out}/olmo-data.yaml" in r.stdout
    assert cli("verify", builds["inter"]).returncode == 0  # an export inside a build is fine
    r = cli("export", "olmo", builds["inter"], "--check", f"{out}/olmo-data.yaml")
    assert r.returncode == 0 and r.stdout.startswith("ok: ")
    bad = write_yaml(tmp_path / "bad.yaml", {"model": {"vocab_size": 50280, "eos_token_id": 0}})
    r = cli("export", "olmo", builds["inter"], "--check", bad)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"instmix: error: {bad}: model.eos_token_id: 0 but every document of the build ends "
        "with 50279 (<|endoftext|>); a wrong EOS merges documents; set 50279"]
    r = cli("export", "olmo-core", str(tmp_path))
    assert r.returncode == 2 and "not an instmix build" in r.stderr


def test_trainer_path_under_a_data_root():
    assert trainer_path("/b", "/b/sources/x/part-00000.npy", "gs://k/m/") == \
        "gs://k/m/sources/x/part-00000.npy"


# ---------------------------------------------------------------- the --out guard (issue 10.16)

def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_export_out_refuses_a_folder_instmix_did_not_make(builds, tmp_path):
    user = tmp_path / "mine"
    (user / "tokenized").mkdir(parents=True)
    (user / "tokenized" / "notes.txt").write_text("my data")
    (user / "olmo-data.yaml").write_text("model: {}\n")
    before = _tree(user)
    for fw in ("olmo", "olmo-core", "llamafactory"):
        r = cli("export", fw, builds["inter"], "--out", str(user), "--seq-len", "256")
        assert r.returncode == 2, r.stdout
        assert r.stderr.strip().splitlines() == [
            f"instmix: error: {user}: exists and is not an instmix export (no valid "
            "instmix-export.json); choose another --out or empty it"]
    assert _tree(user) == before and sorted(os.listdir(user)) == ["olmo-data.yaml", "tokenized"]
    r = cli("export", "olmo", builds["inter"], "--out", str(user / "olmo-data.yaml"))
    assert r.returncode == 2 and "exists and is not a folder" in r.stderr
    with pytest.raises(InstmixError, match="is not an instmix export"):  # the build itself
        export("olmo", builds["inter"], builds["inter"], seq_len=256)


def test_export_out_replaces_only_what_it_wrote(builds, tmp_path):
    out = tmp_path / "lf"
    export("llamafactory", builds["inter"], str(out), seq_len=256, sim_runs=0)
    report = json.loads((out / "instmix-export.json").read_text())
    assert set(report["made"]) == {"tokenized", "llamafactory_pt_tokenized.yaml", "text",
                                   "llamafactory_pt_text.yaml"}
    (out / "my-notes.md").write_text("kept")  # a user's own file beside the export
    export("llamafactory", builds["inter"], str(out), seq_len=128, sim_runs=0)  # replaced
    assert (out / "my-notes.md").read_text() == "kept"
    assert "128-token blocks" in (out / "llamafactory_pt_tokenized.yaml").read_text()
    # an entry changed since the export (or a user's entry of the same name) is left alone
    recipe = out / "llamafactory_pt_text.yaml"
    recipe.write_text(recipe.read_text() + "# my edit\n")
    (out / "tokenized" / "extra.arrow").write_bytes(b"user")
    before = _tree(out)
    with pytest.raises(InstmixError, match="llamafactory_pt_text.yaml: exists and was not "
                       "written by instmix export"):
        export("llamafactory", builds["inter"], str(out), seq_len=256, sim_runs=0,
               routes=("text",))
    r = cli("export", "llamafactory", builds["inter"], "--out", str(out), "--routes",
            "tokenized", "--sim-runs", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"{out}/tokenized: exists and was not written by instmix export" in r.stderr
    assert _tree(out) == before  # refused before anything was written
    # another framework into the same folder keeps the first one's entries recognised
    recipe.unlink()
    (out / "tokenized" / "extra.arrow").unlink()
    export("olmo", builds["inter"], str(out), seq_len=256)
    export("llamafactory", builds["inter"], str(out), seq_len=256, sim_runs=0)
    assert {"olmo-data.yaml", "tokenized"} <= set(
        json.loads((out / "instmix-export.json").read_text())["made"])


def test_export_out_stale_mixture_file_removed_only_when_ours(builds, tmp_path):
    out = tmp_path / "oc"
    export("olmo-core", builds["per"], str(out), seq_len=256)
    assert (out / "olmo_core_mixture.yaml").exists()
    export("olmo-core", builds["inter"], str(out), seq_len=256)  # interleaved: no mixture
    assert not (out / "olmo_core_mixture.yaml").exists()
    (out / "olmo_core_mixture.yaml").write_text("mine: 1\n")
    export("olmo-core", builds["inter"], str(out), seq_len=256)
    assert (out / "olmo_core_mixture.yaml").read_text() == "mine: 1\n"


# ---------------------------------------------------------------- tokenizer folder and pad checks

def _lf_recipe(tmp_path, build, model) -> str:
    export("llamafactory", build, str(tmp_path / "lf"), seq_len=64, sim_runs=0,
           routes=("tokenized",), model=str(model))
    return str(tmp_path / "lf" / "llamafactory_pt_tokenized.yaml")


def test_export_tokenizer_folder_has_eos_and_a_distinct_pad(builds, tmp_path):
    from transformers import AutoTokenizer

    for name, pad in (("inter", "<|padding|>"), ("bos", "<unk>")):
        out = tmp_path / name
        r = cli("export", "tokenizer", builds[name], "--out", str(out))
        assert r.returncode == 0, r.stderr
        facts = load_facts(builds[name])
        tok = AutoTokenizer.from_pretrained(str(out))
        assert tok.eos_token_id == facts.eos_token_id and tok.pad_token == pad
        assert tok.pad_token_id not in (facts.eos_token_id, facts.bos_token_id)
        assert (tok.bos_token_id == facts.bos_token_id) if facts.bos_token_id is not None \
            else True
        doc = next(iter_build_documents(builds[name]))
        start = int(facts.bos_token_id is not None)
        text = tok.decode(doc.tokens[start:-1].tolist())
        assert tok(text, add_special_tokens=False)["input_ids"] == doc.tokens[start:-1].tolist()
        assert check_config("llamafactory", builds[name], _lf_recipe(tmp_path / name,
                            builds[name], out)) is not None  # the folder passes --check
    with pytest.raises(ConfigError, match="pad: '<s>' is id 1, the build's EOS or BOS"):
        export_tokenizer(builds["bos"], str(tmp_path / "x"), pad="<s>")


def test_check_refuses_a_model_folder_without_pad_or_with_pad_eos(builds, tmp_path):
    model = tmp_path / "model"
    export_tokenizer(builds["inter"], str(model))
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    recipe = _lf_recipe(tmp_path, builds["inter"], model)
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 50280}))
    assert check_config("llamafactory", builds["inter"], recipe) == []
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 50304}))
    assert any("padded embedding" in n for n in check_config("llamafactory", builds["inter"],
                                                               recipe))
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 50257}))
    with pytest.raises(ConfigError, match="vocab_size 50257 but the build's ids go up to 50279"):
        check_config("llamafactory", builds["inter"], recipe)
    (model / "config.json").unlink()
    (model / "tokenizer_config.json").write_text(json.dumps(
        {**cfg, "pad_token": "<|endoftext|>"}))
    with pytest.raises(ConfigError, match="pad token '<|endoftext|>' is EOS .id 50279.: the "
                       "collator masks every EOS label"):
        check_config("llamafactory", builds["inter"], recipe)
    del cfg["pad_token"]
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    (model / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    r = cli("export", "llamafactory", builds["inter"], "--check", recipe)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "names no pad token, so LLaMA-Factory pads with EOS" in r.stderr
    assert "instmix export tokenizer" in r.stderr
