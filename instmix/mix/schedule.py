"""Deficit interleaving: the next document comes from the source furthest below its
target share of the tokens emitted so far.

With weights ``w`` (summing to 1), after ``E`` tokens of which ``e_s`` came from source
``s``, the deficit is ``w_s * E - e_s``. Choosing the largest deficit bounds it at every
prefix, not only at the end, while every source still has documents (``D``: the longest
document, ``k``: the number of sources):

- over-service: ``e_s - w_s E <= (1 - w_s) D``. Deficits sum to 0, so the chosen (largest)
  one is >= 0; emitting ``l <= D`` tokens lowers it by ``(1 - w_s) l``, and it only rises
  while other sources emit;
- under-service: ``w_s E - e_s <= (k - 2 + w_s) D``, the sum of the other sources'
  over-service bounds (deficits sum to 0).

So two sources stay within one document of their shares, and ``k`` sources within
``(k - 1) D``. Ties go to the larger weight, then to the earlier source. Arithmetic is exact (integers scaled by the
weights' common denominator), so the order is a pure function of the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import lcm

import numpy as np


class DeficitScheduler:
    """Incremental form: ask :meth:`pick`, then report what was emitted with :meth:`emit`."""

    def __init__(self, weights: Sequence[Fraction]):
        total = sum(weights, Fraction(0))
        if total <= 0:
            raise ValueError("weights must sum to a positive number")
        norm = [Fraction(w) / total for w in weights]
        self.denom = lcm(*(w.denominator for w in norm))
        self.scaled = [int(w * self.denom) for w in norm]  # sums to denom
        self.emitted = [0] * len(norm)
        self.total = 0
        # Tie-break order: larger weight first, then config order.
        self.order = sorted(range(len(norm)), key=lambda i: (-norm[i], i))

    def pick(self, active: Sequence[bool]) -> int:
        """Index of the active source with the largest deficit (-1 when none is active)."""
        best, best_def = -1, None
        t, d = self.total, self.denom
        for i in self.order:
            if active[i]:
                deficit = self.scaled[i] * t - self.emitted[i] * d
                if best_def is None or deficit > best_def:
                    best, best_def = i, deficit
        return best

    def emit(self, source: int, tokens: int) -> None:
        self.emitted[source] += tokens
        self.total += tokens

    def state(self) -> dict:
        return {"emitted": list(self.emitted)}

    def load(self, state: dict) -> None:
        self.emitted = [int(x) for x in state["emitted"]]
        self.total = sum(self.emitted)


def interleave(weights: Sequence[Fraction], lengths: Sequence[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-source document streams (token lengths, in draw order) into one.

    Returns ``(source, index)`` arrays: the i-th output document is document ``index[i]``
    of source ``source[i]``'s stream. A source drops out when its stream is exhausted.
    """
    k = len(weights)
    sched = DeficitScheduler(weights)
    lens = [ls.tolist() for ls in lengths]
    pos = [0] * k
    active = [len(ls) > 0 and w > 0 for ls, w in zip(lens, weights)]
    n = sum(len(ls) for ls, a in zip(lens, active) if a)
    out_src = np.empty(n, dtype=np.int32)
    out_idx = np.empty(n, dtype=np.int64)
    scaled, emitted, order, d = sched.scaled, sched.emitted, sched.order, sched.denom
    total = 0
    for j in range(n):
        best, best_def = -1, 0
        for i in order:  # inlined DeficitScheduler.pick: this loop runs once per document
            if active[i]:
                deficit = scaled[i] * total - emitted[i] * d
                if best < 0 or deficit > best_def:
                    best, best_def = i, deficit
        p = pos[best]
        length = lens[best][p]
        emitted[best] += length
        total += length
        out_src[j], out_idx[j] = best, p
        pos[best] = p + 1
        if p + 1 == len(lens[best]):
            active[best] = False
    return out_src, out_idx
