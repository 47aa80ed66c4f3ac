"""OLMo-core (``ai2-olmo-core`` 3.x): dataset configs as a Python module and as YAML.

Facts this follows (``olmo_core/data`` of 3.0.0): ``TokenizerConfig(vocab_size,
eos_token_id, pad_token_id, bos_token_id)``; ``dtype`` is inferred from ``vocab_size`` unless
given (we always give it); ``NumpyFSLDatasetConfig`` cuts every file into
``sequence_length`` instances and drops each file's last partial instance;
``NumpyPackedFSLDatasetConfig`` packs whole documents (found by EOS, and BOS when set) and,
with ``long_doc_strategy: truncate`` (its default), keeps only the first ``sequence_length``
tokens of a longer document, or with ``fragment`` (the default here) splits it into
``sequence_length`` pieces, keeping every token;
``label_mask_paths`` are raw ``np.bool_`` files, one per token file. A
``SourceMixtureDatasetConfig`` takes ``int(requested_tokens * target_ratio)`` tokens per source,
reads the *first* instances of each file, cannot carry label masks, and rounds to whole
instances; with ``requested_tokens`` equal to the build's total (the default here) it serves
every whole instance of every file.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

from instmix.errors import ConfigError
from instmix.io.atomic import write_atomic

from .facts import BuildFacts, chunk_plan, load_facts
from .files import export_folder, trainer_path, write_report, yaml_block
from .guard import REPORT, ExportGuard
from .long_docs import long_documents, packed_lines
from .options import ExportOptions, ExportResult, positive_int

PY_FILE = "olmo_core_data.py"
LONG_DOC_STRATEGIES = ("fragment", "truncate")


@dataclass(frozen=True, kw_only=True)
class OlmoCoreOptions(ExportOptions):
    """``global_batch_size`` (tokens; a multiple of ``seq_len``, default ``seq_len``) and
    ``requested_tokens`` (default: the build's total) feed the source mixture; ``work_dir``
    is OLMo-core's cache folder (its caches are keyed by path and file size, not content,
    so use a fresh one per build). ``long_doc_strategy`` of the packed config: ``fragment``
    keeps every token; ``truncate`` drops every document's tokens beyond ``seq_len`` and is
    refused when it would drop more than ``max_dropped`` (a fraction) of any source's
    tokens."""

    seq_len: int = 4096
    global_batch_size: int | None = None
    requested_tokens: int | None = None
    work_dir: str | None = None
    long_doc_strategy: str = "fragment"
    max_dropped: float = 0.01
    where: str = "export olmo-core"

    def __post_init__(self):
        super().__post_init__()
        if self.long_doc_strategy not in LONG_DOC_STRATEGIES:
            raise ConfigError(self.where, "long_doc_strategy", "expected fragment or truncate, "
                              f"got {self.long_doc_strategy!r}")
        if isinstance(self.max_dropped, bool) or not isinstance(self.max_dropped, (int, float)) \
                or not 0 <= self.max_dropped <= 1:
            raise ConfigError(self.where, "max_dropped", "expected a fraction in [0, 1], got "
                              f"{self.max_dropped!r}")
        gbs = positive_int(self.where, "global_batch_size", self.global_batch_size,
                           allow_none=True)
        if gbs is not None and gbs % self.seq_len:
            raise ConfigError(self.where, "global_batch_size", f"{gbs} tokens is not a multiple "
                              f"of seq_len {self.seq_len} (OLMo-core requires it)")
        positive_int(self.where, "requested_tokens", self.requested_tokens, allow_none=True)

    @property
    def batch_tokens(self) -> int:
        return self.global_batch_size or self.seq_len


def tokenizer_dict(facts: BuildFacts) -> dict:
    return {"vocab_size": facts.vocab_size, "eos_token_id": facts.eos_token_id,
            "pad_token_id": facts.pad_token_id, "bos_token_id": facts.bos_token_id}


def _paths(facts: BuildFacts, opts: OlmoCoreOptions) -> tuple[list[str], list[str] | None]:
    paths = [trainer_path(facts.root, f.path, opts.data_root) for f in facts.shards]
    masks = [trainer_path(facts.root, f.mask, opts.data_root) for f in facts.shards] \
        if facts.has_masks else None
    return paths, masks


def fsl_dict(facts: BuildFacts, opts: OlmoCoreOptions) -> dict:
    paths, masks = _paths(facts, opts)
    d = {"tokenizer": tokenizer_dict(facts), "paths": paths, "sequence_length": opts.seq_len,
         "dtype": facts.dtype}
    if masks:
        d["label_mask_paths"] = masks
    if facts.layout == "per_source":
        d["metadata"] = [{"label": next(iter(f.sources))} for f in facts.shards]
    d["work_dir"] = opts.work_dir
    return d


def packed_dict(facts: BuildFacts, opts: OlmoCoreOptions) -> dict:
    d = fsl_dict(facts, opts)
    d["long_doc_strategy"] = opts.long_doc_strategy
    return d


def requested_tokens(facts: BuildFacts, opts: OlmoCoreOptions) -> int:
    req = opts.requested_tokens or facts.total_tokens
    if req > facts.total_tokens:
        raise ConfigError(opts.where, "requested_tokens", f"{req:,} exceeds the build's "
                          f"{facts.total_tokens:,} tokens (every repetition is already in the "
                          "files; build a larger mixture instead)")
    return req


def mixture_dict(facts: BuildFacts, opts: OlmoCoreOptions) -> dict | None:
    """A ``NumpyFSLDatasetConfig`` with a ``source_mixture_config`` for ``per_source`` builds:
    target ratios are the built token shares and ``max_repetition_ratio`` is 1, because the
    files already hold every repetition, in draw order."""
    if facts.layout != "per_source":
        return None
    sources = [{"source_name": s.name, "target_ratio": facts.share(s),
                "paths": [trainer_path(facts.root, p, opts.data_root) for p in s.files],
                "max_repetition_ratio": 1.0} for s in facts.used_sources]
    return {"tokenizer": tokenizer_dict(facts), "sequence_length": opts.seq_len,
            "dtype": facts.dtype, "work_dir": opts.work_dir,
            "source_mixture_config": {
                "source_list": {"sources": sources},
                "requested_tokens": requested_tokens(facts, opts),
                "global_batch_size": opts.batch_tokens, "seed": facts.seed,
                "render_tables": False, "quiet": True}}


def expected_mixture(facts: BuildFacts, seq_len: int) -> dict:
    """Per source, what the default mixture serves: every whole instance of every file."""
    return {s.name: sum(f.tokens // seq_len * seq_len for f in facts.shards
                        if f.path in s.files) for s in facts.used_sources}


def _literal(value, indent: int = 0) -> str:
    """A Python literal for plain data (dicts, lists, str, numbers, None); one line when
    short, else one item per line."""
    flat = repr(value)
    if not isinstance(value, (dict, list)) or len(flat) + indent < 76:
        return flat
    pad = " " * indent
    if isinstance(value, dict):
        items = [f"{pad}    {k!r}: {_literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{pad}}}"
    items = [f"{pad}    {_literal(v, indent + 4)}," for v in value]
    return "[\n" + "\n".join(items) + f"\n{pad}]"


def render_python(facts: BuildFacts, opts: OlmoCoreOptions) -> str:
    paths, masks = _paths(facts, opts)
    tok = tokenizer_dict(facts)
    mix = mixture_dict(facts, opts)
    meta = fsl_dict(facts, opts).get("metadata")
    lines = [
        '"""OLMo-core (ai2-olmo-core 3.x) dataset configs for an instmix build.',
        "",
        f"Build: {facts.root}",
        f"       {facts.total_tokens:,} tokens in {len(facts.shards)} file(s), {facts.dtype}, "
        f"layout {facts.layout}, manifest sha256 {facts.manifest_sha256[:16]}",
        "Generated by `instmix export olmo-core`. Use, for example::",
        "",
        "    from olmo_core_data import fsl_dataset_config",
        "    dataset = fsl_dataset_config(work_dir=\"/tmp/olmo-core-work\").build()",
        "    dataset.prepare()",
        "",
        "OLMo-core caches indexes in work_dir keyed by file path and size, not content:",
        "use a fresh work_dir after rebuilding into the same folder.",
        '"""',
        "",
        "from olmo_core.data import (",
        "    NumpyFSLDatasetConfig,",
        "    NumpyPackedFSLDatasetConfig,",
        "    TokenizerConfig,",
        ")",
    ]
    if mix:
        lines += ["from olmo_core.data.source_mixture import (", "    SourceMixtureConfig,",
                  "    SourceMixtureDatasetConfig,", "    SourceMixtureList,", ")"]
    lines += [
        "",
        f"SEQUENCE_LENGTH = {opts.seq_len}",
        f"WORK_DIR = {opts.work_dir!r}  # None: OLMo-core uses the system temp folder",
        f"DTYPE = {facts.dtype!r}  # the build's token dtype; never let OLMo-core guess it",
        f"TOTAL_TOKENS = {facts.total_tokens}  # in the build's files",
        "",
        "# Ids must stay below vocab_size; every document ends with eos_token_id"
        + (" and starts with bos_token_id." if facts.bos_token_id is not None else "."),
        "TOKENIZER = TokenizerConfig(" + ", ".join(f"{k}={v!r}" for k, v in tok.items()) + ")",
        "",
        f"PATHS = {_literal(paths)}",
        "# True = this token trains (raw np.bool_ files, one per token file)",
        f"LABEL_MASK_PATHS = {_literal(masks)}",
    ]
    if meta:
        lines.append(f"METADATA = {_literal(meta)}")
    lines += [
        "",
        "",
        "def fsl_dataset_config(sequence_length=SEQUENCE_LENGTH, work_dir=WORK_DIR,",
        "                       generate_doc_lengths=False):",
        '    """Concatenate and chunk: each file is cut into sequence_length instances;',
        '    each file\'s last partial instance is dropped."""',
        "    return NumpyFSLDatasetConfig(",
        "        tokenizer=TOKENIZER, paths=list(PATHS), sequence_length=sequence_length,",
        "        dtype=DTYPE, label_mask_paths=LABEL_MASK_PATHS and list(LABEL_MASK_PATHS),",
        "        generate_doc_lengths=generate_doc_lengths, work_dir=work_dir,"
        + ("\n        metadata=[dict(m) for m in METADATA]," if meta else ""),
        "    )",
        "",
        "",
        "def packed_dataset_config(sequence_length=SEQUENCE_LENGTH, work_dir=WORK_DIR,",
        f"                          long_doc_strategy={opts.long_doc_strategy!r}, "
        "generate_doc_lengths=False):",
        '    """Pack whole documents into sequence_length instances (padded with',
        '    pad_token_id). A longer document is split into sequence_length pieces with',
        '    "fragment" (every token kept); "truncate" drops all its tokens after the first',
        '    sequence_length."""',
        "    return NumpyPackedFSLDatasetConfig(",
        "        tokenizer=TOKENIZER, paths=list(PATHS), sequence_length=sequence_length,",
        "        dtype=DTYPE, label_mask_paths=LABEL_MASK_PATHS and list(LABEL_MASK_PATHS),",
        "        long_doc_strategy=long_doc_strategy, generate_doc_lengths=generate_doc_lengths,",
        "        work_dir=work_dir," + ("\n        metadata=[dict(m) for m in METADATA]," if meta
                                    else ""),
        "    )",
    ]
    if mix:
        smc = mix["source_mixture_config"]
        srcs = {s["source_name"]: {"target_ratio": s["target_ratio"], "paths": s["paths"]}
                for s in smc["source_list"]["sources"]}
        lines += [
            "",
            "",
            "# Per-source token files in instmix's seeded draw order (OLMo-core reads the first",
            "# instances of each file). Ratios are the built token shares; every repetition",
            "# of the plan is already in the files, so max_repetition_ratio is 1.",
            f"SOURCES = {_literal(srcs)}",
            f"SEED = {facts.seed}",
            f"REQUESTED_TOKENS = {requested_tokens(facts, opts)}",
            f"GLOBAL_BATCH_SIZE = {opts.batch_tokens}  # tokens",
            "",
            "",
            "def source_mixture_config(requested_tokens=REQUESTED_TOKENS,",
            "                          global_batch_size=GLOBAL_BATCH_SIZE, seed=SEED):",
            '    """requested_tokens = TOTAL_TOKENS serves every whole instance of every file',
            "    (per source: the plan minus each file's last partial instance). A smaller",
            "    value takes int(requested_tokens * ratio) tokens per source from the start",
            '    of each file, in whole instances. global_batch_size is in tokens."""',
            "    return SourceMixtureDatasetConfig(",
            "        source_list=SourceMixtureList(sources=[",
            "            SourceMixtureConfig(source_name=name, target_ratio=s[\"target_ratio\"],",
            "                                paths=list(s[\"paths\"]), max_repetition_ratio=1.0)",
            "            for name, s in SOURCES.items()",
            "        ]),",
            "        requested_tokens=requested_tokens, global_batch_size=global_batch_size,",
            "        seed=seed, render_tables=False, quiet=True,",
            "    )",
            "",
            "",
            "def mixture_dataset_config(sequence_length=SEQUENCE_LENGTH, work_dir=WORK_DIR,",
            "                           requested_tokens=REQUESTED_TOKENS,",
            "                           global_batch_size=GLOBAL_BATCH_SIZE):",
            '    """OLMo-core\'s own source mixture (no label masks: OLMo-core rejects them',
            '    together with a source mixture)."""',
            "    mix = source_mixture_config(requested_tokens, global_batch_size)",
            "    return NumpyFSLDatasetConfig.from_src_mix(",
            "        mix, tokenizer=TOKENIZER, sequence_length=sequence_length, dtype=DTYPE,",
            "        work_dir=work_dir,",
            "    )",
        ]
    return "\n".join(lines) + "\n"


YAML_FILES = {"fsl": ("olmo_core_fsl.yaml", "NumpyFSLDatasetConfig"),
              "packed": ("olmo_core_packed.yaml", "NumpyPackedFSLDatasetConfig"),
              "mixture": ("olmo_core_mixture.yaml", "NumpyFSLDatasetConfig")}


def render_yaml(facts: BuildFacts, opts: OlmoCoreOptions) -> dict[str, str]:
    """One file per dataset config, each loadable with ``<Config>.from_yaml(path)`` (which
    also takes OLMo-core's dotted overrides, e.g. ``["sequence_length=2048"]``)."""
    bodies = {"fsl": fsl_dict(facts, opts), "packed": packed_dict(facts, opts)}
    mix = mixture_dict(facts, opts)
    if mix:
        bodies["mixture"] = mix
    out = {}
    for key, body in bodies.items():
        name, cls = YAML_FILES[key]
        head = [f"# OLMo-core (ai2-olmo-core 3.x) {cls} for the instmix build",
                f"#   {facts.root} ({facts.total_tokens:,} tokens, {facts.dtype}, layout "
                f"{facts.layout})",
                f"# Generated by `instmix export olmo-core`. Load: {cls}.from_yaml(\"{name}\")"]
        if key == "mixture":
            head += ["# A source mixture: each source's files are in instmix's draw order and",
                     "# hold every planned repetition; OLMo-core reads the first instances of",
                     "# each file and cannot apply label masks to a mixture."]
        out[name] = "\n".join(head) + "\n" + yaml_block(copy.deepcopy(body))
    return out


def export_olmo_core(build: str, out: str | None = None, **options) -> ExportResult:
    opts = OlmoCoreOptions(**options)
    facts = load_facts(build)
    out = export_folder(facts.root, out, "export-olmo-core")
    instances, dropped, warnings = chunk_plan(facts, opts.seq_len, opts.where)  # may raise
    req = requested_tokens(facts, opts)  # may raise
    long = long_documents(facts, opts.seq_len)
    packed = packed_lines(facts, opts, long)  # may raise
    yamls = render_yaml(facts, opts)
    guard = ExportGuard(out)
    guard.check([PY_FILE, *yamls, REPORT])
    files = [write_atomic(os.path.join(out, PY_FILE), render_python(facts, opts))]
    for name, text in yamls.items():
        files.append(write_atomic(os.path.join(out, name), text))
    for name, _ in YAML_FILES.values():  # e.g. a mixture file from an earlier per_source build
        if name not in yamls:
            guard.remove_stale(name)
    report = {"framework": "olmo-core", "build": facts.root,
              "manifest_sha256": facts.manifest_sha256, "seq_len": opts.seq_len,
              "files": [os.path.basename(f) for f in files], "fsl_instances": instances,
              "fsl_tokens_dropped": dropped, "packed_long_doc_strategy": opts.long_doc_strategy,
              "packed_tokens_dropped": {n: r["truncate_drops"] if opts.long_doc_strategy ==
                                        "truncate" else 0 for n, r in long.items()},
              "long_documents": long}
    lines = [*(f"wrote {f}" for f in files),
             f"  fsl: {instances:,} instances of {opts.seq_len} tokens; "
             f"{dropped:,} tokens dropped at file ends", *("  " + w for w in warnings), *packed]
    if facts.layout == "per_source":
        report["mixture_requested_tokens"] = req
        if req == facts.total_tokens:
            expected = expected_mixture(facts, opts.seq_len)
            report["mixture_expected_tokens"] = expected
            lines.append("  source mixture (requested_tokens = build total) serves per source:")
            for s in facts.used_sources:
                lines.append(f"    {s.name}: {expected[s.name]:,} of {s.tokens:,} planned "
                             f"tokens ({expected[s.name] / max(1, sum(expected.values())):.2%}"
                             f" vs {facts.share(s):.2%})")
        else:
            lines.append(f"  source mixture: {req:,} requested tokens, int(requested x share) "
                         "per source in whole instances from the start of each file")
        if facts.has_masks:
            lines.append("  note: OLMo-core source mixtures cannot apply label masks; "
                         "use fsl/packed for masked training")
    else:
        lines.append("  no source mixture: the build is interleaved (build with "
                     "`layout: per_source` for OLMo-core's SourceMixtureDatasetConfig)")
    files.append(write_report(guard, report, [PY_FILE, *yamls]))
    return ExportResult(out, files, lines, report)
