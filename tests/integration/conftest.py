"""Integration tier: the real trainer packages, each in its own venv, read what
``instmix export`` writes from real builds.

The builds and exports run here, in the main venv; each framework check is a script run
with its venv's python (``.venvs/<framework>``, made by ``scripts/integration.sh``) that
imports only the framework, numpy and ``buildfiles.py``, and prints its observations as
one JSON line. ``tests/conftest.py`` collects this folder only with
``INSTMIX_INTEGRATION=1``, which ``scripts/integration.sh`` sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from instmix.builder.pipeline import build as run_build
from instmix.config import load_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
QUICKSTART = ROOT / "examples" / "quickstart"
OLMO_TOKENIZER = QUICKSTART / "tokenizer.json"  # GPT-NeoX OLMo: 50,280 ids -> uint16
DOLMA2_TOKENIZER = ROOT / "tests" / "fixtures" / "dolma2-tokenizer.json"  # 100,278 -> uint32
VENVS = Path(os.environ.get("INSTMIX_VENVS", ROOT / ".venvs"))
SEQ = 256  # small, so that the small builds give many instances


def venv_python(name: str) -> str:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} missing: run scripts/integration.sh to create the venvs")
    return str(python)


def run_check(venv: str, script: Path, *args, timeout: int = 600) -> dict:
    """Run a check script with a framework venv's python; return its JSON line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               LLAMAFACTORY_VERBOSITY="WARN", OLMO_DATA_PREP_WORKERS="2")
    proc = subprocess.run([venv_python(venv), "-W", "ignore", str(script), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{script.name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export(framework: str, build: Path, out: Path, *args) -> str:
    """``instmix export`` through the command line; returns what it printed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "instmix", "export", framework, str(build),
                           "--out", str(out), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    """Real text: the quickstart's documentation pages cut into paragraphs (many short
    documents), and its OpenOrca-style rows."""
    import zstandard

    root = tmp_path_factory.mktemp("corpus")
    paragraphs = []
    for path in sorted((QUICKSTART / "data" / "raw").glob("*.jsonl.zst")):
        data = zstandard.ZstdDecompressor().decompress(path.read_bytes(),
                                                        max_output_size=1 << 30)
        for line in data.splitlines():
            text = json.loads(line)["text"]
            paragraphs += [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40]
    raw = root / "raw.jsonl"
    raw.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    orca = QUICKSTART / "data" / "openorca.parquet"
    assert pq.read_metadata(orca).num_rows > 100
    return {"raw": str(raw), "orca": str(orca)}


def make_build(root: Path, corpus: dict, name: str, **config) -> Path:
    sources = [{"name": "raw", "paths": [corpus["raw"]], "ratio": 2},
               {"name": "orca", "paths": [corpus["orca"]], "kind": "openorca", "ratio": 1,
                "max_repetition": 3, "loss": config.pop("orca_loss", "responses")}]
    cfg = {"tokenizer": str(OLMO_TOKENIZER), "seed": 11, "output": str(root / name),
           "cache_dir": str(root / "cache"), "shard_tokens": 25_000, "sources": sources,
           **config}
    run_build(load_config(cfg))
    return root / name


def bos_tokenizer(root: Path, corpus: dict) -> Path:
    """A small byte-level BPE whose template adds ``<s>`` (BOS) to every document."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    with open(corpus["raw"]) as f:
        tok.train_from_iterator([json.loads(line)["text"] for line in f], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    path = root / "bos-tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def builds(tmp_path_factory, corpus) -> dict:
    """``inter``: interleaved, uint16, loss masks; ``per``: the same plan, ``per_source``;
    ``wide``: OLMo 2's tokenizer (uint32), no masks; ``bos``: documents start with BOS."""
    root = tmp_path_factory.mktemp("builds")
    return {
        "inter": make_build(root, corpus, "inter"),
        "per": make_build(root, corpus, "per", layout="per_source"),
        "wide": make_build(root, corpus, "wide", tokenizer=str(DOLMA2_TOKENIZER),
                           orca_loss="all"),
        "bos": make_build(root, corpus, "bos", tokenizer=str(bos_tokenizer(root, corpus))),
    }
