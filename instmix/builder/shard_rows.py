"""One shard's documents, gathered from the token caches and written in runs.

A shard's rows are ``(unit, index in unit)`` pairs in stream order (see
:class:`~instmix.builder.tasks.ShardTask`). Their token ranges are looked up for all rows
at once (one vectorised lookup per unit), then the rows are copied in runs of about
:data:`RUN_TOKENS` tokens into two buffers allocated once and used in turn: while this
thread gathers a run into one buffer, a second thread writes and hashes the other (file
writes, sha256 and gzip release the GIL). Runs are written in order, and the bytes are
those of one write per document, so the output depends only on the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

RUN_TOKENS = 1 << 21  # tokens per run (8 MiB of uint32 per buffer)


def token_ranges(units: Sequence, unit_ix: np.ndarray, local: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` of each row's document inside its unit's ``tokens``."""
    starts = np.empty(len(unit_ix), np.int64)
    ends = np.empty(len(unit_ix), np.int64)
    for u in np.unique(unit_ix).tolist():
        at = unit_ix == u
        offsets = np.asarray(units[u].offsets)
        starts[at] = offsets[local[at]]
        ends[at] = offsets[local[at] + 1]
    return starts, ends


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
    ids = [u.id_table for u in units]
    csum = np.concatenate([[0], np.cumsum(lengths)])
    cap = max(run_tokens, int(lengths.max(initial=0)))
    bufs = [np.empty(cap, shard.dtype) for _ in range(2)]
    mbufs = [np.empty(cap, np.bool_) for _ in range(2)] if with_mask else [None, None]
    pending: list[Future | None] = [None, None]
    lo, k = 0, 0
    with ThreadPoolExecutor(1, thread_name_prefix="instmix-shard") as pool:
        while lo < len(lengths):
            hi = int(np.searchsorted(csum, csum[lo] + cap, side="right")) - 1
            hi = max(hi, lo + 1)
            slot = k % 2
            if pending[slot] is not None:
                pending[slot].result()  # its buffer is written: free to reuse
            rows = range(lo, hi)
            us = unit_ix[lo:hi].tolist()
            parts, mparts = [], []
            for row, u, a, b in zip(rows, us, starts[lo:hi].tolist(), ends[lo:hi].tolist()):
                cut = splices.get(row) if splices else None
                pieces = cut if cut is not None else ((a, b),)
                parts.extend(tokens[u][x:y] for x, y in pieces)
                if with_mask:
                    m = masks[u]
                    mparts.extend(m[x:y] if m is not None else np.ones(y - x, np.bool_)
                                  for x, y in pieces)
            n = int(csum[hi] - csum[lo])
            run = bufs[slot][:n]
            if parts:
                np.concatenate(parts, out=run)
            mrun = None
            if with_mask:
                mrun = mbufs[slot][:n]
                if mparts:
                    np.concatenate(mparts, out=mrun)
            doc_ids = [ids[u][0][ids[u][1][i]:ids[u][1][i + 1]].decode("utf-8")
                       for u, i in zip(us, local[lo:hi].tolist())]  # CacheUnit.doc_id
            srcs = [names[u] for u in us]
            pending[slot] = pool.submit(shard.add_run, run, lengths[lo:hi], mrun, doc_ids, srcs)
            if progress is not None:
                progress(n)
            lo, k = hi, k + 1
        for f in pending:
            if f is not None:
                f.result()
