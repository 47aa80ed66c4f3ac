"""Loss tokens per document of a cache unit, counted in bounded memory."""

from __future__ import annotations

import numpy as np

from instmix.tokenize.cache import CacheUnit

LOSS_CHUNK = 1 << 22  # tokens summed at a time when counting loss tokens per document


def loss_lengths(unit: CacheUnit) -> np.ndarray:
    """Loss tokens per document, read in bounded chunks of the memory-mapped mask."""
    if unit.mask is None:
        return unit.lengths.astype(np.int64)
    offsets = np.asarray(unit.offsets, dtype=np.int64)
    out = np.zeros(len(offsets) - 1, dtype=np.int64)
    doc = 0
    while doc < len(out):
        end = int(np.searchsorted(offsets, offsets[doc] + LOSS_CHUNK, side="right")) - 1
        end = min(max(end, doc + 1), len(out))
        a, b = int(offsets[doc]), int(offsets[end])
        chunk = np.asarray(unit.mask[a:b]).view(np.uint8)
        starts = offsets[doc:end] - a
        nonempty = offsets[doc + 1:end + 1] > offsets[doc:end]
        if b > a:
            sums = np.add.reduceat(chunk, np.minimum(starts, b - a - 1), dtype=np.int64)
            out[doc:end] = np.where(nonempty, sums, 0)
        doc = end
    return out
