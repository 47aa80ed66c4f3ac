"""The per-source summary table printed after a build and by ``instmix inspect``."""

from __future__ import annotations


def summary_lines(manifest: dict) -> list[str]:
    head = ("source", "kind", "docs", "tokens", "target", "achieved", "reps", "skipped")
    cleaned = any("removed" in s for s in manifest["sources"])
    if cleaned:  # the clean stage: documents removed by reason, pairs filtered
        head += ("dup", "near", "contam", "pairs out")
    rows = []
    for s in manifest["sources"]:
        skipped = sum(s.get("skipped", {}).values())
        row = (s["name"], s["kind"], f"{s['documents']:,}", f"{s['tokens']:,}",
               f"{s['target_ratio']:.2%}", f"{s['achieved_ratio']:.2%}",
               f"{s['repetitions']:.2f}", f"{skipped:,}")
        if cleaned:
            r = s.get("removed", {})
            row += (f"{r.get('duplicate', 0):,}", f"{r.get('near_duplicate', 0):,}",
                    f"{r.get('contaminated', 0):,}", f"{sum(r.get('filtered', {}).values()):,}")
        rows.append(row)
    rows.append(("total", "", f"{manifest['documents']:,}", f"{manifest['total_tokens']:,}",
                 "100.00%", "100.00%", "", "") + ("",) * (len(head) - 8))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    right = set(range(2, len(head)))

    def fmt(row):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "-" * len(fmt(head))
    tok = manifest["tokenizer"]
    lines = [fmt(head), rule, *map(fmt, rows[:-1]), rule, fmt(rows[-1]), "",
             f"dtype {manifest['dtype']}, vocab {tok['vocab_size']:,}, eos {tok['eos_token_id']}"
             f", bos {tok['bos_token_id']}, seed {manifest['seed']}, "
             f"{len(manifest['shards'])} shard(s)"]
    return lines


def print_summary(manifest: dict, title: str | None = None) -> None:
    if title:
        print(title)
    print("\n".join(summary_lines(manifest)))
