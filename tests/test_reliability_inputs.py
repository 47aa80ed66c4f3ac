"""Issue 10 regressions, inputs and token caches: each test is a reported reproduction."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os

import numpy as np
import pytest
import zstandard
from conftest import OLMO_TOKENIZER, config, write_jsonl
from tokenizers import Tokenizer, models, pre_tokenizers

import instmix
from instmix.cli.main import main
from instmix.errors import ConfigError, InputError, PlanError, VerifyError
from instmix.format.reader import iter_build_documents
from instmix.format.verify import verify
from instmix.io.readers import iter_records

ROWS = [{"text": f"document number {i} says something plain"} for i in range(200)]


def build(cfg):
    return instmix.build(instmix.load_config(cfg))


def jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def read_all(path, **kw):
    return list(iter_records(str(path), **kw))


# item 6 and "tracebacks": damaged compressed inputs are refused naming the file

def test_zst_cut_at_a_block_boundary_is_refused(tmp_path):
    # 4 KiB blocks: a cut at a block boundary leaves complete blocks that decode quietly
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=12)
    data = jsonl_bytes(ROWS)
    comp = zstandard.ZstdCompressor(compression_params=params)
    frame = comp.compress(data)
    cut = tmp_path / "cut.jsonl.zst"
    # a streaming frame of 2 flushed halves; cut right after the first flush
    chunker = comp.compressobj()
    first = chunker.compress(data[: len(data) // 2]) + chunker.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    cut.write_bytes(first)
    with pytest.raises(InputError, match=r"cut.jsonl.zst: zstd data ends inside a frame"):
        read_all(cut)
    (tmp_path / "whole.jsonl.zst").write_bytes(frame)
    assert len(read_all(tmp_path / "whole.jsonl.zst")) == 200


def test_zst_multi_frame_with_its_last_frame_cut_is_refused(tmp_path):
    data = jsonl_bytes(ROWS)
    comp = zstandard.ZstdCompressor()
    frames = comp.compress(data[:4000]) + comp.compress(data[4000:])
    ok = tmp_path / "ok.jsonl.zst"
    ok.write_bytes(frames)
    assert len(read_all(ok)) == 200  # every frame is read
    bad = tmp_path / "bad.jsonl.zst"
    bad.write_bytes(frames[:-5])
    with pytest.raises(InputError, match=r"bad.jsonl.zst: zstd data ends inside a frame"):
        read_all(bad)


def test_zst_followed_by_junk_is_refused(tmp_path):
    p = tmp_path / "junk.jsonl.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(ROWS)) + b"garbage!")
    with pytest.raises(InputError, match=r"junk.jsonl.zst: zstd data is corrupt .* after record"):
        read_all(p)


def test_gz_truncated_and_crc_damaged_are_refused(tmp_path):
    g = gzip.compress(jsonl_bytes(ROWS), mtime=0)
    (tmp_path / "t.jsonl.gz").write_bytes(g[: len(g) // 2])
    with pytest.raises(InputError, match=r"t.jsonl.gz: compressed data ends early"):
        read_all(tmp_path / "t.jsonl.gz")
    b = bytearray(g)
    b[-6] ^= 1  # inside the CRC32 trailer
    (tmp_path / "c.jsonl.gz").write_bytes(bytes(b))
    with pytest.raises(InputError, match=r"c.jsonl.gz: gzip data is corrupt \(CRC"):
        read_all(tmp_path / "c.jsonl.gz")


@pytest.mark.parametrize("content", [b"hello, not parquet", b""])
def test_text_or_empty_file_named_parquet(tmp_path, content):
    p = tmp_path / "x.parquet"
    p.write_bytes(content)
    with pytest.raises(InputError, match=r"x.parquet: not a readable .parquet file"):
        read_all(p)


def test_io_error_while_reading_and_unreadable_file(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    cfg = config(tmp_path, [{"name": "d", "paths": [path]}])
    import instmix.io.fs as fsio  # every local read of an input goes through its open

    real_open = open

    def no_read(p, *a, **k):
        if str(p).endswith("d.jsonl"):
            raise PermissionError(errno.EACCES, "Permission denied", p)
        return real_open(p, *a, **k)

    monkeypatch.setattr(fsio, "open", no_read, raising=False)
    with pytest.raises(InputError, match=r"d.jsonl: cannot read \(Permission denied\)"):
        build(cfg)
    monkeypatch.undo()
    def eio(p, *a, **k):
        raise OSError(errno.EIO, "Input/output error", p)

    monkeypatch.setattr(fsio, "open", eio, raising=False)
    with pytest.raises(InputError, match=r"d.jsonl: cannot read \(Input/output error\)"):
        read_all(path)


# item 7 and "smaller": symbolic links

def test_symlink_alias_is_read_once_and_a_loop_is_refused(tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "a" / "x.jsonl", ROWS[:5])
    os.symlink(data / "a", data / "alias")
    cfg = config(tmp_path, [{"name": "d", "paths": [str(data / "**" / "*.jsonl")]}])
    assert build(cfg)["documents"] == 5  # not 10
    os.symlink(data, data / "a" / "loop")
    with pytest.raises(ConfigError, match=r"loop: symbolic link to a folder that contains it"):
        build(cfg)


def test_dangling_symlink_in_a_glob_is_refused(tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "x.jsonl", ROWS[:5])
    os.symlink(data / "gone.jsonl", data / "y.jsonl")
    cfg = config(tmp_path, [{"name": "d", "paths": [str(data / "*.jsonl")]}])
    with pytest.raises(ConfigError, match=r"y.jsonl: dangling symbolic link"):
        build(cfg)


# item 10: labels and keys do not depend on sibling paths

def test_adding_a_folder_keeps_ids_and_caches_of_the_others(tmp_path):
    write_jsonl(tmp_path / "d" / "a" / "x.jsonl", ROWS[:20])
    write_jsonl(tmp_path / "d" / "b" / "y.jsonl", ROWS[20:40])
    one = [str(tmp_path / "d" / "a" / "*.jsonl")]
    cfg = config(tmp_path, [{"name": "s", "paths": one}])
    build(cfg)
    ids = {d.id for d in iter_build_documents(cfg["output"])}
    assert "x.jsonl:1" in ids
    def units_in(cache):
        return {n for n in os.listdir(cache) if os.path.isdir(cache / n)}

    units = units_in(tmp_path / "cache")
    cfg = config(tmp_path, [{"name": "s", "paths": one + [str(tmp_path / "d" / "b" / "*.jsonl")]}])
    build(cfg)
    after = units_in(tmp_path / "cache")
    assert units < after and len(after - units) == 1  # only b's file was tokenized
    assert ids <= {d.id for d in iter_build_documents(cfg["output"])}


def test_two_patterns_giving_one_label_are_refused(tmp_path):
    write_jsonl(tmp_path / "a" / "x.jsonl", ROWS[:5])
    write_jsonl(tmp_path / "b" / "x.jsonl", ROWS[5:10])
    cfg = config(tmp_path, [{"name": "s", "paths": [str(tmp_path / "a" / "x.jsonl"),
                                                    str(tmp_path / "b" / "x.jsonl")]}])
    with pytest.raises(ConfigError, match=r"would share document ids x.jsonl:N"):
        build(cfg)
    cfg["sources"][0]["paths"] = [str(tmp_path / "*" / "x.jsonl")]
    ids = {d.id for d in (build(cfg), *iter_build_documents(cfg["output"]))[1:]}
    assert {"a/x.jsonl:1", "b/x.jsonl:1"} <= ids


# item 8: skip_bad_records is part of the cache key

def test_strict_build_after_a_lenient_one_still_fails_on_the_bad_record(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(jsonl_bytes(ROWS[:10]) + b"{not json\n")
    lenient = config(tmp_path, [{"name": "d", "paths": [str(path)]}], skip_bad_records=True)
    assert build(lenient)["sources"][0]["skipped"] == {"bad_json": 1}
    strict = config(tmp_path, [{"name": "d", "paths": [str(path)]}])
    with pytest.raises(InputError, match=r"d.jsonl:11: invalid JSON"):
        build(strict)


# item 5: damaged cache units are detected and rebuilt

DAMAGE = ["flip", "truncate", "delete", "append", "swap"]


def _damage(path: str, how: str, other: str | None = None) -> bool:
    """Damage ``path``; False when the result is byte-identical (no damage at all)."""
    data = before = open(path, "rb").read()
    if how == "flip":
        b = bytearray(data)
        b[len(b) // 2] ^= 0x10
        data = bytes(b)
    elif how == "truncate":
        data = data[: max(0, len(data) - 3)]
    elif how == "append":
        data = data + b"\x01\x02"
    elif how == "empty":
        data = b""
    elif how == "swap":
        data = open(other, "rb").read()
    if how == "delete":
        os.remove(path)
        return True
    with open(path, "wb") as f:
        f.write(data)
    return data != before


def test_every_damage_to_a_cache_unit_is_rebuilt_with_a_warning(tmp_path, caplog,
                                                                 bos_tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", [{"question": f"Q{i}?", "response": f"answer {i}"}
                                           for i in range(30)])
    b = write_jsonl(tmp_path / "other.jsonl", [{"question": f"B{i}?", "response": f"other {i}"}
                                           for i in range(30)])
    cfg = config(tmp_path, [{"name": "s", "kind": "openorca", "loss": "responses",
                             "paths": [a, b]}], tokenizer=bos_tokenizer)
    build(cfg)
    reference = {n: open(os.path.join(cfg["output"], n), "rb").read()
                 for n in os.listdir(cfg["output"])}
    cache = tmp_path / "cache"
    units = sorted(n for n in os.listdir(cache) if os.path.isdir(cache / n))
    assert len(units) == 2
    files = sorted(os.listdir(cache / units[0]))
    assert files == ["ids.bin", "ids_off.npy", "mask.bin", "meta.json", "offsets.npy",
                     "tokens.bin"]
    cases = 0
    for name in files:
        for how in DAMAGE:
            if not _damage(str(cache / units[0] / name), how, str(cache / units[1] / name)):
                continue  # the other unit's file is the same bytes (e.g. equal masks)
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                build(cfg)
            assert any("is damaged" in r.message and "rebuilding" in r.message
                       for r in caplog.records), (name, how)
            got = {n: open(os.path.join(cfg["output"], n), "rb").read()
                   for n in os.listdir(cfg["output"])}
            assert got == reference, (name, how)
            cases += 1
    assert cases >= 27


# item 9: no EOS inside a document, whatever the tokenizer

@pytest.fixture()
def wordlevel(tmp_path) -> str:
    vocab = {"<unk>": 0, "hello": 1, "world": 2, "</s>": 3, "plain": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = str(tmp_path / "wordlevel.json")
    tok.save(path)
    return path


def test_an_eos_word_inside_a_document_is_refused_or_skipped(tmp_path, wordlevel):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello world"},
                                               {"text": "hello </s> world"}])
    cfg = config(tmp_path, [{"name": "d", "paths": [path]}],
                 tokenizer={"path": wordlevel, "eos_token": "</s>"})
    with pytest.raises(InputError, match=r"document d.jsonl:2: the tokenizer maps its text to "
                                         r"the EOS id 3"):
        build(cfg)
    cfg["skip_bad_records"] = True
    m = build(cfg)
    assert m["documents"] == 1 and m["sources"][0]["skipped"] == {"eos_in_text": 1}
    tokens = np.fromfile(os.path.join(cfg["output"], "part-00000.npy"), dtype=np.uint16)
    assert tokens.tolist() == [1, 2, 3]
    verify(cfg["output"])


def test_verify_finds_an_eos_inside_a_document(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS[:10])
    cfg = config(tmp_path, [{"name": "d", "paths": [path]}])
    build(cfg)
    shard = os.path.join(cfg["output"], "part-00000.npy")
    tokens = np.fromfile(shard, dtype=np.uint16)
    tokens[3] = 50279
    tokens.tofile(shard)
    with pytest.raises(VerifyError, match=r"part-00000.npy: document 0 .* holds EOS 50279 inside"):
        verify(cfg["output"])


# "smaller": text files, tiny totals, messages

def test_txt_bom_and_crlf(tmp_path):
    p = tmp_path / "d.txt"
    p.write_bytes(b"\xef\xbb\xbfFirst line\r\nsecond line\r\n\r\nNext paragraph\r\n")
    recs = read_all(p, txt_unit="paragraph")
    assert [r["text"] for _, r in recs] == ["First line\nsecond line", "Next paragraph"]
    cfg = config(tmp_path, [{"name": "t", "paths": [str(p)], "txt_unit": "paragraph"}])
    build(cfg)
    tok = Tokenizer.from_file(OLMO_TOKENIZER)
    texts = [tok.decode(d.tokens[:-1].tolist()) for d in iter_build_documents(cfg["output"])]
    assert sorted(texts) == ["First line\nsecond line", "Next paragraph"]


def test_total_tokens_below_one_document_is_refused(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS[:5])
    b = write_jsonl(tmp_path / "b.jsonl", ROWS[5:10])
    cfg = config(tmp_path, [{"name": "a", "paths": [a]}, {"name": "b", "paths": [b]}],
                 total_tokens=1)
    with pytest.raises(PlanError, match=r"total_tokens: 1 gives no source a whole document"):
        build(cfg)
    assert not os.path.exists(cfg["output"])


def test_tiny_max_repetition_names_the_source(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS[:5])
    cfg = config(tmp_path, [{"name": "a", "paths": [a], "max_repetition": 1e-9}])
    with pytest.raises(PlanError, match=r"source 'a' may give 0 tokens .* raise max_repetition"):
        build(cfg)


def test_shard_tokens_is_a_maximum_except_for_one_longer_document(tmp_path):
    rows = ROWS[:20] + [{"text": " ".join(["long"] * 300)}] + ROWS[20:40]
    cfg = config(tmp_path, [{"name": "d", "paths": [write_jsonl(tmp_path / "d.jsonl", rows)]}],
                 shard_tokens=50)
    m = build(cfg)
    for s in m["shards"]:
        assert s["tokens"] <= 50 or s["documents"] == 1
    assert any(s["tokens"] > 50 for s in m["shards"])


def _cli(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def test_one_line_errors_on_the_command_line(tmp_path, capsys):
    good = write_jsonl(tmp_path / "d.jsonl", ROWS[:10])
    import yaml

    def cfg_file(**src):
        c = config(tmp_path, [{"name": "d", "paths": [good], **src}])
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(c))
        return str(path)

    for src in ({"ratio": float("nan")}, {"max_repetition": float("inf")}):
        rc, err = _cli(["build", cfg_file(**src), "--no-progress"], capsys)
        assert rc == 2 and "expected a finite number" in err and len(err.splitlines()) == 1
    rc, err = _cli(["sweep", cfg_file(), "--ratios", "d=nan", "--no-progress"], capsys)
    assert rc == 2 and "'nan': expected a finite number" in err
    assert _cli(["build", cfg_file(), "--no-progress"], capsys)[0] == 0
    out = config(tmp_path, [])["output"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = _cli(["report", out, "--out", str(blocker / "r")], capsys)
    assert rc == 2 and "cannot write the report" in err and len(err.splitlines()) == 1
    with open(os.path.join(out, "manifest.json"), "r+b") as f:
        f.write(b"\xff\xfe")
    rc, err = _cli(["verify", out], capsys)
    assert rc == 1 and "manifest.json: not UTF-8" in err and len(err.splitlines()) == 1
