"""kill -9 anywhere in a build, at the exact swap point, and two builds at once.

Every run is a real ``instmix build`` process (``tests/build_runner.py``). After each kill
the output folder is the previous build, byte for byte and verifiable (or, when the kill
came after the swap, the new build, also verifiable); the rerun is byte-identical to an
uninterrupted build, and no temporary entry is left.

``INSTMIX_KILL_POINTS`` (default 20) sets the number of random kill points; the seed is
printed on failure (``INSTMIX_KILL_SEED`` replays one; ``INSTMIX_KILL_SEED=random`` draws new
points each run).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import yaml
from conftest import ROOT, config, read_tree, write_jsonl

from instmix.format.verify import verify
from instmix.tokenize.unit_check import check_unit

RUNNER = str(ROOT / "tests" / "build_runner.py")
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def temporaries(*folders) -> list[str]:
    return [n for f in folders if os.path.isdir(f) for n in os.listdir(f) if ".instmix-" in n]


def setup(tmp_path, tokenizer, paragraphs, seed=5):
    files = [write_jsonl(tmp_path / "data" / f"part-{i}.jsonl",
                         [{"text": p} for p in paragraphs[i::3]]) for i in range(3)]
    assert len(files) == 3

    def cfg_file(name, out, cache, seed=seed):
        cfg = config(tmp_path, [{"name": "d", "paths": [str(tmp_path / "data" / "*.jsonl")],
                                 "max_repetition": 2}], seed=seed, output=str(out),
                     cache_dir=str(cache), shard_tokens=20_000,
                     tokenizer={"path": tokenizer, "backend": "hf"})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        return str(path)

    return cfg_file


def start(mode, cfg):
    proc = subprocess.Popen([sys.executable, RUNNER, mode, cfg], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def run(mode, cfg) -> subprocess.CompletedProcess:
    proc = start(mode, cfg)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def check_cache(cache) -> int:
    """Every published cache unit is intact; returns their number."""
    if not os.path.isdir(cache):
        return 0
    units = [n for n in os.listdir(cache)
             if ".instmix-" not in n and os.path.isdir(os.path.join(cache, n))]
    for n in units:
        check_unit(os.path.join(cache, n), np.dtype("uint16"))
    return len(units)


def test_random_kill_9_points_then_rerun_is_byte_identical(tmp_path, bos_tokenizer, paragraphs):
    cfg_file = setup(tmp_path, bos_tokenizer, paragraphs)
    ref_out, out, cache = tmp_path / "reference", tmp_path / "out", tmp_path / "cache"
    ref_cfg = cfg_file("ref", ref_out, tmp_path / "ref-cache")
    t0 = time.monotonic()
    assert run("plain", ref_cfg).returncode == 0
    cold = time.monotonic() - t0  # tokenize + write
    reference = read_tree(ref_out)
    t0 = time.monotonic()
    assert run("plain", ref_cfg).returncode == 0
    warm = time.monotonic() - t0  # cache reused: write only
    assert read_tree(ref_out) == reference
    assert run("plain", cfg_file("old", out, tmp_path / "old-cache", seed=99)).returncode == 0
    old = read_tree(out)
    assert old != reference
    cfg = cfg_file("new", out, cache)
    seed = os.environ.get("INSTMIX_KILL_SEED", "20261201")  # "random": a new seed each run
    seed = random.randrange(1 << 30) if seed == "random" else int(seed)
    rng = random.Random(seed)
    points = int(os.environ.get("INSTMIX_KILL_POINTS", "20"))
    outcomes = {"old": 0, "new": 0, "finished": 0}
    for i in range(points):
        # half the points with a cold cache (kills while tokenizing), half warm (writing)
        cold_point = rng.random() < 0.5
        if cold_point and cache.exists():
            shutil.rmtree(cache)
        proc = start("plain", cfg)
        time.sleep(rng.uniform(0, cold if cold_point else warm))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        got = read_tree(out)
        assert got in (old, reference), f"seed {seed}, point {i}: output is neither build"
        verify(str(out))
        if proc.returncode == 0:
            outcomes["finished"] += 1
        else:
            outcomes["old" if got == old else "new"] += 1
        if got == reference:  # a finished (or swapped) build: put the old one back
            assert run("plain", cfg_file("old", out, tmp_path / "old-cache", seed=99)
                       ).returncode == 0
        check_cache(cache)
    print(f"kill -9 points {points} (seed {seed}): {outcomes}")
    assert outcomes["old"] + outcomes["new"] >= points // 4, (seed, outcomes)
    assert run("plain", cfg).returncode == 0
    assert read_tree(out) == reference
    assert not temporaries(tmp_path, cache)
    assert check_cache(cache) == 3


def test_kill_at_the_exact_swap_points(tmp_path, bos_tokenizer, paragraphs):
    cfg_file = setup(tmp_path, bos_tokenizer, paragraphs)
    ref_out, out = tmp_path / "reference", tmp_path / "out"
    assert run("plain", cfg_file("ref", ref_out, tmp_path / "cache")).returncode == 0
    reference = read_tree(ref_out)
    for mode in ("kill-exchange", "kill-renames"):
        assert run("plain", cfg_file("old", out, tmp_path / "cache", seed=99)).returncode == 0
        old = read_tree(out)
        cfg = cfg_file("new", out, tmp_path / "cache")
        killed = run(mode, cfg)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        if mode == "kill-exchange":
            # the exchange is one step: the new build is in place, the old one waits under
            # an owner-marked name for removal
            assert read_tree(out) == reference
        else:
            # between the two renames there is no output; the old build is kept aside
            assert not out.exists()
            assert any(".instmix-old-" in n for n in os.listdir(tmp_path))
        assert run("plain", cfg_file("probe", tmp_path / "probe", tmp_path / "cache")
                   ).returncode == 0  # an unrelated build touches nothing of out's
        rerun = run("plain", cfg)
        assert rerun.returncode == 0, rerun.stderr
        assert read_tree(out) == reference
        verify(str(out))
        assert not temporaries(tmp_path, tmp_path / "cache")
        del old


def test_kill_between_renames_then_a_rebuild_of_the_old_config_restores_it(
        tmp_path, bos_tokenizer, paragraphs):
    """Recovery comes first: the folder set aside is put back before anything else."""
    cfg_file = setup(tmp_path, bos_tokenizer, paragraphs)
    out = tmp_path / "out"
    old_cfg = cfg_file("old", out, tmp_path / "cache", seed=99)
    assert run("plain", old_cfg).returncode == 0
    old = read_tree(out)
    assert run("kill-renames", cfg_file("new", out, tmp_path / "cache")).returncode == \
        -signal.SIGKILL
    from instmix.io.atomic import clean_stale

    clean_stale(str(out))
    assert read_tree(out) == old
    verify(str(out))


def reference_and_config(tmp_path, tokenizer, paragraphs):
    """A finished reference build's files, and a config building the same to ``out``/``cache``."""
    cfg_file = setup(tmp_path, tokenizer, paragraphs)
    assert run("plain", cfg_file("ref", tmp_path / "reference", tmp_path / "ref-cache")
               ).returncode == 0
    out, cache = tmp_path / "out", tmp_path / "cache"
    return read_tree(tmp_path / "reference"), out, cache, cfg_file("new", out, cache)


def test_two_builds_started_together_share_cache_and_output(tmp_path, bos_tokenizer,
                                                            paragraphs):
    reference, out, cache, cfg = reference_and_config(tmp_path, bos_tokenizer, paragraphs)
    procs = [start("plain", cfg) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert read_tree(out) == reference
    verify(str(out))
    assert check_cache(cache) == 3
    assert not temporaries(tmp_path, cache)


def test_a_build_started_while_another_publishes_slowly(tmp_path, bos_tokenizer, paragraphs):
    reference, out, cache, cfg = reference_and_config(tmp_path, bos_tokenizer, paragraphs)
    slow = start("slow-publish", cfg)
    deadline = time.monotonic() + 120
    # wait until the slow build's stage is complete (its manifest is written last)
    while not any(".instmix-tmp-" in n and os.path.isfile(tmp_path / n / "manifest.json")
                  for n in os.listdir(tmp_path)):
        assert slow.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    fast = run("plain", cfg)
    assert fast.returncode == 0, fast.stderr
    assert slow.poll() is None  # still publishing: its stage was not touched
    slow.communicate(timeout=120)
    assert slow.returncode == 0, slow.stderr
    assert read_tree(out) == reference
    verify(str(out))
    assert check_cache(cache) == 3
    assert not temporaries(tmp_path, cache)
