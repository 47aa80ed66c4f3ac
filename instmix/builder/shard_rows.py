"""One shard's documents, gathered from the token caches and written in runs.

A shard's rows are ``(unit, index in unit)`` pairs in stream order (see
:class:`~instmix.builder.tasks.ShardTask`). Their token ranges are looked up for all rows
at once (one vectorised lookup per unit), then the rows are copied in runs of about
:data:`RUN_TOKENS` tokens (slice by slice for long documents, by index arrays for short
ones, where a slice per row would cost more than its tokens) into two buffers allocated
once and used in turn: while this
thread gathers a run into one buffer, a second thread writes and hashes the other (file
writes, sha256 and gzip release the GIL). Runs are written in order, and the bytes are
those of one write per document, so the output depends only on the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

RUN_TOKENS = 1 << 21  # tokens per run (8 MiB of uint32 per buffer)
VECTOR_BELOW = 128  # mean tokens per document under which a run is gathered by index arrays
INDEX_TOKENS = 1 << 16  # tokens per block of index arrays


def token_ranges(units: Sequence, unit_ix: np.ndarray, local: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` of each row's document inside its unit's ``tokens``."""
    starts = np.empty(len(unit_ix), np.int64)
    ends = np.empty(len(unit_ix), np.int64)
    for u in present(unit_ix):
        at = unit_ix == u
        offsets = np.asarray(units[u].offsets)
        starts[at] = offsets[local[at]]
        ends[at] = offsets[local[at] + 1]
    return starts, ends


def present(values: np.ndarray) -> list[int]:
    """The distinct values of non-negative ints, ascending (``np.unique`` without its
    import of ``numpy.ma``, 0.1 s)."""
    return np.flatnonzero(np.bincount(values)).tolist() if len(values) else []


def write_rows(shard, units: Sequence, names: Sequence[str], unit_ix: np.ndarray,
               local: np.ndarray, splices: Mapping[int, Sequence[tuple[int, int]]] | None = None,
               progress: Callable[[int], None] | None = None,
               run_tokens: int = RUN_TOKENS) -> None:
    """Append rows ``(unit_ix[k], local[k])`` of ``units`` to ``shard`` (an open
    :func:`~instmix.format.writer.open_shard`); ``names[u]``: unit ``u``'s source.
    ``splices``: rows whose document lost parts (row -> kept token ranges, joined)."""
    unit_ix = np.asarray(unit_ix, np.int64)
    local = np.asarray(local, np.int64)
    starts, ends = token_ranges(units, unit_ix, local)
    lengths = ends - starts
    splices = splices or {}
    for row, ranges in splices.items():
        lengths[row] = sum(b - a for a, b in ranges)
    with_mask = shard.mask is not None
    tokens = [np.asarray(u.tokens) for u in units]
    masks = [None if u.mask is None else np.asarray(u.mask) for u in units]
    ids: list = [None] * len(units)  # per unit: every document id, decoded once
    for u in present(unit_ix):
        ids[u] = _all_ids(units[u])
    csum = np.concatenate([[0], np.cumsum(lengths)])
    cap = max(run_tokens, int(lengths.max(initial=0)))
    bufs = [np.empty(cap, shard.dtype) for _ in range(2)]
    mbufs = [np.empty(cap, np.bool_) for _ in range(2)] if with_mask else [None, None]
    pending: list[Future | None] = [None, None]
    spliced = np.array(sorted(splices), dtype=np.int64)
    lo, k = 0, 0
    with ThreadPoolExecutor(1, thread_name_prefix="instmix-shard") as pool:
        while lo < len(lengths):
            hi = int(np.searchsorted(csum, csum[lo] + cap, side="right")) - 1
            hi = max(hi, lo + 1)
            slot = k % 2
            if pending[slot] is not None:
                pending[slot].result()  # its buffer is written: free to reuse
            us = unit_ix[lo:hi].tolist()
            n = int(csum[hi] - csum[lo])
            run = bufs[slot][:n]
            mrun = mbufs[slot][:n] if with_mask else None
            cut = spliced[np.searchsorted(spliced, lo):np.searchsorted(spliced, hi)].tolist()
            if n < VECTOR_BELOW * (hi - lo) and not cut:
                _gather_short(run, mrun, tokens, masks, unit_ix[lo:hi], starts[lo:hi],
                              lengths[lo:hi])
            else:
                _gather_long(run, mrun, tokens, masks, us, starts[lo:hi].tolist(),
                             ends[lo:hi].tolist(), {r - lo: splices[r] for r in cut})
            doc_ids = [ids[u][i] for u, i in zip(us, local[lo:hi].tolist())]
            srcs = [names[u] for u in us]
            pending[slot] = pool.submit(shard.add_run, run, lengths[lo:hi], mrun, doc_ids, srcs)
            if progress is not None:
                progress(n)
            lo, k = hi, k + 1
        for f in pending:
            if f is not None:
                f.result()


def _all_ids(unit) -> list[str]:
    """Every document id of a cache unit (what ``unit.doc_id(i)`` gives for each ``i``)."""
    blob, off = unit.id_table
    if blob.isascii():  # byte offsets are character offsets: decode once
        text = blob.decode("ascii")
        return [text[a:b] for a, b in zip(off, off[1:])]
    return [blob[a:b].decode("utf-8") for a, b in zip(off, off[1:])]


def _gather_long(run, mrun, tokens, masks, us, starts, ends, splices) -> None:
    """Copy rows into ``run`` slice by slice (long documents: few slices per token)."""
    parts, mparts = [], []
    for row, (u, a, b) in enumerate(zip(us, starts, ends)):
        cut = splices.get(row) if splices else None
        pieces = cut if cut is not None else ((a, b),)
        parts.extend(tokens[u][x:y] for x, y in pieces)
        if mrun is not None:
            m = masks[u]
            mparts.extend(m[x:y] if m is not None else np.ones(y - x, np.bool_)
                          for x, y in pieces)
    if parts:
        np.concatenate(parts, out=run)
    if mparts:
        np.concatenate(mparts, out=mrun)


def _gather_short(run, mrun, tokens, masks, unit_ix, starts, lengths) -> None:
    """Copy rows into ``run`` by index arrays, one fancy-indexed read per unit and block of
    about :data:`INDEX_TOKENS` tokens (short documents: a slice per row would cost more
    than its tokens; small blocks keep the index arrays in memory already touched)."""
    out_start = np.cumsum(lengths) - lengths
    bounds = np.searchsorted(out_start, np.arange(0, int(lengths.sum()), INDEX_TOKENS))
    for lo, hi in zip(bounds.tolist(), bounds[1:].tolist() + [len(lengths)]):
        us = unit_ix[lo:hi]
        order = np.argsort(us, kind="stable") + lo
        cuts = np.flatnonzero(np.diff(unit_ix[order])) + 1
        for rows in np.split(order, cuts):
            if not len(rows):
                continue
            u = int(unit_ix[rows[0]])
            lens = lengths[rows]
            first = np.cumsum(lens) - lens
            at = np.arange(int(lens.sum()), dtype=np.int64)
            src = at + np.repeat(starts[rows] - first, lens)
            dst = at + np.repeat(out_start[rows] - first, lens)
            run[dst] = tokens[u][src]
            if mrun is not None:
                mrun[dst] = masks[u][src] if masks[u] is not None else True
