"""Counts over augment entries: pairs per text, parse failures by reason, pair kinds.

Block counts are additive, so totals are sums over finished blocks whatever the order or
the number of sessions that produced them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from .chain import Entry


def block_stats(entries: Iterable[Entry], *, docs: int, split_docs: int) -> dict:
    status: Counter = Counter()
    per_text: Counter = Counter()
    drops: Counter = Counter()
    kinds: Counter = Counter()
    chains: Counter = Counter()
    tokens: Counter = Counter()
    continued = 0
    for e in entries:
        status[e.status] += 1
        per_text[str(len(e.pairs))] += 1
        drops.update(e.dropped)
        kinds.update(k for _, _, k in e.pairs)
        chains[e.chain_id] += 1
        continued += e.shot > 0
        tokens.update(text=e.text_tokens, prompt=e.prompt_tokens, generated=e.output_tokens)
    return {
        "docs": docs, "split_docs": split_docs, "texts": sum(status.values()),
        "pairs": sum(kinds.values()), "continued_chains": continued,
        "status": dict(status), "pairs_per_text": dict(per_text), "parse_drops": dict(drops),
        "pair_kinds": dict(kinds), "chains": len(chains),
        "chain_lengths": dict(Counter(str(n) for n in chains.values())),
        "tokens": dict(tokens),
    }


def cache_stats(part) -> dict:
    """Prefix-cache figures of a part: per entry ``[cached, reusable]`` (None: unknown) and
    sums over the entries where both are known; ``hit_tokens`` counts cached tokens up to
    the reusable ones (the common prefix with the chain's previous prompt)."""
    cached = reusable = hit = 0
    per = {}
    for e, (c, r) in zip(part.entries, part.cache):
        per[e.id] = [c, r]
        if c is not None and r is not None:
            cached += c
            reusable += r
            hit += min(c, r)
    return {"cached_tokens": cached, "reusable_tokens": reusable, "hit_tokens": hit,
            "entries": per}


def merge(stats: Iterable[Mapping]) -> dict:
    """Sum of counters, nested dicts included (histogram keys sorted numerically)."""
    total: dict = {}
    for s in stats:
        _add(total, s)
    return _sorted(total)


def _add(into: dict, more: Mapping) -> None:
    for k, v in more.items():
        if isinstance(v, Mapping):
            _add(into.setdefault(k, {}), v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            into[k] = into.get(k, 0) + v


def _sorted(d: dict) -> dict:
    def key(k):
        return (0, int(k), "") if k.isdigit() else (1, 0, k)

    return {k: _sorted(v) if isinstance(v, dict) else v for k, v in sorted(d.items(),
                                                                          key=lambda kv: key(kv[0]))}


def rates(session: Mapping) -> dict:
    """Per-second figures of a session's counters."""
    secs = session.get("seconds") or 0.0
    eng = session.get("engine_seconds") or 0.0
    out = {}
    for key in ("texts", "prompts", "raw_tokens", "generated_tokens"):
        out[f"{key}_per_s"] = round(session.get(key, 0) / secs, 2) if secs else 0.0
    out["engine_share"] = round(eng / secs, 4) if secs else 0.0
    return out
