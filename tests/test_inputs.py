"""Every input format, and every kind of bad input, through the real builder."""

from __future__ import annotations

import json
import os

import pytest
from conftest import DOLMA2_TOKENIZER, OLMO_TOKENIZER, config, write_jsonl
from tokenizers import Tokenizer

import instmix
from instmix.errors import ConfigError, InputError
from instmix.format.reader import iter_build_documents

TEXTS = ["First document about parsing.", "Second one: ünïcödé and 中文.", "Third.\n\nWith a gap."]


def build(cfg):
    return instmix.build(instmix.load_config(cfg))


def decoded(out) -> dict[str, str]:
    tok = Tokenizer.from_file(OLMO_TOKENIZER)
    return {d.id: tok.decode(d.tokens[:-1].tolist(), skip_special_tokens=False)
            for d in iter_build_documents(out)}


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.zst", "jsonl.gz", "parquet", "save_to_disk"])
def test_each_record_format(tmp_path, fmt):
    rows = [{"text": t, "meta": i} for i, t in enumerate(TEXTS)]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = str(tmp_path / "d.parquet")
        pq.write_table(pa.Table.from_pylist(rows), path)
        label = "d.parquet"
    elif fmt == "save_to_disk":
        import datasets

        path = str(tmp_path / "saved")
        datasets.Dataset.from_list(rows).save_to_disk(path)
        label = "saved"
    else:
        compress = fmt.split(".")[1] if "." in fmt else None
        path = write_jsonl(tmp_path / f"d.{fmt}", rows, compress)
        label = f"d.{fmt}"
    cfg = config(tmp_path, [{"name": "d", "paths": [path]}])
    m = build(cfg)
    assert m["documents"] == 3
    assert decoded(cfg["output"]) == {f"{label}:{i + 1}": t for i, t in enumerate(TEXTS)}


def test_openorca_from_parquet_with_id_field(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": "q1", "system_prompt": "", "question": "Name a colour.", "response": "Blue."},
            {"id": "q2", "system_prompt": "", "question": "2+2?", "response": "4"}]
    path = str(tmp_path / "orca.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    cfg = config(tmp_path, [{"name": "orca", "paths": [path], "kind": "openorca",
                             "id_field": "id"}])
    build(cfg)
    assert decoded(cfg["output"]) == {"q1": "Name a colour. Blue.", "q2": "2+2? 4"}


def test_txt_per_file_and_per_paragraph(tmp_path):
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_text("Para one line 1\nline 2\n\n\nPara two\n", encoding="utf-8")
    (folder / "b.txt").write_text("Only one paragraph", encoding="utf-8")
    cfg = config(tmp_path, [{"name": "t", "paths": [str(folder / "*.txt")]}])
    build(cfg)
    assert decoded(cfg["output"]) == {"a.txt:1": "Para one line 1\nline 2\n\n\nPara two\n",
                                      "b.txt:1": "Only one paragraph"}
    cfg = config(tmp_path, [{"name": "t", "paths": [str(folder / "*.txt")],
                             "txt_unit": "paragraph"}], output=str(tmp_path / "p"))
    build(cfg)
    assert decoded(cfg["output"]) == {"a.txt:1": "Para one line 1\nline 2", "a.txt:5": "Para two",
                                      "b.txt:1": "Only one paragraph"}


def test_glob_over_folders_and_relative_paths_from_yaml(tmp_path):
    for sub in ("x", "y"):
        write_jsonl(tmp_path / "data" / sub / "part.jsonl", [{"text": f"doc in {sub}"}])
    yaml_path = tmp_path / "mix.yaml"
    yaml_path.write_text(
        f"tokenizer: {OLMO_TOKENIZER}\noutput: built\nsources:\n"
        "  - name: d\n    paths: ['data/**/*.jsonl']\n", encoding="utf-8")
    m = instmix.build(str(yaml_path))
    assert m["sources"][0]["files"] == 2
    # ids name the file relative to the source's common folder, so they are unambiguous
    assert decoded(tmp_path / "built") == {"x/part.jsonl:1": "doc in x", "y/part.jsonl:1": "doc in y"}


def one_line(err: Exception) -> str:
    msg = str(err)
    assert "\n" not in msg
    return msg


def test_broken_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "broken\n{"text": "ok"}\n')
    cfg = config(tmp_path, [{"name": "b", "paths": [str(path)]}])
    with pytest.raises(InputError) as e:
        build(cfg)
    assert one_line(e.value).startswith(f"{path}:2: invalid JSON")
    assert not os.path.exists(cfg["output"])


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "ok"}\n{"text": "caf\xe9"}\n')
    cfg = config(tmp_path, [{"name": "b", "paths": [str(path)]}])
    with pytest.raises(InputError) as e:
        build(cfg)
    assert one_line(e.value).startswith(f"{path}:3: invalid UTF-8")


def test_missing_and_mistyped_field_name_the_field(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "fine"}, {"body": "no text"}])
    cfg = config(tmp_path, [{"name": "m", "paths": [path]}])
    with pytest.raises(InputError) as e:
        build(cfg)
    assert one_line(e.value) == f"{path}:2: field 'text': missing (record has: body)"
    path = write_jsonl(tmp_path / "t.jsonl", [{"question": "q", "response": 5}])
    cfg = config(tmp_path, [{"name": "t", "paths": [path], "kind": "openorca"}])
    with pytest.raises(InputError, match=r"t.jsonl:1: field 'response': expected a string, got int"):
        build(cfg)


def test_skip_bad_records_counts_by_reason(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "good one"}\n{"text": \n{"body": "x"}\n{"text": "   "}\n'
                     b'[1, 2]\n{"text": "caf\xe9"}\n{"text": "good two"}\n')
    cfg = config(tmp_path, [{"name": "m", "paths": [str(path)]}], skip_bad_records=True)
    m = build(cfg)
    assert m["documents"] == 2
    assert m["sources"][0]["skipped"] == {"bad_field": 1, "bad_json": 1, "bad_utf8": 1,
                                          "empty": 1, "not_an_object": 1}


def test_empty_documents_are_skipped_and_counted_by_default(tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": "a"}, {"text": ""}, {"text": "\n \t"}])
    cfg = config(tmp_path, [{"name": "e", "paths": [path]}])
    m = build(cfg)
    assert m["documents"] == 1 and m["sources"][0]["skipped"] == {"empty": 2}


def test_source_with_only_empty_documents_fails_clearly(tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": ""}])
    with pytest.raises(instmix.InstmixError, match="no documents"):
        build(config(tmp_path, [{"name": "e", "paths": [path]}]))


def test_unknown_kind_and_unknown_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        instmix.load_config(config(tmp_path, [{"name": "x", "paths": ["a"], "kind": "poem"}]))
    assert one_line(e.value).startswith("<dict>: sources[0].kind: expected one of augmented, openorca, text")
    with pytest.raises(ConfigError, match=r"sources\[0\].ratoi: unknown key \(did you mean 'ratio'"):
        instmix.load_config(config(tmp_path, [{"name": "x", "paths": ["a"], "ratoi": 1}]))


def test_path_that_matches_nothing(tmp_path):
    cfg = config(tmp_path, [{"name": "x", "paths": [str(tmp_path / "nothing-*.jsonl")]}])
    with pytest.raises(ConfigError) as e:
        build(cfg)
    assert "sources[0].paths" in one_line(e.value) and "matches no file" in str(e.value)


def test_yaml_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("tokenizer: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: yaml: line \d+"):
        instmix.load_config(str(p))
    p.write_text(json.dumps({"tokenizer": "t", "output": "o", "sources": [
        {"name": "a", "paths": ["x"], "ratio": -1}]}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sources\[0\].ratio: must be >= 0"):
        instmix.load_config(str(p))


def test_ids_that_do_not_fit_the_dtype(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}])
    cfg = config(tmp_path, [{"name": "d", "paths": [path]}], tokenizer=DOLMA2_TOKENIZER,
                 dtype="uint16")
    with pytest.raises(ConfigError) as e:
        build(cfg)
    assert one_line(e.value) == ("<dict>: dtype: the tokenizer has 100278 ids; id 100277 does "
                                 "not fit uint16 (max 65535); use dtype: uint32 or auto")


def test_unsupported_file_type(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="unsupported file type"):
        build(config(tmp_path, [{"name": "x", "paths": [str(tmp_path / "x.csv")]}]))


def test_loss_responses_needs_a_kind_with_responses(tmp_path):
    with pytest.raises(ConfigError, match=r"sources\[0\].loss: kind text has no responses"):
        instmix.load_config(config(tmp_path, [{"name": "x", "paths": ["a"], "loss": "responses"}]))
