"""A seeded permutation of ``range(n)`` computed position by position, in O(1) memory.

``Permutation(n, seed)[i]`` is a bijection of ``[0, n)``: a 6-round Feistel network over
the smallest even-bit domain holding ``n``, with cycle walking for values that land
outside ``[0, n)``. Any position is computed without the others, so the order of an epoch
is a pure function of ``(seed, epoch, position)`` even for billions of sequences.
"""

from __future__ import annotations

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a strong 64-bit mixing function (wraps modulo 2**64)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Permutation:
    ROUNDS = 6

    def __init__(self, n: int, seed: int):
        if n < 0:
            raise ValueError("n must be >= 0")
        self.n = n
        bits = max(2, (max(n - 1, 1)).bit_length())
        self.half = (bits + 1) // 2
        self.low = np.uint64((1 << self.half) - 1)
        keys = _mix(np.arange(1, self.ROUNDS + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                    ^ _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)))
        self.keys = keys

    def _once(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.low
        for k in self.keys:
            left, right = right, left ^ (_mix(right ^ k) & self.low)
        return (left << h) | right

    def __call__(self, positions) -> np.ndarray:
        """Map an array of positions in ``[0, n)`` to their permuted values."""
        x = np.asarray(positions, dtype=np.uint64)
        with np.errstate(over="ignore"):
            out = self._once(x)
            bad = out >= np.uint64(self.n)
            while bad.any():  # cycle walking: at most a few rounds on average
                out[bad] = self._once(out[bad])
                bad = out >= np.uint64(self.n)
        return out.astype(np.int64)

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return int(self(np.array([i]))[0])
