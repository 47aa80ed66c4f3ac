"""Augment inputs: documents in source order, blocks of them, and the run's fingerprint."""

from __future__ import annotations

from collections.abc import Iterator

from instmix.io.hashing import hash_input, sha256_file
from instmix.sources.registry import get_kind
from instmix.sources.units import source_units
from instmix.tokenize.cache import format_key
from instmix.tokenize.facts import tokenizer_json_path

from .config import AugmentConfig
from .output import PLAN_VERSION


def iter_documents(cfg: AugmentConfig, skipped: dict) -> Iterator[tuple[str, str]]:
    """``(source_id, text)`` of every document, in source and file order."""

    for i, src in enumerate(cfg.sources):
        kind = get_kind(src.kind)
        stats = skipped.setdefault(src.name, {})
        for paths, label in source_units(src, cfg.where, i):
            for doc in kind.documents(src, paths, label, skip_bad=cfg.skip_bad_records,
                                      stats=stats):
                yield f"{src.name}/{doc.id}", doc.text


def iter_blocks(docs: Iterator[tuple[str, str]], size: int
                ) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    block: list[tuple[str, str]] = []
    k = 0
    for doc in docs:
        block.append(doc)
        if len(block) == size:
            yield k, block
            block, k = [], k + 1
    if block:
        yield k, block


def plan_fingerprint(cfg: AugmentConfig) -> dict:
    """Everything that decides which entries exist and which part holds them."""

    s = cfg.synthesizer
    sources = []
    for i, src in enumerate(cfg.sources):
        units = source_units(src, cfg.where, i)
        sources.append({"name": src.name, "format": format_key(src),
                        "inputs": [[label, [hash_input(p) for p in paths]]
                                   for paths, label in units]})
    return {"format": "instmix-augment", "version": PLAN_VERSION, "rounds": cfg.rounds,
            "block_size": cfg.block_size, "checkpoint_every": cfg.checkpoint_every,
            "engine": s.engine, "model": s.model, "prompt_format": s.prompt_format,
            "max_model_len": s.max_model_len, "max_new_tokens": s.max_new_tokens,
            "tokenizer_sha256": sha256_file(tokenizer_json_path(s.tokenizer)),
            "sources": sources}
