"""Fuzz tier (hypothesis): reader inputs, and random damage to every file of a build.

Readers: any bytes under any input suffix, and valid compressed files cut, flipped or
followed by junk, give records or one :class:`InputError` naming the file, never another
exception; a cut compressed file is never read as a shorter one.

Builds: every damage to every file is caught by ``verify`` naming that file, or is
provably harmless. The only harmless class is a change to ``manifest.json`` that leaves
its parsed JSON value equal (whitespace between tokens): every reader parses the JSON, so
equal values are equal builds; the test asserts that equality whenever verify passes.

Fast by default (``INSTMIX_FUZZ_EXAMPLES``, default 40 per property, a few tens of
seconds); a longer run: ``INSTMIX_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil

import pytest
import zstandard
from conftest import config, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import instmix
from instmix.errors import InputError, VerifyError
from instmix.format.verify import verify
from instmix.io.readers import iter_records

EXAMPLES = int(os.environ.get("INSTMIX_FUZZ_EXAMPLES", "40"))
# CI (CI=true) runs a fixed set of examples; a long run on demand draws new ones
DERANDOMIZE = bool(os.environ.get("CI")) and "INSTMIX_FUZZ_EXAMPLES" not in os.environ
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
SUFFIXES = [".jsonl", ".jsonl.gz", ".jsonl.zst", ".txt", ".parquet", ".json"]

records = st.lists(st.fixed_dictionaries({"text": st.text(max_size=40)}), min_size=1,
                   max_size=30)


def read(path, skip_bad):
    return list(iter_records(path, skip_bad=skip_bad, stats={}))


@FUZZ
@given(data=st.binary(max_size=600), suffix=st.sampled_from(SUFFIXES), skip=st.booleans())
def test_any_bytes_give_records_or_one_input_error(tmp_path_factory, data, suffix, skip):
    path = str(tmp_path_factory.mktemp("fz") / f"in{suffix}")
    with open(path, "wb") as f:
        f.write(data)
    try:
        read(path, skip)
    except InputError as e:
        assert str(e).startswith(path) and "\n" not in str(e)


def _compress(rows, how: str) -> bytes:
    raw = "".join(json.dumps(r) + "\n" for r in rows).encode()
    if how == "gz":
        return gzip.compress(raw, mtime=0)
    comp = zstandard.ZstdCompressor()
    half = len(raw) // 2  # two frames: a cut in the second looks like a clean end
    return comp.compress(raw[:half]) + comp.compress(raw[half:])


@FUZZ
@given(rows=records, how=st.sampled_from(["gz", "zst"]),
       damage=st.sampled_from(["cut", "flip", "junk"]), where=st.floats(0, 1),
       junk=st.binary(min_size=1, max_size=16))
def test_damaged_compressed_inputs(tmp_path_factory, rows, how, damage, where, junk):
    good = _compress(rows, how)
    pos = min(int(where * len(good)), len(good) - 1)
    if damage == "cut":
        bad = good[:pos]
    elif damage == "flip":
        b = bytearray(good)
        b[pos] ^= 0x41
        bad = bytes(b)
    else:
        bad = good + junk
    path = str(tmp_path_factory.mktemp("fz") / f"in.jsonl.{how}")
    with open(path, "wb") as f:
        f.write(bad)
    try:
        got = read(path, True)
    except InputError as e:
        assert str(e).startswith(path) and "\n" not in str(e)
        return
    if damage == "cut":
        # only a cut inside a trailing zero pad could be complete; there is none
        assert bad == b"" and got == [], "a cut file was read silently"
    if damage == "junk" and how == "zst":
        raise AssertionError("junk after a zstd frame was read silently")


# -- damage to a build ---------------------------------------------------------------

@pytest.fixture(scope="module")
def build_dir(tmp_path_factory, bos_tokenizer):
    tmp = tmp_path_factory.mktemp("fuzzbuild")
    qa = write_jsonl(tmp / "qa.jsonl", [{"question": f"Question {i}?", "response": f"Answer {i}."}
                                        for i in range(40)])
    raw = write_jsonl(tmp / "raw.jsonl", [{"text": f"plain text number {i}"} for i in range(40)])
    cfg = config(tmp, [{"name": "qa", "kind": "openorca", "loss": "responses", "paths": [qa]},
                       {"name": "raw", "paths": [raw]}], tokenizer=bos_tokenizer,
                 shard_tokens=400)
    m = instmix.build(instmix.load_config(cfg))
    assert len(m["shards"]) >= 3 and m["shards"][0].get("mask")
    files = sorted(os.path.relpath(os.path.join(r, n), cfg["output"])
                   for r, _, ns in os.walk(cfg["output"]) for n in ns)
    return cfg["output"], files


OPS = ["flip", "set", "truncate", "append", "delete", "empty", "foreign", "swap"]
DETECTED: dict[str, dict[str, int]] = {}


def _kind(rel: str) -> str:
    return rel if rel in ("manifest.json", "tokenizer.json") else "part-*" + \
        rel[rel.index("."):]


@FUZZ
@given(data=st.data())
def test_every_damage_to_a_build_is_caught_or_harmless(build_dir, tmp_path_factory, data):
    src, files = build_dir
    out = str(tmp_path_factory.mktemp("dmg") / "b")
    shutil.copytree(src, out)
    rel = data.draw(st.sampled_from(files), label="file")
    op = data.draw(st.sampled_from(OPS), label="op")
    path = os.path.join(out, rel)
    before = open(path, "rb").read()
    named = {rel}
    if op in ("flip", "set"):
        pos = data.draw(st.integers(0, max(0, len(before) - 1)), label="pos")
        b = bytearray(before)
        if op == "flip":
            b[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        else:
            b[pos] = data.draw(st.integers(0, 255).filter(lambda v: v != b[pos]), label="v")
        after = bytes(b)
    elif op == "truncate":
        after = before[:data.draw(st.integers(0, max(0, len(before) - 1)), label="len")]
    elif op == "append":
        after = before + data.draw(st.binary(min_size=1, max_size=8), label="junk")
    elif op == "empty":
        after = b""
    elif op == "swap":
        same = [f for f in files if f != rel and _kind(f) == _kind(rel)]
        if not same:
            op, after = "empty", b""
        else:
            other = data.draw(st.sampled_from(same), label="other")
            after = open(os.path.join(out, other), "rb").read()
            with open(os.path.join(out, other), "wb") as f:
                f.write(before)
            named.add(other)
    if op == "delete":
        os.remove(path)
    elif op == "foreign":
        foreign = data.draw(st.sampled_from(["part-00099.npy", "sources.txt", "x/part.csv.gz"]))
        os.makedirs(os.path.dirname(os.path.join(out, foreign)), exist_ok=True)
        shutil.copy(path, os.path.join(out, foreign))
        named = {foreign}
    else:
        if after == before:
            return  # no change at all (e.g. a swap of equal files)
        with open(path, "wb") as f:
            f.write(after)
    stats = DETECTED.setdefault(f"{_kind(rel)} {op}", {"caught": 0, "harmless": 0})
    try:
        verify(out)
    except VerifyError as e:
        assert any(n in str(e) for n in named), (rel, op, str(e))
        stats["caught"] += 1
        return
    # harmless only if the manifest still parses to the same value
    assert rel == "manifest.json" and op in ("flip", "set", "append"), (rel, op)
    assert json.loads(after) == json.loads(before)
    stats["harmless"] += 1


def test_zz_report_detection(capsys):
    """Prints detection per damage type (run with -s); every row is 100% caught or proven
    harmless by the test above."""
    with capsys.disabled():
        for key in sorted(DETECTED):
            row = DETECTED[key]
            print(f"  {key:28s} caught {row['caught']:4d}  harmless {row['harmless']:4d}")
