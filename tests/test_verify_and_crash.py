"""``verify`` catches corruption; a killed build leaves nothing that looks valid and a
rerun produces exactly what an uninterrupted build does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from conftest import ROOT, config, write_jsonl

import instmix
from instmix.errors import VerifyError
from instmix.format.verify import verify


@pytest.fixture()
def built(tmp_path, paragraphs):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": p} for p in paragraphs[:400]])
    cfg = config(tmp_path, [{"name": "p", "paths": [path]}], shard_tokens=8_000)
    m = instmix.build(instmix.load_config(cfg))
    return cfg["output"], m


def test_verify_passes_on_a_fresh_build(built):
    out, m = built
    report = verify(out)
    assert report == {"shards": len(m["shards"]), "documents": m["documents"],
                      "tokens": m["total_tokens"]}


def test_verify_catches_a_flipped_byte(built):
    out, m = built
    path = os.path.join(out, m["shards"][1]["path"])
    with open(path, "r+b") as f:
        f.seek(101)
        b = f.read(1)
        f.seek(101)
        f.write(bytes([b[0] ^ 0x01]))
    with pytest.raises(VerifyError, match=r"part-00001.npy: .*(sha256|EOS|vocab)"):
        verify(out)


def test_verify_catches_a_flipped_eos(built):
    out, m = built
    path = os.path.join(out, m["shards"][0]["path"])
    tokens = np.fromfile(path, dtype=np.uint16)
    eos_pos = int(np.nonzero(tokens == 50279)[0][2])
    tokens[eos_pos] = 42
    tokens.tofile(path)
    with pytest.raises(VerifyError, match=r"part-00000.npy: document 2 .* does not end with EOS"):
        verify(out)


def test_verify_catches_a_truncated_shard(built):
    out, m = built
    path = os.path.join(out, m["shards"][-1]["path"])
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 6)
    with pytest.raises(VerifyError, match=r"bytes, manifest says .* \(truncated or overwritten\)"):
        verify(out)


def test_verify_catches_bad_offsets_and_missing_files(built):
    out, m = built
    import gzip

    idx = os.path.join(out, "part-00000.csv.gz")
    lines = gzip.open(idx, "rt").read().splitlines()
    a, b, rest = lines[1].split(",", 2)
    lines[1] = f"{int(a) + 1},{b},{rest}"
    with gzip.open(idx, "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(VerifyError, match="document 1 starts at .* but the previous ends at"):
        verify(out)
    os.remove(os.path.join(out, "part-00000.csv.gz"))
    with pytest.raises(VerifyError, match="part-00000.csv.gz: missing"):
        verify(out)
    os.remove(os.path.join(out, "manifest.json"))
    with pytest.raises(VerifyError, match="not an instmix build"):
        verify(out)


def test_verify_cli_exit_codes(built):
    out, m = built
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ok = subprocess.run([sys.executable, "-m", "instmix", "verify", out], capture_output=True,
                        text=True, env=env)
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok: {len(m['shards'])} shard(s)")
    with open(os.path.join(out, m["shards"][0]["path"]), "r+b") as f:
        f.truncate(10)
    bad = subprocess.run([sys.executable, "-m", "instmix", "verify", out], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("instmix verify: FAILED: part-00000.npy: 10 bytes")
    assert len(bad.stderr.strip().splitlines()) == 1


def _tree(folder) -> dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


def _wait_then_kill(proc, ready, timeout=60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("kill point never reached")


def test_kill_9_then_rerun_equals_uninterrupted_build(tmp_path, real_docs):
    # ~8 MB of real text in 6 files, tokenized with the slower reference backend so that
    # every phase lasts long enough to be interrupted.
    files = [write_jsonl(tmp_path / "data" / f"part-{i}.jsonl", real_docs) for i in range(6)]
    assert len(files) == 6

    def cfg_file(name, out, cache, seed=5):
        cfg = config(tmp_path, [{"name": "d", "paths": [str(tmp_path / "data" / "*.jsonl")],
                                 "max_repetition": 2}], seed=seed, output=str(out),
                     cache_dir=str(cache), shard_tokens=200_000,
                     tokenizer={"path": config(tmp_path, [])["tokenizer"], "backend": "hf"})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        return str(path)

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "instmix", "build", "--no-progress"]
    ref_out = tmp_path / "reference"
    subprocess.run(run + [cfg_file("ref", ref_out, tmp_path / "ref-cache")], check=True, env=env,
                   capture_output=True)
    reference = _tree(ref_out)

    out, cache = tmp_path / "out", tmp_path / "cache"
    # A previous, different build sits in the output: a killed rebuild must leave it intact.
    subprocess.run(run + [cfg_file("old", out, tmp_path / "old-cache", seed=99)], check=True,
                   env=env, capture_output=True)
    old = _tree(out)
    cfg = cfg_file("new", out, cache)

    def in_tokenize():
        return cache.is_dir() and any(".instmix-tmp-" in n for n in os.listdir(cache))

    def after_first_unit():
        return cache.is_dir() and any(".instmix-tmp-" not in n for n in os.listdir(cache))

    def in_write():
        return any(n.startswith("out.instmix-tmp-") for n in os.listdir(tmp_path))

    killed = 0
    for point in (in_tokenize, after_first_unit, in_write):
        proc = subprocess.Popen(run + [cfg], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if _wait_then_kill(proc, point):
            killed += 1
            # Nothing half-written is visible: the output is still the old, valid build.
            assert _tree(out) == old
            verify(str(out))
    assert killed >= 2
    subprocess.run(run + [cfg], check=True, env=env, capture_output=True)
    assert _tree(out) == reference
    assert not any(".instmix-" in n for n in os.listdir(tmp_path))
    assert not any(".instmix-" in n for n in os.listdir(cache))
