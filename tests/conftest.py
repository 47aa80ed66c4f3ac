"""Shared fixtures: real tokenizer files, small real corpora, config helpers."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import pytest
import zstandard

from instmix.tokenize.encoder import Encoder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OLMO_TOKENIZER = str(ROOT / "examples" / "quickstart" / "tokenizer.json")  # GPT-NeoX OLMo, 50280
DOLMA2_TOKENIZER = str(ROOT / "tests" / "fixtures" / "dolma2-tokenizer.json")  # OLMo 2, 100278
RAW_DOCS = sorted((ROOT / "examples" / "quickstart" / "data" / "raw").glob("*.jsonl.zst"))

# The integration tier needs the trainer venvs; scripts/integration.sh runs it.
collect_ignore = [] if os.environ.get("INSTMIX_INTEGRATION") == "1" else ["integration"]


@pytest.fixture(scope="session", autouse=True)
def _private_home(tmp_path_factory):
    """A session HOME, so the default ``tokenizer.rank_cache`` (``~/.cache/instmix/...``,
    expanded in each process, subprocesses included) is built here, not in the user's."""
    real = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("home"))
    yield
    if real is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = real


def read_jsonl_zst(path) -> list[dict]:
    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().decompress(f.read(), max_output_size=1 << 30)
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def write_jsonl(path, rows, compress: str | None = None) -> str:
    path = str(path)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if compress == "zst":
        data = zstandard.ZstdCompressor().compress(data)
    elif compress == "gz":
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_corpus(root, paragraphs, ends=(200, 450, 600), cut=50) -> None:
    """A small corpus of three files: ``data/a.jsonl`` and ``data/sub/b.jsonl.zst`` (text
    rows from ``paragraphs`` up to ``ends[0]``, then ``ends[1]``) and ``qa/q.jsonl``
    (question/response rows, each paragraph cut at ``cut`` characters, up to ``ends[2]``)."""
    root = Path(root)
    a, b, q = ends
    write_jsonl(root / "data" / "a.jsonl", [{"text": p} for p in paragraphs[:a]])
    write_jsonl(root / "data" / "sub" / "b.jsonl.zst", [{"text": p} for p in paragraphs[a:b]],
                compress="zst")
    write_jsonl(root / "qa" / "q.jsonl", [{"question": p[:cut], "response": p[cut:]}
                                         for p in paragraphs[b:q]])


def read_tree(folder, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path, except paths starting with ``skip``."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, folder)
            if not rel.startswith(skip):
                with open(p, "rb") as f:
                    out[rel] = f.read()
    return out


@pytest.fixture(scope="session")
def real_docs() -> list[dict]:
    """Real English text: the quickstart's Python documentation pages (PSF licence)."""
    docs = []
    for p in RAW_DOCS:
        docs.extend(read_jsonl_zst(p))
    return docs


@pytest.fixture(scope="session")
def paragraphs(real_docs) -> list[str]:
    """Short real documents: the paragraphs of the documentation pages."""
    out = []
    for d in real_docs:
        out.extend(p.strip() for p in d["text"].split("\n\n") if len(p.strip()) > 40)
    return out


@pytest.fixture(scope="session")
def bos_tokenizer(tmp_path_factory) -> str:
    """A small real BPE tokenizer with <s>/</s> and a template that adds BOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = [d["text"] for d in read_jsonl_zst(RAW_DOCS[0])[:20]]
    tok.train_from_iterator(text, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    path = tmp_path_factory.mktemp("bostok") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


def config(tmp_path, sources, **kw) -> dict:
    """A build config mapping with sensible test defaults."""
    cfg = {"tokenizer": OLMO_TOKENIZER, "seed": 7, "output": str(tmp_path / "out"),
           "cache_dir": str(tmp_path / "cache"), "sources": sources}
    cfg.update(kw)
    return cfg


@pytest.fixture()
def count_encodes(monkeypatch):
    """Counts the texts that reach the tokenizer (the real encoder still runs)."""
    seen = []
    real = Encoder.encode

    def counting(self, texts, **kw):
        seen.extend(texts)
        return real(self, texts, **kw)

    monkeypatch.setattr(Encoder, "encode", counting)
    return seen
