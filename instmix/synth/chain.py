"""M-round chaining: which texts share a chain and what each prompt holds.

The N texts of a block are cut into M contiguous chunks of ``B = ceil(N/M)``. In round r,
text j of chunk r continues chain j: the chain's earlier (text, pairs) become its
demonstrations. A chain continues only if its last entry produced at least one pair and
the whole prompt fits the budget; otherwise the text starts a fresh chain. When the last
chunk is shorter than B (or empty), the chains without a text simply end.

An entry's ``chain_id`` is the id of the first text of its chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .pairkinds import pair_kind
from .parse import parse_output
from .prompt import PromptEncoder
from .segment import Text

STATUSES = ("ok", "no_pairs", "failed")


@dataclass(frozen=True)
class Entry:
    """One synthesized text. ``pairs`` are ``(question, answer, kind)``."""

    id: str
    source_id: str
    chain_id: str
    round: int
    context: str
    pairs: tuple[tuple[str, str, str], ...]
    status: str
    shot: int = 0
    text_tokens: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    dropped: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict:
        d = {"id": self.id, "source_id": self.source_id, "chain_id": self.chain_id,
             "round": self.round, "context": self.context,
             "pairs": [{"question": q, "answer": a, "kind": k} for q, a, k in self.pairs],
             "status": self.status, "shot": self.shot, "text_tokens": self.text_tokens,
             "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
             "finish_reason": self.finish_reason, "dropped": dict(sorted(self.dropped.items()))}
        if self.error is not None:
            d["error"] = self.error
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> Entry:
        return cls(
            id=d["id"], source_id=d["source_id"], chain_id=d["chain_id"], round=d["round"],
            context=d["context"],
            pairs=tuple((p["question"], p["answer"], p.get("kind", "qa")) for p in d["pairs"]),
            status=d["status"], shot=d.get("shot", 0), text_tokens=d.get("text_tokens", 0),
            prompt_tokens=d.get("prompt_tokens", 0), output_tokens=d.get("output_tokens", 0),
            finish_reason=d.get("finish_reason"), dropped=dict(d.get("dropped", {})),
            error=d.get("error"))

    @property
    def demo(self) -> tuple[str, list[tuple[str, str]]]:
        return self.context, [(q, a) for q, a, _ in self.pairs]


@dataclass(frozen=True)
class Planned:
    """A prompt to run: the text, its chain, its demonstrations and its token ids.

    ``fresh`` says why a text starts a chain: ``first`` (round 0 or no chain to join),
    ``no_pairs`` (the chain's last entry has no pair) or ``too_long`` (demos + text do not
    fit); ``None`` when it continues one.
    """

    position: int
    text: Text
    chain_id: str
    demos: tuple[Entry, ...]
    prompt_ids: list[int]
    text_tokens: int
    fresh: str | None


def chunk_bounds(n: int, rounds: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each non-empty round chunk of ``n`` texts."""
    size = -(-n // rounds) if n else 0
    return [(r * size, min(n, (r + 1) * size)) for r in range(rounds) if r * size < n]


def plan_one(position: int, text: Text, chain: Sequence[Entry], ctx: Sequence[int],
             encoder: PromptEncoder, demo_cache: Mapping[str, list[int]]) -> Planned:
    """Plan text ``text`` (at ``position`` of its round) after ``chain`` (its slot's entries
    so far). ``demo_cache`` must hold the demo ids of ``chain``'s entries when its last
    entry is ``ok``."""
    overhead = encoder.overhead
    fresh = "first"
    if chain:
        fresh = "no_pairs"
        if chain[-1].status == "ok":
            pieces = [demo_cache[e.id] for e in chain]
            size = sum(len(p) + 2 for p in pieces) + 1 + len(ctx)
            if size <= encoder.limit:
                return Planned(position, text, chain[0].chain_id, tuple(chain),
                               encoder.assemble(pieces, ctx), len(ctx) + 1 - overhead, None)
            fresh = "too_long"
    return Planned(position, text, text.id, (), encoder.assemble([], ctx),
                   len(ctx) + 1 - overhead, fresh)


def missing_demos(chains: Sequence[Sequence[Entry]], demo_cache: Mapping[str, list[int]]
                  ) -> list[Entry]:
    """Entries of continuable chains whose demo ids are not in ``demo_cache`` (once each)."""
    wanted = {e.id: e for chain in chains if chain and chain[-1].status == "ok"
              for e in chain if e.id not in demo_cache}
    return list(wanted.values())


def plan_round(chunk: Sequence[Text], chains: Sequence[tuple[Entry, ...]],
               ctx_ids: Mapping[str, list[int]], encoder: PromptEncoder,
               demo_cache: dict[str, list[int]]) -> list[Planned]:
    """Plan the prompts of one round; ``chains[j]`` is the chain text j may continue."""
    entries = missing_demos(chains[:len(chunk)], demo_cache)
    for e, ids in zip(entries, encoder.demo_ids([e.demo for e in entries])):
        demo_cache[e.id] = ids
    return [plan_one(j, text, chains[j] if j < len(chains) else (), ctx_ids[text.id],
                     encoder, demo_cache) for j, text in enumerate(chunk)]


def extend_chain(chain: tuple[Entry, ...], entry: Entry) -> tuple[Entry, ...]:
    """The slot's chain after ``entry``: continued when it had demonstrations, else anew."""
    return chain + (entry,) if entry.shot else (entry,)


def make_entry(plan: Planned, round_: int, text: str | None, output_tokens: int,
               finish_reason: str | None, error: str | None) -> Entry:
    """The entry for a planned prompt and its engine result (``error`` set: failed)."""
    common = dict(id=plan.text.id, source_id=plan.text.source_id, chain_id=plan.chain_id,
                  round=round_, context=plan.text.text, shot=len(plan.demos),
                  text_tokens=plan.text_tokens, prompt_tokens=len(plan.prompt_ids),
                  output_tokens=output_tokens, finish_reason=finish_reason)
    if error is not None:
        return Entry(pairs=(), status="failed", error=error, **common)
    parsed = parse_output(text or "")
    pairs = tuple((q, a, pair_kind(q, a)) for q, a in parsed.pairs)
    return Entry(pairs=pairs, status="ok" if pairs else "no_pairs", dropped=parsed.dropped,
                 **common)


def next_chains(plans: Sequence[Planned], entries: Mapping[str, Entry]
                ) -> list[tuple[Entry, ...]]:
    """The chain each position carries into the next round."""
    out = []
    for p in plans:
        e = entries[p.text.id]
        out.append(p.demos + (e,) if p.fresh is None else (e,))
    return out
