"""Arrays in object-store files, read by ranged GETs through a bounded block cache.

A :class:`RangeArray` is a read-only 1-D array over a headerless file at a URL. Reads go
through a :class:`BlockCache`: the file is cut into fixed ``block_bytes`` blocks, a read
fetches only the blocks it lacks (all of them at once, as concurrent range requests) and
the cache keeps at most ``max_bytes`` of the most recently used blocks. Nothing is ever
downloaded whole.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np

from instmix.errors import InstmixError

from . import fs

BLOCK_BYTES = 64 << 10  # least block for shuffled reads of a build larger than the cache
WARM_BLOCK_BYTES = 1 << 20  # block for a build that fits in the cache
CACHE_BYTES = 256 << 20


def check_sizes(block_bytes: int | None, cache_bytes: int) -> None:
    """One-line errors for a reader's ``block_bytes`` (None: chosen) and ``cache_bytes``."""
    named = [("block_bytes", block_bytes)] if block_bytes is not None else []
    for name, v in named + [("cache_bytes", cache_bytes)]:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InstmixError(f"{name} must be an integer >= 1 (bytes), got {v!r}")
    if block_bytes is not None and cache_bytes < block_bytes:
        raise InstmixError(f"cache_bytes ({cache_bytes:,}) must be >= block_bytes "
                           f"({block_bytes:,}): the cache holds whole blocks")


def choose_block_bytes(block_bytes: int | None, cache_bytes: int, data_bytes: int,
                       item_bytes: int) -> int:
    """The block size of a reader's cache; ``block_bytes`` when given.

    Default: when every ranged byte (``data_bytes``) fits in the cache, 1 MiB blocks: the
    cache fills with 16x fewer requests than 64 KiB blocks and then every read hits. Else
    reads are spread over more data than the cache holds and most miss: the smallest power
    of two >= 64 KiB and >= 2 items (``item_bytes``), so an item needs one request (two
    when it straddles a boundary, at most half the time) and a miss reads little more than
    it uses. Never more than the cache holds (it stays bounded by ``cache_bytes``).
    """
    if block_bytes is not None:
        return block_bytes
    if data_bytes <= cache_bytes:
        block = WARM_BLOCK_BYTES
    else:
        block = max(BLOCK_BYTES, 1 << max(0, 2 * item_bytes - 1).bit_length())
    while block > cache_bytes and block > 1:
        block //= 2
    return block


class BlockCache:
    """Least-recently-used blocks of remote files, at most ``max_bytes`` held."""

    def __init__(self, block_bytes: int = BLOCK_BYTES, max_bytes: int = CACHE_BYTES):
        if block_bytes < 1 or max_bytes < block_bytes:
            raise ValueError("need block_bytes >= 1 and max_bytes >= block_bytes")
        self.block_bytes, self.max_bytes = block_bytes, max_bytes
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.held = 0
        self.requests = 0

    def fetch(self, url: str, size: int, blocks: Iterable[int],
              storage_options: Mapping | None) -> None:
        """Make sure ``blocks`` of ``url`` are held (one batch of concurrent range GETs)."""
        missing = sorted({b for b in blocks if (url, b) not in self._blocks})
        if not missing:
            return
        B = self.block_bytes
        starts = [b * B for b in missing]
        ends = [min(size, s + B) for s in starts]
        handle = fs.filesystem(url, storage_options)
        key = handle._strip_protocol(url)
        data = fs.call(handle.cat_ranges, [key] * len(missing), starts, ends, key=url,
                       what="read", on_error="raise")
        self.requests += len(missing)
        for b, d in zip(missing, data):
            if isinstance(d, BaseException):
                raise fs.StorageError(f"{url}: read failed: {d}")
            self._put((url, b), bytes(d))

    def _put(self, k: tuple[str, int], d: bytes) -> None:
        self._blocks[k] = d
        self.held += len(d)
        while self.held > self.max_bytes and len(self._blocks) > 1:
            _, old = self._blocks.popitem(last=False)
            self.held -= len(old)

    def read(self, url: str, size: int, start: int, end: int,
             storage_options: Mapping | None) -> bytes:
        """Bytes ``[start, end)`` of ``url``."""
        if end <= start:
            return b""
        B = self.block_bytes
        first, last = start // B, (end - 1) // B
        self.fetch(url, size, range(first, last + 1), storage_options)
        parts = []
        for b in range(first, last + 1):
            d = self._blocks.get((url, b))
            if d is None:  # evicted meanwhile (a read larger than the cache)
                self.fetch(url, size, [b], storage_options)
                d = self._blocks[(url, b)]
            self._blocks.move_to_end((url, b))
            lo = max(start - b * B, 0)
            hi = min(end - b * B, len(d))
            parts.append(d[lo:hi])
        return b"".join(parts)


class RangeArray:
    """A read-only 1-D array of ``dtype`` over the file at ``url`` (``length`` items)."""

    def __init__(self, url: str, dtype: str | np.dtype, length: int,
                 storage_options: Mapping | None = None, cache: BlockCache | None = None):
        self.url, self.dtype, self.length = url, np.dtype(dtype), int(length)
        self.storage_options = dict(storage_options or {})
        self.cache = cache if cache is not None else BlockCache()
        self.nbytes = self.length * self.dtype.itemsize

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.length)
            if step != 1:
                return self[start:stop][::step]
            return self.read(start, stop)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.length if key < 0 else 0)
            return self.read(i, i + 1)[0]
        idx = np.asarray(key)
        return self.gather(idx, 1).reshape(idx.shape)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Items ``[start, stop)`` as a new ndarray."""
        s = self.dtype.itemsize
        raw = self.cache.read(self.url, self.nbytes, start * s, stop * s, self.storage_options)
        return np.frombuffer(raw, dtype=self.dtype).copy()

    def gather(self, starts: np.ndarray, width: int, out: np.ndarray | None = None
               ) -> np.ndarray:
        """Rows ``[starts[i], starts[i] + width)`` as an ``[n, width]`` array; the blocks
        they need are fetched in one batch first."""
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        s, B = self.dtype.itemsize, self.cache.block_bytes
        first = starts * s // B
        last = ((starts + width) * s - 1) // B
        need = set()
        for a, b in zip(first.tolist(), last.tolist()):
            need.update(range(a, b + 1))
        if len(need) * B <= self.cache.max_bytes:
            self.cache.fetch(self.url, self.nbytes, need, self.storage_options)
        if out is None:
            out = np.empty((len(starts), width), dtype=self.dtype)
        for r, a in enumerate(starts.tolist()):
            out[r] = self.read(a, a + width)
        return out


class RangeGrid:
    """Full windows ``[rows, width]`` of a :class:`RangeArray`: ``grid[w]`` is one row and
    :meth:`take` gathers many (what a memory-mapped shard's reshaped view gives)."""

    def __init__(self, array: RangeArray, width: int):
        self.array, self.width = array, width
        self.rows = len(array) // width

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, w: int) -> np.ndarray:
        return self.array.read(int(w) * self.width, (int(w) + 1) * self.width)

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return self.array.gather(np.asarray(rows, dtype=np.int64) * self.width, self.width,
                                 out)

    def prefetch(self, rows: np.ndarray) -> None:
        """Fetch the blocks ``rows`` need in one batch (later reads hit the cache)."""
        a = self.array
        s, B = a.dtype.itemsize, a.cache.block_bytes
        rows = np.asarray(rows, dtype=np.int64)
        first = rows * self.width * s // B
        last = ((rows + 1) * self.width * s - 1) // B
        need = set()
        for x, y in zip(first.tolist(), last.tolist()):
            need.update(range(x, y + 1))
        if len(need) * B <= a.cache.max_bytes:
            a.cache.fetch(a.url, a.nbytes, need, a.storage_options)


def window_grid(array: np.ndarray | RangeArray, width: int) -> np.ndarray | RangeGrid:
    """The full ``width``-item windows of a token array: a ``[rows, width]`` view of a
    memory map (a plain ndarray: indexing a memmap subclass costs more than copying a
    row), or a :class:`RangeGrid` reading rows on demand."""
    if isinstance(array, RangeArray):
        return RangeGrid(array, width)
    full = len(array) // width * width
    return np.asarray(array[:full]).view(np.ndarray).reshape(-1, width)


def prefetch(grids, rows: np.ndarray) -> None:
    """Fetch, in one batch, what ``rows`` of each remote grid in ``grids`` need."""
    for g in grids:
        if isinstance(g, RangeGrid):
            g.prefetch(rows)
