"""The token plan: how many tokens each source contributes and which documents, in order.

- Weights are the sources' ratios normalised to sum to 1 (exact fractions).
- ``total_tokens`` defaults to the most the ratios and caps allow:
  ``min_s floor(max_repetition_s * available_s / w_s)``.
- Source ``s`` is given ``target_s = floor(w_s * total)`` tokens and may use at most
  ``budget_s = floor(max_repetition_s * available_s)``.
- Its documents are drawn pass by pass, without replacement within a pass, each pass in the
  order of a permutation seeded by ``(seed, source name, pass)``. Drawing stops at the
  document boundary closest to the target (so a source ends within half a document of it),
  and never past the budget. So the documents drawn for a smaller share are a prefix of
  those drawn for a larger one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import floor

import numpy as np

from instmix.errors import PlanError


@dataclass(frozen=True)
class SourcePlan:
    name: str
    weight: Fraction
    available: int
    budget: int
    target: int


def name_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def pass_permutation(seed: int, name: str, pass_no: int, n: int) -> np.ndarray:
    """The order of source ``name``'s documents in pass ``pass_no``."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [seed, name_seed(name), pass_no])))
    return rng.permutation(n)


def fmt(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"


def plan_targets(names: Sequence[str], ratios: Sequence[float], caps: Sequence[float],
                 available: Sequence[int], total_tokens: int | None) -> list[SourcePlan]:
    """Per-source targets; raises :class:`PlanError` with the numbers when caps forbid it."""
    raw = [Fraction(str(r)) for r in ratios]
    weights = [r / sum(raw) for r in raw]
    budgets = [floor(Fraction(str(c)) * a) for c, a in zip(caps, available)]
    if total_tokens is None:
        total_tokens = min(floor(b / w) for b, w in zip(budgets, weights) if w > 0)
        if total_tokens == 0:
            empty = [f"source '{n}' may give {fmt(b)} tokens ({fmt(a)} available x "
                     f"max_repetition {c:g})" for n, w, a, b, c in
                     zip(names, weights, available, budgets, caps) if w > 0 and b == 0]
            raise PlanError("; ".join(empty) + "; raise max_repetition so that each source "
                            "with a ratio > 0 may give at least one document")
    plans = [SourcePlan(n, w, a, b, floor(w * total_tokens))
             for n, w, a, b in zip(names, weights, available, budgets)]
    short = [p for p in plans if p.target > p.budget]
    if short:
        most = min(floor(p.budget / p.weight) for p in plans if p.weight > 0)
        lines = []
        for p, cap in zip(plans, caps):
            if p in short:
                need = p.target / p.available
                lines.append(f"source '{p.name}' needs {fmt(p.target)} tokens "
                             f"({float(p.weight):.2%} of {fmt(total_tokens)}) but has "
                             f"{fmt(p.available)} x max_repetition {cap:g} = {fmt(p.budget)} "
                             f"(raise its max_repetition to >= {float(need):.3f})")
        raise PlanError("; ".join(lines) + f"; or lower total_tokens to <= {fmt(most)}")
    return plans


def check_drawn(where: str, total_tokens: int | None, draws: Sequence[np.ndarray],
                lengths: Sequence[np.ndarray]) -> None:
    """Refuse a plan that gives no source a whole document (an empty build)."""
    if not any(len(d) for d in draws):
        shortest = min(int(c.min()) for c in lengths if len(c))
        raise PlanError(f"{where}: total_tokens: {total_tokens} gives no source a whole "
                        f"document (the shortest holds {shortest} tokens); raise it")


def draw_documents(seed: int, plan: SourcePlan, lengths: np.ndarray) -> np.ndarray:
    """Document indices of one source in draw order (see module docstring)."""
    n = len(lengths)
    if plan.target <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    chunks: list[np.ndarray] = []
    used = 0
    pass_no = 0
    while True:
        perm = pass_permutation(seed, plan.name, pass_no, n)
        cum = used + np.cumsum(lengths[perm])
        reach = int(np.searchsorted(cum, plan.target, side="left"))  # first cum >= target
        fits = int(np.searchsorted(cum, plan.budget, side="right"))  # count with cum <= budget
        if reach < n and reach < fits:
            before = int(cum[reach - 1]) if reach else used
            # Keep the document that crosses the target only if that lands closer to it.
            take = reach + 1 if cum[reach] - plan.target <= plan.target - before else reach
            if take == 0 and not chunks:
                take = 1  # a source with a share gets at least one document
            chunks.append(perm[:take])
            break
        if fits < n:
            chunks.append(perm[:fits])
            break
        chunks.append(perm)
        used = int(cum[-1])
        pass_no += 1
    return np.concatenate(chunks).astype(np.int64)
