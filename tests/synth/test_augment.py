"""``instmix augment`` end to end: the transformers engine with a tiny model, checkpoints,
resume after a crash and after ``kill -9``, ranks, stats, config errors."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from instmix.errors import ConfigError, InstmixError
from instmix.synth.runner import RunContext, augment

from .synth_helpers import TIMING, config, load, read_parts
from .synth_scripted import Crash

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds package synth


def test_end_to_end_with_transformers_engine(tmp_path, tiny_model):
    data = config(tmp_path, tiny_model, engine="transformers", model=tiny_model, threads=1)
    cfg = load(tmp_path, data)
    stats = augment(cfg)
    parts = read_parts(cfg.output)
    entries = [e for es in parts.values() for e in es]
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)) == stats["totals"]["texts"]
    assert stats["totals"]["docs"] == 24 and stats["totals"]["split_docs"] == 1
    assert {e["source_id"] for e in entries} == {f"web/in.jsonl:{i}" for i in range(1, 25)}
    assert any(i.endswith("#1") for i in ids)  # the long text became segments
    for e in entries:
        assert set(e) >= {"id", "source_id", "chain_id", "round", "context", "pairs", "status"}
        assert e["prompt_tokens"] <= 256 - 32
        assert 0 < e["output_tokens"] <= 32
        assert e["status"] in ("ok", "no_pairs")
    assert stats["complete"] and stats["blocks_done"] == stats["blocks_total"] == 3
    s = stats["sessions"][-1]
    assert s["texts"] == len(ids) and s["generated_tokens"] == sum(
        e["output_tokens"] for e in entries) and s["generated_tokens_per_s"] > 0
    assert sum(stats["totals"]["pairs_per_text"].values()) == len(ids)
    # a rerun of a finished run generates nothing and changes no file
    before = {n: os.path.getmtime(os.path.join(cfg.output, n)) for n in parts}
    again = augment(cfg)
    assert again["totals"] == stats["totals"] and len(again["sessions"]) == 2
    assert again["sessions"][-1]["texts"] == 0
    assert {n: os.path.getmtime(os.path.join(cfg.output, n)) for n in parts} == before


def test_stats_count_pairs_kinds_and_drops(tmp_path, tiny_tokenizer):
    data = config(tmp_path, tiny_tokenizer, options={"silent_on": "Text5"})
    stats = augment(load(tmp_path, data))
    t = stats["totals"]
    texts = t["texts"]
    assert t["status"] == {"ok": texts - 1, "no_pairs": 1}
    assert t["pairs_per_text"] == {"0": 1, "2": texts - 1}
    assert t["pair_kinds"] == {"qa": 2 * (texts - 1)}
    assert t["parse_drops"] == {"truncated": 1}
    assert t["chains"] + t["continued_chains"] == texts


def _files(folder):
    return {n: open(os.path.join(folder, n), "rb").read()
            for n in sorted(os.listdir(folder)) if n.endswith(".jsonl.zst")}


def test_crash_then_resume_equals_uninterrupted(tmp_path, tiny_tokenizer):
    ref = load(tmp_path, config(tmp_path, tiny_tokenizer, out="ref", rounds=3))
    augment(ref)
    for crash in (3, 5, 4):  # crash three times at different points, resuming each time
        data = config(tmp_path, tiny_tokenizer, out="run", rounds=3,
                      options={"crash_after": crash})
        with pytest.raises(Crash):
            augment(load(tmp_path, data))
    stats = augment(load(tmp_path, config(tmp_path, tiny_tokenizer, out="run", rounds=3)))
    assert _files(str(tmp_path / "run")) == _files(ref.output)
    assert stats["complete"]


@pytest.mark.parametrize("engine", ["scripted", "transformers"])
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, tiny_model, engine):
    if engine == "scripted":
        kw = {"options": {"delay": 0.03}}
    else:
        kw = {"engine": "transformers", "model": tiny_model, "threads": 1}
    data = config(tmp_path, tiny_model, out="killed", n=60, **kw)
    cfg_path = tmp_path / "augment.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT])}
    cmd = [sys.executable, "-m", "instmix", "augment", str(cfg_path), "--no-progress"]

    def parts():
        return [n for n in os.listdir(out) if n.endswith(".jsonl.zst")] if out.exists() else []

    for wanted in (2, 9):
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while len(parts()) < wanted and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ref = load(tmp_path, {**data, "output": "ref"})
    augment(ref)
    assert _files(str(out)) == _files(ref.output)
    assert not [n for n in os.listdir(out) if ".instmix-tmp-" in n]


def test_kill_9_after_each_write_then_resume_gives_the_same_files(tmp_path, tiny_tokenizer,
                                                                  monkeypatch):
    """A process killed right after any one of its writes (a part, its cache figures, a
    marker, the plan) leaves a folder whose resume ends with the files of an uninterrupted
    run: every file, the cache figures included, not only the parts."""
    from conftest import read_tree

    from instmix.synth.output import OutputDir

    ref = load(tmp_path, config(tmp_path, tiny_tokenizer, out="ref", n=8))
    writes = []
    original = OutputDir._write

    def counting(self, path, data):
        original(self, path, data)
        writes.append(os.path.relpath(path, self.root))

    with monkeypatch.context() as patch:
        patch.setattr(OutputDir, "_write", counting)
        augment(ref)
    want = read_tree(ref.output, TIMING)
    assert any(w.startswith(os.path.join("_state", "cache-")) for w in writes)
    for n in range(1, len(writes)):
        cfg = load(tmp_path, config(tmp_path, tiny_tokenizer, out=f"killed-{n}", n=8))
        pid = os.fork()
        if pid == 0:  # the child: dies with SIGKILL right after its n-th write
            left = n  # writes left before the kill

            def dying(self, path, data):
                nonlocal left
                original(self, path, data)
                left -= 1
                if left == 0:
                    os.kill(os.getpid(), signal.SIGKILL)

            OutputDir._write = dying
            try:
                augment(cfg)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (n, status)
        augment(cfg)
        assert read_tree(cfg.output, TIMING) == want, (n, writes[n - 1])


def test_ranks_share_the_blocks(tmp_path, tiny_tokenizer):
    whole = load(tmp_path, config(tmp_path, tiny_tokenizer, out="whole"))
    augment(whole)
    split = load(tmp_path, config(tmp_path, tiny_tokenizer, out="split"))
    first = augment(split, ctx=RunContext(0, 2))
    assert not first["complete"] and first["blocks_done"] == 2
    last = augment(split, ctx=RunContext(1, 2))
    assert last["complete"]
    assert _files(split.output) == _files(whole.output)


def test_resume_with_other_settings_is_refused(tmp_path, tiny_tokenizer):
    augment(load(tmp_path, config(tmp_path, tiny_tokenizer)))
    changed = load(tmp_path, config(tmp_path, tiny_tokenizer, rounds=3))
    with pytest.raises(ConfigError, match="differs in: rounds"):
        augment(changed)


@pytest.mark.parametrize("change,message", [
    ({"roundz": 2}, "roundz: unknown key (did you mean 'rounds'?)"),
    ({"rounds": 0}, "rounds: must be >= 1"),
    ({"synthesizer": {"engine": "vllm", "model": "m", "concurrency": 4}},
     "synthesizer.concurrency: only read by engine openai, not vllm"),
    ({"synthesizer": {"engine": "openai", "model": "m"}}, "synthesizer.tokenizer: missing"),
    ({"synthesizer": {"engine": "gpt", "model": "m"}}, "synthesizer.engine: expected one of"),
    ({"synthesizer": {"engine": "vllm", "model": "m", "max_model_len": 400,
                      "max_new_tokens": 390}}, "leaves 10 tokens for the prompt"),
    ({"sources": [{"name": "a", "paths": ["x.jsonl"], "kind": "augmented"}]},
     "sources[0].kind: augment reads raw text"),
    ({"ray": {"replicas": 0}}, "ray.replicas: must be >= 1"),
])
def test_config_errors_name_the_key(tmp_path, tiny_tokenizer, change, message):
    data = {**config(tmp_path, tiny_tokenizer), **change}
    with pytest.raises(ConfigError) as e:
        load(tmp_path, data)
    assert message in str(e.value) and str(e.value).startswith("<dict>: ")


def test_cli_prints_one_line_errors(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("synthesizer: {engine: vllm}\nsources: []\noutput: o\n")
    r = subprocess.run([sys.executable, "-m", "instmix", "augment", str(bad)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "sources: expected a non-empty list" in r.stderr


@pytest.mark.parametrize("damage", [b"{\"rounds\": 2", b"\xff\xfe", b"[1, 2]"])
def test_damaged_augment_json_is_a_one_line_error(tmp_path, tiny_tokenizer, damage):
    cfg = load(tmp_path, config(tmp_path, tiny_tokenizer))
    augment(cfg)
    plan = os.path.join(cfg.output, "augment.json")
    with open(plan, "wb") as f:
        f.write(damage)
    with pytest.raises(InstmixError, match=r"augment\.json: damaged") as e:
        augment(cfg)
    assert "\n" not in str(e.value)


def test_damaged_block_marker_redoes_its_block(tmp_path, tiny_tokenizer):
    ref = load(tmp_path, config(tmp_path, tiny_tokenizer, out="ref"))
    augment(ref)
    cfg = load(tmp_path, config(tmp_path, tiny_tokenizer))
    augment(cfg)
    state = os.path.join(cfg.output, "_state")
    marker = sorted(n for n in os.listdir(state) if n.startswith("block-"))[0]
    with open(os.path.join(state, marker), "wb") as f:
        f.write(b"{not json")
    block = marker[len("block-"):-len(".json")]
    gone = [n for n in os.listdir(cfg.output) if n.startswith(f"part-{block}-")]
    for n in gone:  # had the damaged marker been trusted, these would stay missing
        os.remove(os.path.join(cfg.output, n))
    assert gone
    assert augment(cfg)["complete"]
    assert _files(cfg.output) == _files(ref.output)


def test_random_kill_9_points_during_augment_then_resume_is_byte_identical(tmp_path,
                                                                          tiny_model):
    """kill -9 at seeded random moments (start-up, mid-block, while writing parts, after
    the end): every resume continues, and the final output equals an uninterrupted run."""
    import random

    data = config(tmp_path, tiny_model, out="killed", n=60, options={"delay": 0.02})
    cfg_path = tmp_path / "augment.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT])}
    cmd = [sys.executable, "-m", "instmix", "augment", str(cfg_path), "--no-progress"]
    rng = random.Random(20261201)
    for _ in range(10):
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 4.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ref = load(tmp_path, {**data, "output": "ref"})
    augment(ref)
    assert _files(str(out)) == _files(ref.output)
    assert not [n for n in os.listdir(out) if ".instmix-tmp-" in n]


def test_damage_to_any_augment_file_is_redone_or_named(tmp_path_factory, tiny_tokenizer):
    """Fuzz: one random damage (flip, truncate, empty, append, delete) to one random file of
    a finished augment output, then a resume. Either the resume repairs it (the parts equal
    an undamaged run's) or it stops with one line naming the damaged file."""
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = tmp_path_factory.mktemp("aug-fuzz")
    ref = load(base, config(base, tiny_tokenizer, out="ref"))
    augment(ref)
    want = _files(ref.output)
    names = sorted(os.path.relpath(os.path.join(d, f), ref.output)
                   for d, _, fs in os.walk(ref.output) for f in fs)
    runs = [0]

    @settings(max_examples=int(os.environ.get("INSTMIX_FUZZ_EXAMPLES", "12")), deadline=None,
              derandomize=bool(os.environ.get("CI")) and
              "INSTMIX_FUZZ_EXAMPLES" not in os.environ,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(name=st.sampled_from(names),
           op=st.sampled_from(["flip", "truncate", "empty", "append", "delete"]),
           where=st.floats(0, 1, exclude_max=True))
    def check(name, op, where):
        runs[0] += 1
        out = base / f"damaged-{runs[0]}"
        shutil.copytree(ref.output, out)
        path = out / name
        data = path.read_bytes()
        at = int(where * len(data)) if data else 0
        if op == "delete":
            path.unlink()
        else:
            if op == "flip" and data:
                data = data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]
            elif op == "truncate":
                data = data[:at]
            elif op == "empty":
                data = b""
            else:
                data = data + b"\x00junk"
            path.write_bytes(data)
        cfg = load(base, config(base, tiny_tokenizer, out=out.name))
        try:
            augment(cfg)
        except InstmixError as e:
            # one line naming the damaged file, or the output folder whose run it no
            # longer matches (an edit that still parses as another plan)
            msg = str(e)
            assert "\n" not in msg and (os.path.basename(name) in msg or str(out) in msg), (
                name, op, msg)
            return
        assert _files(str(out)) == want, (name, op)

    check()
