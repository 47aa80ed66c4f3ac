"""``instmix export {olmo,olmo-core,llamafactory} BUILD``: trainer configs for a build."""

from __future__ import annotations

from instmix.export import check_config, export
from instmix.export.hf_tokenizer import export_tokenizer


def register(sub) -> None:
    p = sub.add_parser("export", help="write trainer configs (OLMo, OLMo-core, LLaMA-Factory) "
                       "for a build, or check one",
                       description="Write ready-to-edit trainer configs for a build, or check "
                       "an existing config against it (--check).")
    fw = p.add_subparsers(dest="framework", metavar="FRAMEWORK", required=True)

    def common(name: str, help: str, seq_len: int):
        q = fw.add_parser(name, help=help, description=help)
        q.add_argument("build", help="build folder (holds manifest.json)")
        q.add_argument("--out", help=f"output folder (default: BUILD/export-{name})")
        q.add_argument("--seq-len", type=int, default=seq_len,
                       help=f"trainer sequence length (default {seq_len})")
        q.add_argument("--check", metavar="CONFIG", help="check CONFIG (YAML/JSON) against the "
                       "build instead of exporting: tokenizer ids, dtype, files")
        q.set_defaults(func=run, framework=name)
        return q

    q = common("olmo", "OLMo (ai2-olmo) YAML `data:` section and `model:` id hints", 4096)
    q.add_argument("--data-root", help="where the trainer sees the build folder (path or "
                   "URL prefix; default: its absolute local path)")
    q = common("olmo-core", "OLMo-core dataset configs (Python module and YAML)", 4096)
    q.add_argument("--data-root", help="where the trainer sees the build folder (path or "
                   "URL prefix; default: its absolute local path)")
    q.add_argument("--work-dir", help="OLMo-core work_dir written into the configs")
    q.add_argument("--global-batch-size", type=int, help="source mixture batch size in "
                   "tokens (a multiple of --seq-len; default --seq-len)")
    q.add_argument("--requested-tokens", type=int, help="source mixture size in tokens "
                   "(default: the build's total)")
    q.add_argument("--long-doc-strategy", choices=("fragment", "truncate"), default="fragment",
                   help="packed config: split documents longer than --seq-len (fragment, "
                   "default: every token kept) or drop their tail (truncate)")
    q.add_argument("--max-dropped", type=float, default=0.01, help="with truncate, refuse "
                   "when any source would lose more than this fraction of its tokens "
                   "(default 0.01)")
    q = common("llamafactory", "LLaMA-Factory pt-stage data: a tokenized dataset (exact) and "
               "text files with interleave_probs", 2048)
    q.add_argument("--routes", default="tokenized,text",
                   help="tokenized, text or both (default tokenized,text)")
    q.add_argument("--rows", choices=("blocks", "documents"), default="blocks",
                   help="tokenized rows: --seq-len blocks of the token stream (default) or "
                   "one per document")
    q.add_argument("--mix-strategy", choices=("concat", "interleave_under", "interleave_over"),
                   default="concat", help="text route: concat (default) writes every "
                   "document once in the build's order, exactly the built token shares; "
                   "interleave_* writes one file per source and interleave_probs (the error "
                   "is printed)")
    q.add_argument("--model", help="model_name_or_path for the recipes")
    q.add_argument("--template", help="LLaMA-Factory template for the recipes")
    q.add_argument("--sim-runs", type=int, default=200,
                   help="interleave_under simulations for the error estimate (default 200)")
    help = ("a Hugging Face tokenizer folder for the build: tokenizer.json, "
            "tokenizer_config.json with its EOS and a distinct pad token (for LLaMA-Factory "
            "and other transformers trainers)")
    q = fw.add_parser("tokenizer", help=help, description=help)
    q.add_argument("build", help="build folder (holds manifest.json)")
    q.add_argument("--out", help="output folder (default: BUILD/export-tokenizer)")
    q.add_argument("--pad", help="the pad token's text (default: the tokenizer's pad token, "
                   "else a special token that is neither EOS nor BOS and never in the build)")
    q.set_defaults(func=run_tokenizer, framework="tokenizer")


def run_tokenizer(args) -> int:
    result = export_tokenizer(args.build, args.out, pad=args.pad)
    print("\n".join(result.lines))
    return 0


def run(args) -> int:
    if args.check:
        notes = check_config(args.framework, args.build, args.check)
        print(f"ok: {args.check} agrees with {args.build} (tokenizer ids, dtype, files)")
        for n in notes:
            print(f"  note: {n}")
        return 0
    options = {"seq_len": args.seq_len}
    if args.framework in ("olmo", "olmo-core"):
        options["data_root"] = args.data_root
    if args.framework == "olmo-core":
        options.update(work_dir=args.work_dir, global_batch_size=args.global_batch_size,
                       requested_tokens=args.requested_tokens,
                       long_doc_strategy=args.long_doc_strategy, max_dropped=args.max_dropped)
    if args.framework == "llamafactory":
        options.update(routes=tuple(r.strip() for r in args.routes.split(",") if r.strip()),
                       rows=args.rows, model=args.model, template=args.template,
                       mix_strategy=args.mix_strategy,
                       sim_runs=args.sim_runs)
    result = export(args.framework, args.build, args.out, **options)
    print("\n".join(result.lines))
    return 0
