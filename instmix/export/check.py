"""Check a trainer config against a build: the tokenizer ids, the token dtype and the
files. The first disagreement raises :class:`ConfigError` naming the config file and the
key; notes (things that cannot be checked, or harmless differences) are returned.

Defaults follow the trainers: OLMo's ``model.vocab_size`` 50257, ``eos_token_id`` and
``pad_token_id`` 50256, ``data.memmap_dtype`` uint16 (ai2-olmo 0.6.0 ``olmo/config.py``);
OLMo-core infers ``dtype`` as the smallest unsigned type that holds ``vocab_size - 1``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
import yaml
from tokenizers import Tokenizer

from instmix.errors import ConfigError
from instmix.io.hashing import sha256_file

from .facts import BuildFacts, load_facts
from .files import REPORT

OLMO_DEFAULTS = {"vocab_size": 50257, "eos_token_id": 50256, "pad_token_id": 50256,
                 "memmap_dtype": "uint16"}
# OLMo-core 3.0.0 TokenizerConfig presets by identifier.
OLMO_CORE_PRESETS = {
    "allenai/dolma2-tokenizer": (100278, 100257, 100277, None),
    "allenai/dolma2-tokenizer-sigdig": (100278, 100257, 100277, 100257),
    "allenai/gpt-neox-olmo-dolma-v1_5": (50280, 50279, 1, None),
    "gpt2": (50257, 50256, 50256, 50256),
}
_MISSING = object()


def load_config_file(path: str) -> Mapping:
    if path.endswith(".py"):
        raise ConfigError(path, "file", "a Python config cannot be checked; check a YAML or "
                          "JSON dump of it, or compare its TokenizerConfig and dtype with the "
                          "exported olmo_core_data.py")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(path, "file", "not found") from None
    except (ValueError, yaml.YAMLError) as e:
        raise ConfigError(path, "file", f"cannot parse ({str(e).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(path, "top level", "expected a mapping of keys")
    return data


def _int(where: str, key: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, key, f"expected a whole number, got {value!r}")
    return value


def check_ids(facts: BuildFacts, where: str, prefix: str, *, vocab_size, eos_token_id,
              pad_token_id=_MISSING, bos_token_id=_MISSING) -> None:
    """Compare a trainer's token ids with the build; ``prefix`` names their section."""
    vocab = _int(where, prefix + "vocab_size", vocab_size)
    if vocab != facts.vocab_size:
        why = (f"ids up to {facts.vocab_size - 1} would be out of range" if vocab is None or
               vocab < facts.vocab_size else "the trainer's tokenizer is another one")
        raise ConfigError(where, prefix + "vocab_size", f"{vocab} but the build's tokenizer has "
                          f"{facts.vocab_size} ids ({why}); set {facts.vocab_size}")
    eos = _int(where, prefix + "eos_token_id", eos_token_id)
    if eos != facts.eos_token_id:
        raise ConfigError(where, prefix + "eos_token_id", f"{eos} but every document of the "
                          f"build ends with {facts.eos_token_id} ({facts.eos_token}); a wrong "
                          "EOS merges documents; set "
                          f"{facts.eos_token_id}")
    if bos_token_id is not _MISSING:
        bos = _int(where, prefix + "bos_token_id", bos_token_id)
        if bos != facts.bos_token_id:
            want = "null (the build adds no BOS)" if facts.bos_token_id is None else \
                f"{facts.bos_token_id} (every document starts with it)"
            raise ConfigError(where, prefix + "bos_token_id", f"{bos} but the build needs {want}")
    if pad_token_id is not _MISSING:
        pad = _int(where, prefix + "pad_token_id", pad_token_id)
        if pad is None or not 0 <= pad < facts.vocab_size:
            raise ConfigError(where, prefix + "pad_token_id", f"{pad} is not an id below "
                              f"{facts.vocab_size}; the build's pad id is {facts.pad_token_id}")


def check_dtype(facts: BuildFacts, where: str, key: str, dtype) -> None:
    if dtype != facts.dtype:
        raise ConfigError(where, key, f"{dtype} but the build's token files are {facts.dtype}; "
                          f"reading them as {dtype} gives wrong ids; set {facts.dtype}")


def inferred_dtype(vocab_size: int) -> str:
    """OLMo-core's choice when ``dtype`` is not given."""
    for name in ("uint8", "uint16", "uint32", "uint64"):
        if vocab_size - 1 <= np.iinfo(name).max:
            return name
    return "uint64"


def check_files(facts: BuildFacts, where: str, key: str, paths, masks) -> list[str]:
    """Paths that are this build's token files need their own mask files, in the same order."""
    notes: list[str] = []
    if not isinstance(paths, list):
        return notes
    by_path = {os.path.abspath(f.path): f for f in facts.shards}
    ours = [by_path.get(os.path.abspath(p)) if isinstance(p, str) else None for p in paths]
    inside = [p for p in paths if isinstance(p, str) and
              os.path.abspath(p).startswith(facts.root + os.sep)]
    for p in inside:
        if os.path.abspath(p) not in by_path:
            raise ConfigError(where, key, f"{p} is inside the build but is not one of its "
                              "token files (see manifest.json shards)")
    if not any(ours):
        notes.append(f"{key}: no file of this build is listed (paths not checked)")
        return notes
    if not facts.has_masks:
        return notes
    mask_key = key.rsplit(".", 1)[0] + ".label_mask_paths" if "." in key else "label_mask_paths"
    if masks is None:
        raise ConfigError(where, mask_key, "missing, but the build masks the loss "
                          f"({facts.loss_tokens:,} of {facts.total_tokens:,} tokens train)")
    if not isinstance(masks, list) or len(masks) != len(paths):
        raise ConfigError(where, mask_key, f"expected {len(paths)} paths, one per token file")
    for i, (shard, mask) in enumerate(zip(ours, masks)):
        if shard is not None and os.path.abspath(str(mask)) != os.path.abspath(shard.mask):
            raise ConfigError(where, f"{mask_key}[{i}]", f"{mask} is not the mask of "
                              f"{shard.rel} (expected {shard.mask})")
    return notes


def check_tokenizer_files(facts: BuildFacts, where: str, key: str, path: str) -> list[str]:
    """A local ``tokenizer.json`` (or a folder holding one) must have the build's vocab and
    EOS; returns notes (e.g. when ``path`` is a hub id that cannot be read offline)."""
    json_path = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(json_path):
        return [f"{key}: {path} is not a local tokenizer; its ids were not checked"]


    if sha256_file(json_path) == facts.tokenizer_sha256:
        ids = []
    else:
        tok = Tokenizer.from_file(json_path)
        vocab = tok.get_vocab_size(with_added_tokens=True)
        if vocab != facts.vocab_size:
            raise ConfigError(where, key, f"{json_path} has {vocab} ids but the build's "
                              f"tokenizer has {facts.vocab_size}")
        ids = [f"{key}: {json_path} differs from the build's tokenizer.json but has the same "
               "vocabulary size"]
    cfg = os.path.join(os.path.dirname(json_path), "tokenizer_config.json")
    if os.path.isfile(cfg):
        with open(cfg, encoding="utf-8") as f:
            eos = json.load(f).get("eos_token")
        eos = eos.get("content") if isinstance(eos, dict) else eos
        if isinstance(eos, str):
            eos_id = Tokenizer.from_file(json_path).token_to_id(eos)
            if eos_id != facts.eos_token_id:
                raise ConfigError(where, key, f"its EOS {eos!r} is id {eos_id} but the build's "
                                  f"documents end with {facts.eos_token_id} ({facts.eos_token})")
    return ids


# ---------------------------------------------------------------- per framework

def check_olmo(facts: BuildFacts, cfg: Mapping, where: str) -> list[str]:
    model = cfg.get("model") or {}
    data = cfg.get("data") or {}
    if not isinstance(model, Mapping) or not isinstance(data, Mapping) or not (model or data):
        raise ConfigError(where, "model/data", "expected an OLMo training config with `model:` "
                          "and `data:` sections")
    check_ids(facts, where, "model.",
              vocab_size=model.get("vocab_size", OLMO_DEFAULTS["vocab_size"]),
              eos_token_id=model.get("eos_token_id", OLMO_DEFAULTS["eos_token_id"]),
              pad_token_id=model.get("pad_token_id", OLMO_DEFAULTS["pad_token_id"]))
    emb = model.get("embedding_size")
    if isinstance(emb, int) and emb < facts.vocab_size:
        raise ConfigError(where, "model.embedding_size", f"{emb} is smaller than the build's "
                          f"{facts.vocab_size} ids")
    check_dtype(facts, where, "data.memmap_dtype",
                data.get("memmap_dtype", OLMO_DEFAULTS["memmap_dtype"]))
    notes = []
    if isinstance(data.get("datasets"), Mapping):
        paths = [p for k in sorted(data["datasets"]) for p in data["datasets"][k]]
        notes += check_files(facts, where, "data.datasets", paths, data.get("label_mask_paths"))
    else:
        notes += check_files(facts, where, "data.paths", data.get("paths"),
                             data.get("label_mask_paths"))
    tok = cfg.get("tokenizer")
    if isinstance(tok, Mapping) and isinstance(tok.get("identifier"), str):
        notes += check_tokenizer_files(facts, where, "tokenizer.identifier", tok["identifier"])
    return notes


def _tokenizer_sections(node, prefix: str = ""):
    """Every mapping holding a ``tokenizer`` mapping, with its dotted key prefix."""
    if isinstance(node, Mapping):
        if isinstance(node.get("tokenizer"), Mapping):
            yield prefix, node
        for k, v in node.items():
            if k != "tokenizer":
                yield from _tokenizer_sections(v, f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _tokenizer_sections(v, f"{prefix[:-1]}[{i}].")


def check_olmo_core(facts: BuildFacts, cfg: Mapping, where: str) -> list[str]:
    sections = list(_tokenizer_sections(cfg))
    if not sections:
        raise ConfigError(where, "tokenizer", "no dataset config with a `tokenizer:` mapping "
                          "found (expected OLMo-core's TokenizerConfig fields)")
    notes: list[str] = []
    for prefix, section in sections:
        tok = dict(section["tokenizer"])
        preset = OLMO_CORE_PRESETS.get(str(tok.get("identifier")))
        if preset and "vocab_size" not in tok:
            tok = dict(zip(("vocab_size", "eos_token_id", "pad_token_id", "bos_token_id"),
                           preset)) | tok
        t = prefix + "tokenizer."
        check_ids(facts, where, t, vocab_size=tok.get("vocab_size"),
                  eos_token_id=tok.get("eos_token_id"), pad_token_id=tok.get("pad_token_id"),
                  bos_token_id=tok.get("bos_token_id"))
        dtype = section.get("dtype")
        if dtype is None:
            dtype = inferred_dtype(facts.vocab_size)
            if dtype != facts.dtype:
                raise ConfigError(where, prefix + "dtype", f"not set, so OLMo-core reads "
                                  f"{dtype} but the build's token files are {facts.dtype}; "
                                  f"set dtype: {facts.dtype}")
        check_dtype(facts, where, prefix + "dtype", dtype)
        if "paths" in section:
            notes += check_files(facts, where, prefix + "paths", section.get("paths"),
                                 section.get("label_mask_paths"))
    return notes


def check_llamafactory(facts: BuildFacts, cfg: Mapping, where: str) -> list[str]:
    model = cfg.get("model_name_or_path")
    if not isinstance(model, str):
        raise ConfigError(where, "model_name_or_path", "missing (expected a LLaMA-Factory "
                          "training YAML)")
    notes = check_tokenizer_files(facts, where, "model_name_or_path", model)
    notes += check_model_folder(facts, where, "model_name_or_path", model)
    if cfg.get("packing") is True:
        notes.append("packing: true shortens LLaMA-Factory's pt blocks to cutoff_len - 1; "
                     "leave packing unset for cutoff_len blocks")
    cutoff = cfg.get("cutoff_len", 2048)
    tp = cfg.get("tokenized_path")
    if isinstance(tp, str):
        report = _report_near(tp)
        if report is None:
            notes.append(f"tokenized_path: {tp} has no {REPORT} beside it (not checked)")
        else:
            if report.get("manifest_sha256") != facts.manifest_sha256:
                raise ConfigError(where, "tokenized_path", f"{tp} was exported from another "
                                  "build (manifest sha256 differs); export again")
            tok = report.get("tokenized") or {}
            if tok.get("row_kind") == "blocks" and tok.get("seq_len") != cutoff:
                raise ConfigError(where, "cutoff_len", f"{cutoff} but {tp} holds "
                                  f"{tok.get('seq_len')}-token blocks (LLaMA-Factory does "
                                  "not re-cut a tokenized_path); export with --seq-len "
                                  f"{cutoff}")
    dd = cfg.get("dataset_dir")
    if isinstance(dd, str) and not isinstance(tp, str):
        report = _report_near(dd)
        text = (report or {}).get("text")
        names = [n.strip() for n in str(cfg.get("dataset", "")).split(",") if n.strip()]
        if text and report.get("manifest_sha256") != facts.manifest_sha256:
            raise ConfigError(where, "dataset_dir", f"{dd} was exported from another build "
                              "(manifest sha256 differs); export again")
        if text and names == text["datasets"] and \
                cfg.get("mix_strategy", "concat").startswith("interleave"):
            got = [float(x) for x in str(cfg.get("interleave_probs", "")).split(",") if x]
            want = [float(x) for x in text["interleave_probs"]]
            if len(got) != len(want) or max(abs(a - b) for a, b in zip(got, want)) > 1e-4:
                raise ConfigError(where, "interleave_probs", f"{cfg.get('interleave_probs')!r} "
                                  "does not give the build's token shares; use "
                                  f"{','.join(text['interleave_probs'])!r}")
    return notes


def _special(folder: str, name: str):
    """A special token's text from a transformers folder (tokenizer_config.json, then
    special_tokens_map.json), or None."""
    for fname in ("tokenizer_config.json", "special_tokens_map.json"):
        path = os.path.join(folder, fname)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                value = json.load(f).get(name)
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                return value
    return None


def check_model_folder(facts: BuildFacts, where: str, key: str, path: str) -> list[str]:
    """A local model folder for a transformers trainer: a pad token that is not EOS (else
    LLaMA-Factory pads with EOS and its collator masks every EOS label), and a model
    ``config.json`` ``vocab_size`` that holds every id of the build."""
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "tokenizer.json")):
        return []
    fix = (f"write one with `instmix export tokenizer {facts.root} --out DIR` and copy its "
           "files into the model folder")
    pad = _special(path, "pad_token")
    if pad is None:
        raise ConfigError(where, key, f"{path} names no pad token, so LLaMA-Factory pads with "
                          "EOS and its collator masks every EOS label (no document end is "
                          f"learned); {fix}")
    pad_id = Tokenizer.from_file(os.path.join(path, "tokenizer.json")).token_to_id(pad)
    if pad_id is None or pad_id == facts.eos_token_id:
        what = "is not a token of its tokenizer.json" if pad_id is None else \
            f"is EOS (id {pad_id}): the collator masks every EOS label"
        raise ConfigError(where, key, f"{path}: its pad token {pad!r} {what}; {fix}")
    notes = []
    config = os.path.join(path, "config.json")
    if os.path.isfile(config):
        try:
            with open(config, encoding="utf-8") as f:
                vocab = json.load(f).get("vocab_size")
        except ValueError as e:
            raise ConfigError(config, "file", f"cannot parse ({e})") from None
        if not isinstance(vocab, int) or vocab < facts.vocab_size:
            raise ConfigError(where, key, f"{config}: vocab_size {vocab!r} but the build's ids "
                              f"go up to {facts.vocab_size - 1}; set vocab_size >= "
                              f"{facts.vocab_size}")
        if vocab > facts.vocab_size:
            notes.append(f"{key}: config.json vocab_size {vocab} > the tokenizer's "
                         f"{facts.vocab_size} (padded embedding; fine)")
    else:
        notes.append(f"{key}: {path} has no config.json (model vocab_size not checked)")
    return notes


def _report_near(path: str) -> dict | None:
    for folder in (path, os.path.dirname(os.path.abspath(path))):
        p = os.path.join(folder, REPORT)
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as f:
                return json.load(f)
    return None


CHECKS = {"olmo": check_olmo, "olmo-core": check_olmo_core, "llamafactory": check_llamafactory}


def check_config(framework: str, build: str, config_path: str) -> list[str]:
    """Raise ConfigError at the first disagreement; return notes."""
    facts = load_facts(build)
    return CHECKS[framework](facts, load_config_file(config_path), config_path)
