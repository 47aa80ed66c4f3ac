"""LLaMA-Factory (0.9.x, pre-training stage ``pt``): two routes.

(a) Token-exact: a ``datasets`` ``save_to_disk`` folder with one ``input_ids`` column,
    referenced by ``tokenized_path``. LLaMA-Factory loads such a folder as it is and ignores
    its other data settings (no re-tokenizing, no packing, no EOS added), so the training rows
    are exactly ours. Rows are ``seq_len`` blocks of the build's token stream, in order,
    across shard boundaries, the last block shorter (default), or one row per document.
(b) Text: the build's documents decoded, with a ``dataset_info.json`` (``columns: {prompt:
    text}``). By default (``mix_strategy: concat``) one ``instmix.jsonl`` holds every
    document once in the build's order, so LLaMA-Factory trains on exactly the built token
    shares (less each packing batch's tail). ``mix_strategy: interleave_under`` or
    ``interleave_over`` writes one ``<source>.jsonl`` per source and ``interleave_probs``
    converted from the built token shares to per-document probabilities (see
    :mod:`.interleave`); ``interleave_under`` stops at the first exhausted source, and the
    export prints the simulated token-share error of that.

Facts this follows (llamafactory 0.9.5): pt tokenizes ``text + eos_token`` without special
tokens and, with packing (the pt default), concatenates each preprocessing batch and cuts it
into ``cutoff_len`` blocks, dropping each batch's tail; an explicit ``packing: true``
shortens blocks to ``cutoff_len - 1``; its collator trains on every non-pad token, so loss
masks cannot be expressed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from instmix.errors import ConfigError
from instmix.io.atomic import write_atomic

from .facts import BuildFacts, load_facts
from .files import export_folder, write_report, yaml_block
from .guard import REPORT, ExportGuard
from .interleave import (
    StopEffect,
    doc_probabilities,
    expected_token_shares,
    round_probabilities,
    simulate_interleave_under,
)
from .lf_files import STREAM, TEXT_DIR, TOKENIZED_DIR, doc_lengths, write_text, write_tokenized
from .options import ExportOptions, ExportResult

TOKENIZED_YAML = "llamafactory_pt_tokenized.yaml"
TEXT_YAML = "llamafactory_pt_text.yaml"
ROUTES = ("tokenized", "text")
ROWS = ("blocks", "documents")
MIX_STRATEGIES = ("concat", "interleave_under", "interleave_over")
MODEL_PLACEHOLDER = "EDIT-ME: a model whose tokenizer is the build's"


@dataclass(frozen=True, kw_only=True)
class LlamaFactoryOptions(ExportOptions):
    """``seq_len`` is ``cutoff_len``; ``rows``: ``blocks`` or ``documents`` for route (a);
    ``model``/``template`` fill ``model_name_or_path``/``template`` in the recipes;
    ``mix_strategy`` of route (b) (``concat``: exact shares); ``decimals`` of
    ``interleave_probs``; ``sim_runs`` of the interleave simulation."""

    seq_len: int = 2048
    rows: str = "blocks"
    mix_strategy: str = "concat"
    routes: tuple[str, ...] = ROUTES
    model: str | None = None
    template: str | None = None
    decimals: int = 6
    sim_runs: int = 200
    where: str = "export llamafactory"

    def __post_init__(self):
        super().__post_init__()
        if self.rows not in ROWS:
            raise ConfigError(self.where, "rows", f"expected one of {', '.join(ROWS)}; "
                              f"got {self.rows!r}")
        bad = [r for r in self.routes if r not in ROUTES]
        if bad or not self.routes:
            raise ConfigError(self.where, "routes", f"expected some of {', '.join(ROUTES)}; "
                              f"got {', '.join(map(repr, self.routes)) or 'none'}")
        if self.mix_strategy not in MIX_STRATEGIES:
            raise ConfigError(self.where, "mix_strategy", f"expected one of "
                              f"{', '.join(MIX_STRATEGIES)}; got {self.mix_strategy!r}")
        if not isinstance(self.decimals, int) or not 2 <= self.decimals <= 12:
            raise ConfigError(self.where, "decimals", f"expected 2..12, got {self.decimals!r}")
        if not isinstance(self.sim_runs, int) or self.sim_runs < 0:
            raise ConfigError(self.where, "sim_runs", f"expected >= 0, got {self.sim_runs!r}")


# ---------------------------------------------------------------- route (b): text

@dataclass(frozen=True)
class TextMix:
    """Per used source: documents, mean length in LLaMA-Factory tokens (ours minus BOS),
    target token share, ``interleave_probs`` strings and the shares those give."""

    names: list[str]
    documents: list[int]
    mean_tokens: list[float]
    target: list[float]
    probs: list[str]
    expected: list[float]

    @property
    def rounding_error(self) -> float:
        return float(max(abs(e - t) for e, t in zip(self.expected, self.target)))


def text_mix(facts: BuildFacts, lengths: dict[str, np.ndarray], decimals: int) -> TextMix:
    names = [s.name for s in facts.used_sources]
    docs = [len(lengths[n]) for n in names]
    tokens = [int(lengths[n].sum()) for n in names]
    mean = [t / d for t, d in zip(tokens, docs)]
    target = [t / sum(tokens) for t in tokens]
    probs = round_probabilities(doc_probabilities(target, mean), decimals)
    expected = expected_token_shares([float(p) for p in probs], mean).tolist()
    return TextMix(names, docs, mean, target, probs, expected)


# ---------------------------------------------------------------- recipes

def _base_args(opts: LlamaFactoryOptions) -> dict:
    args = {"model_name_or_path": opts.model or MODEL_PLACEHOLDER, "stage": "pt",
            "do_train": True, "finetuning_type": "full"}
    if opts.template:
        args["template"] = opts.template
    return args


def _train_args(out: str, name: str) -> dict:
    return {"output_dir": os.path.join(out, "saves", name), "overwrite_output_dir": True,
            "per_device_train_batch_size": 1, "gradient_accumulation_steps": 8,
            "learning_rate": 1.0e-4, "num_train_epochs": 1.0, "lr_scheduler_type": "cosine",
            "logging_steps": 10, "save_steps": 500, "report_to": "none"}


def _tokenizer_comment(facts: BuildFacts) -> list[str]:
    return [f"# The model's tokenizer must be the build's: vocab {facts.vocab_size:,}, "
            f"EOS {facts.eos_token_id} ({facts.eos_token})"
            + (f", BOS {facts.bos_token_id}" if facts.bos_token_id is not None else "") + ".",
            f"# Check: instmix export llamafactory {facts.root} --check THIS.yaml"]


def tokenized_recipe(facts: BuildFacts, opts: LlamaFactoryOptions, out: str, rows: int) -> str:
    head = [
        "# LLaMA-Factory pre-training (stage pt), token-exact route: instmix build",
        f"#   {facts.root} ({facts.total_tokens:,} tokens)",
        f"# {TOKENIZED_DIR}/ holds {rows:,} rows of input_ids: "
        + (f"{opts.seq_len}-token blocks of the build's token stream, in order (the last "
           "block may be shorter)." if opts.rows == "blocks" else "one document per row."),
        "# LLaMA-Factory loads a tokenized_path folder as it is and ignores the other data",
        "# settings (no re-tokenizing, packing or EOS); `dataset` must still be set when",
        "# do_train is true (any name; it is not read). cutoff_len records the block length.",
        *_tokenizer_comment(facts),
        "# Run: llamafactory-cli train THIS.yaml",
    ]
    if facts.has_masks:
        head.append(f"# NOTE: the build masks the loss ({facts.loss_tokens:,} of "
                    f"{facts.total_tokens:,} tokens train); LLaMA-Factory's pt stage trains "
                    "on every token.")
    args = _base_args(opts)
    args.update({"dataset": "instmix", "tokenized_path": os.path.join(out, TOKENIZED_DIR),
                 "cutoff_len": opts.seq_len})
    args.update(_train_args(out, "tokenized"))
    return "\n".join(head) + "\n" + yaml_block(args)


def text_recipe(facts: BuildFacts, opts: LlamaFactoryOptions, out: str, mix: TextMix,
                effect) -> str:
    head = ["# LLaMA-Factory pre-training (stage pt), text route: instmix build",
            f"#   {facts.root}"]
    interleave = opts.mix_strategy != "concat" and len(mix.names) > 1
    if not interleave:
        head += [
            f"# {TEXT_DIR}/{STREAM}.jsonl holds every document of the build once, in the build's",
            "# order (decoded; repetitions included), so mix_strategy concat trains on exactly",
            "# the built token shares (packing drops each 1,000-document batch's tail):",
            *(f"#   {n}: {t:.4%}" for n, t in zip(mix.names, mix.target)),
            "# (export with --mix-strategy interleave_under for per-source files mixed by",
            "# document probabilities, with the error printed)",
        ]
    else:
        head += [
            f"# {TEXT_DIR}/ holds each source's documents (decoded from the build, repetitions",
            "# included) and dataset_info.json. LLaMA-Factory mixes DOCUMENTS; interleave_probs",
            "# below are the built TOKEN shares converted with the mean document lengths:",
            *("#   " + line for line in mix_table(mix)),
            *_effect_lines(mix, effect, prefix="# "),
            "# The default export (mix_strategy concat, one file in the build's order) keeps",
            "# exactly the built token shares instead.",
        ]
    head += [
        "# Do not write `packing: true`: an explicit true shortens blocks to cutoff_len - 1.",
        *_tokenizer_comment(facts),
        "# Run: llamafactory-cli train THIS.yaml",
    ]
    if facts.has_masks:
        head.append("# NOTE: the build's loss masks are lost in text form; every token trains.")
    args = _base_args(opts)
    names = mix.names if interleave else [STREAM]
    args.update({"dataset": ",".join(names), "dataset_dir": os.path.join(out, TEXT_DIR),
                 "mix_strategy": opts.mix_strategy if interleave else "concat"})
    if interleave:
        args["interleave_probs"] = ",".join(mix.probs)
    args["cutoff_len"] = opts.seq_len
    args.update(_train_args(out, "text"))
    return "\n".join(head) + "\n" + yaml_block(args)


def mix_table(mix: TextMix) -> list[str]:
    rows = [("source", "docs", "mean tokens", "token share", "interleave_prob",
             "expected share")]
    rows += [(n, f"{mix.documents[i]:,}", f"{mix.mean_tokens[i]:.1f}", f"{mix.target[i]:.4%}",
              mix.probs[i], f"{mix.expected[i]:.4%}") for i, n in enumerate(mix.names)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


def stop_effect(mix: TextMix, lengths: dict[str, np.ndarray], runs: int,
                seed: int) -> StopEffect | str:
    """The simulated interleave_under stop, or why it was not simulated."""
    if len(mix.names) < 2:
        return "one source: nothing to interleave"
    if not runs:
        return "not simulated (sim_runs 0)"
    effect = simulate_interleave_under([lengths[n] for n in mix.names],
                                       [float(p) for p in mix.probs], mix.target,
                                       runs=runs, seed=seed)
    return effect or "not simulated (too many documents)"


def _effect_lines(mix: TextMix, effect: StopEffect | str, prefix: str = "") -> list[str]:
    lines = [f"{prefix}residual token-share error from rounding the probabilities: "
             f"{mix.rounding_error:.2e}"]
    if isinstance(effect, str):
        lines.append(f"{prefix}interleave_under: {effect}")
    else:
        lines.append(f"{prefix}interleave_under stops at the first exhausted source: over "
                     f"{effect.runs} simulated runs it keeps {effect.used_fraction_mean:.1%} of "
                     f"the tokens; max share error median {effect.error_p50:.2%}, "
                     f"p99 {effect.error_p99:.2%}, worst {effect.error_worst:.2%}")
    return lines


def export_llamafactory(build: str, out: str | None = None, **options) -> ExportResult:
    opts = LlamaFactoryOptions(**options)
    facts = load_facts(build)
    out = export_folder(facts.root, out, "export-llamafactory")
    guard = ExportGuard(out)
    written = [n for route, names in (("tokenized", (TOKENIZED_DIR, TOKENIZED_YAML)),
                                      ("text", (TEXT_DIR, TEXT_YAML)))
               if route in opts.routes for n in names]
    guard.check([*written, REPORT])
    os.makedirs(out, exist_ok=True)
    result = ExportResult(out)
    report: dict = {"framework": "llamafactory", "build": facts.root,
                    "manifest_sha256": facts.manifest_sha256}
    if "tokenized" in opts.routes:
        rows = write_tokenized(facts, os.path.join(out, TOKENIZED_DIR), opts.rows,
                               opts.seq_len, check=guard.check_path)
        recipe = write_atomic(os.path.join(out, TOKENIZED_YAML),
                              tokenized_recipe(facts, opts, out, rows))
        report["tokenized"] = {"dir": TOKENIZED_DIR, "rows": rows, "row_kind": opts.rows,
                               "seq_len": opts.seq_len,
                               "tokens": facts.total_tokens, "recipe": TOKENIZED_YAML}
        result.files += [os.path.join(out, TOKENIZED_DIR), recipe]
        result.lines += [f"wrote {os.path.join(out, TOKENIZED_DIR)} ({rows:,} rows, "
                         f"{facts.total_tokens:,} tokens) and {recipe}"]
    if "text" in opts.routes:
        per_file = doc_lengths(facts)
        lengths = {n: np.concatenate(v) for n, v in per_file.items()}
        mix = text_mix(facts, lengths, opts.decimals)
        effect = stop_effect(mix, lengths, opts.sim_runs, facts.seed)
        interleave = opts.mix_strategy != "concat" and len(mix.names) > 1
        write_text(facts, os.path.join(out, TEXT_DIR), per_source=interleave,
                   check=guard.check_path)
        recipe = write_atomic(os.path.join(out, TEXT_YAML),
                              text_recipe(facts, opts, out, mix, effect))
        report["text"] = {
            "dir": TEXT_DIR, "recipe": TEXT_YAML, "seq_len": opts.seq_len,
            "mix_strategy": opts.mix_strategy if interleave else "concat",
            "datasets": mix.names if interleave else [STREAM], "sources": mix.names,
            "documents": mix.documents, "mean_document_tokens": mix.mean_tokens,
            "token_shares": mix.target, "interleave_probs": mix.probs,
            "expected_token_shares": mix.expected, "rounding_error": mix.rounding_error,
            "interleave_under": None if isinstance(effect, str) else asdict(effect)}
        result.files += [os.path.join(out, TEXT_DIR), recipe]
        result.lines.append(f"wrote {os.path.join(out, TEXT_DIR)} and {recipe}")
        if interleave:
            result.lines += [*("  " + x for x in mix_table(mix)),
                             f"  {opts.mix_strategy}, interleave_probs: {','.join(mix.probs)} "
                             f"(for token shares {', '.join(f'{t:.2%}' for t in mix.target)})",
                             *("  " + x for x in _effect_lines(mix, effect))]
        else:
            result.lines.append(
                f"  mix_strategy concat over {STREAM}.jsonl (the build's order): exactly the "
                f"built token shares {', '.join(f'{n} {t:.2%}' for n, t in zip(mix.names, mix.target))}")
            if not isinstance(effect, str):
                result.lines.append(f"  (interleave_under instead: keeps "
                                    f"{effect.used_fraction_mean:.1%} of the tokens, worst share "
                                    f"error {effect.error_worst:.2%}, simulated)")
    if facts.has_masks:
        result.lines.append(f"  note: LLaMA-Factory's pt stage trains on every token; the "
                            f"build's loss masks ({facts.loss_tokens:,} of "
                            f"{facts.total_tokens:,} tokens train) are not applied")
    result.report = report
    result.files.append(write_report(guard, report, written))
    return result
