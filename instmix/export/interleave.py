"""Token ratios -> per-document sampling probabilities, and what document mixing costs.

LLaMA-Factory (like ``datasets.interleave_datasets``) mixes *documents*: at each step it
picks source ``s`` with probability ``p_s`` and takes that source's next document. The
expected token share of ``s`` is then ``p_s * mu_s / sum_j p_j * mu_j`` (``mu``: mean
document length in tokens), so the probabilities that give token shares ``r`` are
``p_s = (r_s / mu_s) / sum_j (r_j / mu_j)``.

Two things move the result away from ``r``: the probabilities are written with a finite
number of decimals (exact, computed below), and ``interleave_under`` stops at the first
source that runs out, leaving the other sources' remaining documents unused (random;
estimated here by simulating that rule on the real document lengths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instmix.errors import InstmixError


def doc_probabilities(token_shares, mean_doc_tokens) -> np.ndarray:
    """``p_s`` proportional to ``share_s / mean_s``; raises on a source with no documents."""
    r = np.asarray(token_shares, dtype=np.float64)
    mu = np.asarray(mean_doc_tokens, dtype=np.float64)
    if r.shape != mu.shape or r.ndim != 1 or not len(r):
        raise InstmixError("token shares and mean document lengths must be equal-length lists")
    if np.any(mu <= 0) or np.any(r < 0) or r.sum() <= 0:
        raise InstmixError("every source needs a positive mean document length and a "
                           "non-negative share")
    w = r / mu
    return w / w.sum()


def round_probabilities(p, decimals: int = 6) -> list[str]:
    """Decimal strings that sum to exactly 1 (largest remainder), as interleave needs."""
    scale = 10 ** decimals
    raw = np.asarray(p, dtype=np.float64) * scale
    units = np.floor(raw).astype(np.int64)
    short = scale - int(units.sum())
    for i in np.argsort(-(raw - units), kind="stable")[:short]:
        units[i] += 1
    return [f"{u / scale:.{decimals}f}" for u in units]


def expected_token_shares(p, mean_doc_tokens) -> np.ndarray:
    w = np.asarray(p, dtype=np.float64) * np.asarray(mean_doc_tokens, dtype=np.float64)
    return w / w.sum()


@dataclass(frozen=True)
class StopEffect:
    """``interleave_under`` over the exported documents, simulated ``runs`` times."""

    runs: int
    used_fraction_mean: float  # share of all exported tokens that the stream keeps
    error_p50: float  # max over sources of |token share - target|, median over runs
    error_p99: float
    error_worst: float


def simulate_interleave_under(lengths: list[np.ndarray], p, target, *, runs: int = 200,
                              seed: int = 0, budget: int = 50_000_000) -> StopEffect | None:
    """Draw a source per step with probabilities ``p``; take its next document; stop when
    the drawn source has none left. ``lengths[s]`` are source ``s``'s document lengths in
    the order they are read. Runs are cut so that runs x documents <= ``budget``."""
    n = np.array([len(x) for x in lengths], dtype=np.int64)
    total_docs = int(n.sum())
    runs = int(min(runs, budget // max(1, total_docs + 1)))
    if runs < 1:
        return None
    csum = [np.concatenate([[0], np.cumsum(x, dtype=np.int64)]) for x in lengths]
    all_tokens = sum(int(c[-1]) for c in csum)
    target = np.asarray(target, dtype=np.float64)
    rng = np.random.default_rng(seed)
    errors, used = [], []
    for _ in range(runs):
        picks = rng.choice(len(n), size=total_docs + 1, p=np.asarray(p, dtype=np.float64))
        # The stream ends just before the (n_s + 1)-th pick of some source s.
        stop = total_docs + 1
        for s in range(len(n)):
            where = np.flatnonzero(picks == s)
            if len(where) > n[s]:
                stop = min(stop, int(where[n[s]]))
        counts = np.bincount(picks[:stop], minlength=len(n))
        tokens = np.array([c[k] for c, k in zip(csum, counts)], dtype=np.float64)
        errors.append(float(np.max(np.abs(tokens / tokens.sum() - target))))
        used.append(tokens.sum() / all_tokens)
    e = np.asarray(errors)
    return StopEffect(runs, float(np.mean(used)), float(np.percentile(e, 50)),
                      float(np.percentile(e, 99)), float(e.max()))
