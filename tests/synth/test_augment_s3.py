"""``instmix augment`` with its output on a real S3-compatible server on loopback (moto's
server mode): the same files as a local output, each block committed by its marker, a
resume after a crash or ``kill -9`` redoing only uncommitted work, and a build over the
s3 output equal to the build over the local one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import OLMO_TOKENIZER, read_tree
from s3server import s3_session, s3_tree

import instmix
from instmix.io import fs
from instmix.synth.runner import augment

from .synth_helpers import TIMING, config, load
from .synth_scripted import Crash

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds package synth
BUCKET = "instmix-augment"


@pytest.fixture(scope="module")
def s3():
    with s3_session(BUCKET) as server:
        yield server


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_tokenizer):
    """An uninterrupted augment to a local folder."""
    tmp = tmp_path_factory.mktemp("aug-ref")
    cfg = load(tmp, config(tmp, tiny_tokenizer, "ref", n=40))
    stats = augment(cfg)
    assert stats["complete"] and stats["blocks_done"] == 4
    return tmp, cfg


def _committed(tree: dict[str, bytes]) -> dict[int, dict]:
    return {int(n[len("_state/block-"):-5]): json.loads(v) for n, v in tree.items()
            if n.startswith("_state/block-")}


def test_augment_to_s3_equals_augment_to_a_folder_file_for_file(s3, reference):
    tmp, ref = reference
    url = f"s3://{BUCKET}/whole"
    stats = augment(load(tmp, config(tmp, ref.synthesizer.tokenizer, url, n=40)))
    assert stats["complete"]
    want = read_tree(ref.output, TIMING)
    assert any(n.startswith("part-") for n in want) and "augment.json" in want
    assert s3_tree(url, TIMING) == want  # parts, markers, cache figures and the plan, byte for byte
    handle = fs.filesystem(url)
    assert handle.cat_file(f"{BUCKET}/whole/stats.json")  # the run's stats are there too
    # a rerun of a finished run generates nothing and changes no object
    again = augment(load(tmp, config(tmp, ref.synthesizer.tokenizer, url, n=40)))
    assert again["sessions"][-1]["texts"] == 0 and again["totals"] == stats["totals"]
    assert s3_tree(url, TIMING) == want


def test_crashes_then_resume_redo_only_uncommitted_work(s3, reference):
    tmp, ref = reference
    url = f"s3://{BUCKET}/crashed"
    tok = ref.synthesizer.tokenizer
    for crash in (8, 10, 9):
        with pytest.raises(Crash):
            augment(load(tmp, config(tmp, tok, url, n=40, options={"crash_after": crash})))
    before = s3_tree(url, TIMING)
    committed = _committed(before)
    assert committed and len(committed) < 4
    for k, info in committed.items():  # a marker is there only once all its parts are
        assert set(info["parts"]) <= set(before), k
    kept = sum(len(_entries(f"{url}/{n}")) for n in before  # checkpoints of open blocks
               if n.startswith("part-") and int(n[5:11]) not in committed)
    assert kept > 0  # an open block's whole checkpoint parts are reused, not made again
    stats = augment(load(tmp, config(tmp, tok, url, n=40)))
    assert stats["complete"]
    assert s3_tree(url, TIMING) == read_tree(ref.output, TIMING)
    done_texts = sum(info["texts"] for info in committed.values())
    assert stats["sessions"][-1]["texts"] == stats["totals"]["texts"] - done_texts - kept


def _entries(url: str) -> list:
    from instmix.synth.output import decode_entries

    return decode_entries(url, fs.read_bytes(url))


def test_a_committed_block_missing_a_part_is_made_again(s3, reference):
    tmp, ref = reference
    url = f"s3://{BUCKET}/damaged"
    tok = ref.synthesizer.tokenizer
    augment(load(tmp, config(tmp, tok, url, n=40)))
    handle = fs.filesystem(url)
    gone = sorted(p for p in handle.find(f"{BUCKET}/damaged") if "/part-000002-" in p)
    assert gone
    handle.rm(gone[0])
    stats = augment(load(tmp, config(tmp, tok, url, n=40)))
    assert stats["sessions"][-1]["texts"] > 0  # had the marker been trusted, nothing ran
    assert s3_tree(url, TIMING) == read_tree(ref.output, TIMING)


def test_kill_9_during_an_s3_augment_then_resume_gives_the_same_files(s3, reference):
    tmp, ref = reference
    url = f"s3://{BUCKET}/killed"
    data = config(tmp, ref.synthesizer.tokenizer, url, n=40, options={"delay": 0.03})
    path = tmp / "killed.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT])}
    cmd = [sys.executable, "-m", "instmix", "augment", str(path), "--no-progress"]
    handle = fs.filesystem(url)

    def parts() -> int:
        handle.invalidate_cache()
        try:
            return sum("/part-" in p for p in handle.find(f"{BUCKET}/killed"))
        except FileNotFoundError:
            return 0

    for wanted in (2, 9):
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while parts() < wanted and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()
        made = parts()  # counted before the kill, checked after it (no process left behind)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert made >= wanted, f"killed after {made} of {wanted} parts: the 120 s deadline passed"
        tree = s3_tree(url, TIMING)
        for k, info in _committed(tree).items():  # never a marker without all its parts
            assert set(info["parts"]) <= set(tree), k
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"augmented {url}:" in done.stdout
    assert s3_tree(url, TIMING) == read_tree(ref.output, TIMING)


def test_a_build_over_the_s3_augment_output_equals_the_local_one(s3, reference, tmp_path):
    tmp, ref = reference
    url = f"s3://{BUCKET}/for-build"
    augment(load(tmp, config(tmp, ref.synthesizer.tokenizer, url, n=40)))

    def build(data: str, out: str) -> dict:
        cfg = {"tokenizer": OLMO_TOKENIZER, "seed": 1, "output": out,
               "cache_dir": str(tmp_path / "cache" / os.path.basename(out)),
               "shard_tokens": 4_000,
               "sources": [{"name": "aug", "kind": "augmented", "ratio": 1.0,
                            "paths": [f"{data}/part-*.jsonl.zst"], "loss": "responses"}]}
        return instmix.build(instmix.load_config(cfg))

    local = build(ref.output, str(tmp_path / "local"))
    remote = build(url, str(tmp_path / "remote"))
    assert local["documents"] > 0 and remote == local
    assert read_tree(tmp_path / "remote", TIMING) == read_tree(tmp_path / "local", TIMING)
