"""The command line as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from conftest import ROOT, config, write_jsonl

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def instmix(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "instmix", *args], capture_output=True,
                          text=True, env=ENV, cwd=cwd)


def test_build_inspect_verify(tmp_path, paragraphs):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": p} for p in paragraphs[:300]])
    b = write_jsonl(tmp_path / "b.jsonl", [{"question": p, "response": "Yes."}
                                           for p in paragraphs[300:500]])
    cfg = config(tmp_path, [{"name": "raw", "paths": [a], "ratio": 3},
                            {"name": "orca", "paths": [b], "kind": "openorca", "ratio": 1,
                             "max_repetition": 5}])
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "cli-out"
    r = instmix("build", str(tmp_path / "mix.yaml"), "--out", str(out), "--seed", "11")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"built {out}"
    assert lines[1].split() == ["source", "kind", "docs", "tokens", "target", "achieved", "reps",
                                "skipped"]
    raw = next(line for line in lines if line.startswith("raw "))
    assert "75.00%" in raw and raw.split()[1] == "text"
    assert any(line.startswith("orca ") and "25.00%" in line for line in lines)
    assert "seed 11" in r.stdout and "uint16" in r.stdout

    r = instmix("inspect", str(out), "-n", "2", "--source", "orca")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("--- part-00000.npy") == 2
    assert "orca b.jsonl:" in r.stdout and "Yes.<|endoftext|>" in r.stdout

    r = instmix("verify", str(out))
    assert r.returncode == 0 and r.stdout.startswith("ok:")


def test_errors_are_one_line_with_exit_2(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(
        {"tokenizer": "x.json", "output": "o", "sources": [{"name": "a", "paths": ["*.none"]}]}))
    r = instmix("build", str(tmp_path / "bad.yaml"))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"instmix: error: {tmp_path / 'bad.yaml'}: sources[0].paths: "
                                f"'{tmp_path / '*.none'}' matches no file")
    r = instmix("inspect", str(tmp_path))
    assert r.returncode == 2 and "not an instmix build" in r.stderr


def test_help_lists_commands():
    r = instmix("--help")
    assert r.returncode == 0
    for cmd in ("build", "inspect", "verify"):
        assert cmd in r.stdout
