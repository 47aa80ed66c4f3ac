"""OLMo-core's packed dataset and documents longer than the sequence length: what
``long_doc_strategy`` ``fragment`` (every token kept, long documents split into
``seq_len`` pieces) and ``truncate`` (each document's tokens after its first ``seq_len``
dropped) do to each source (``olmo_core/data/utils.py`` of 3.0.0)."""

from __future__ import annotations

import numpy as np

from instmix.errors import InstmixError
from instmix.format.reader import read_index

from .facts import BuildFacts


def long_documents(facts: BuildFacts, seq_len: int) -> dict[str, dict]:
    """Per source: its tokens, documents longer than ``seq_len``, the pieces ``fragment``
    cuts those into, and the tokens ``truncate`` would drop (every document's tokens after
    its first ``seq_len``)."""
    out = {s.name: {"tokens": 0, "long_documents": 0, "fragments": 0, "truncate_drops": 0}
           for s in facts.used_sources}
    for f in facts.shards:
        idx = read_index(f.path)
        lengths = idx.end - idx.start
        src = np.asarray(idx.src)
        for name, row in out.items():
            n = lengths[src == name]
            long = n[n > seq_len]
            row["tokens"] += int(n.sum())
            row["long_documents"] += int(len(long))
            row["fragments"] += int((-(-long // seq_len)).sum())
            row["truncate_drops"] += int((long - seq_len).sum())
    return out


def packed_lines(facts: BuildFacts, opts, long: dict) -> list[str]:
    """What the packed config keeps; raises when ``truncate`` drops too much."""
    drops = sum(r["truncate_drops"] for r in long.values())
    docs = sum(r["long_documents"] for r in long.values())
    if opts.long_doc_strategy == "fragment":
        if not docs:
            return [f"  packed: every document fits in {opts.seq_len} tokens; nothing dropped"]
        return [f"  packed (long_doc_strategy fragment): every token kept; {docs:,} documents "
                f"longer than {opts.seq_len} tokens are split into "
                f"{sum(r['fragments'] for r in long.values()):,} pieces"]
    worst = max(long, key=lambda n: long[n]["truncate_drops"] / max(1, long[n]["tokens"]))
    frac = long[worst]["truncate_drops"] / max(1, long[worst]["tokens"])
    if frac > opts.max_dropped:
        raise InstmixError(f"{opts.where}: long_doc_strategy truncate at seq_len {opts.seq_len} "
                           f"drops {frac:.1%} of source {worst!r}'s tokens ({drops:,} of "
                           f"{facts.total_tokens:,} in all), above max_dropped "
                           f"{opts.max_dropped:g}; use fragment, or raise --max-dropped")
    lines = [f"  packed (long_doc_strategy truncate): drops {drops:,} tokens "
             f"({drops / facts.total_tokens:.2%}) from {docs:,} long documents"]
    lines += [f"    {n}: {r['truncate_drops']:,} of {r['tokens']:,} tokens dropped"
              for n, r in long.items()]
    return lines
