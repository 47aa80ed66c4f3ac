"""Writing a build's shards in this process: documents in schedule (or draw) order,
gathered in runs (see :mod:`instmix.builder.tasks` for the same as one task per shard)."""

from __future__ import annotations

import os

import numpy as np

from instmix.config import BuildConfig
from instmix.format.writer import ShardWriter
from instmix.io.progress import Progress
from instmix.tokenize.facts import TokenizerInfo


def write_shards(stage: str, cfg: BuildConfig, info: TokenizerInfo, pools: list,
                 draws: list[np.ndarray], src: np.ndarray, pos: np.ndarray,
                 progress: Progress) -> list:
    """Write the mixture. ``interleaved``: one shard set in schedule order. ``per_source``:
    ``sources/<name>/`` per source, each in its draw order (for trainers that mix by
    themselves, such as OLMo-core source mixtures)."""
    with_mask = any(u.mask is not None for p in pools for u in p.units)
    located = [p.locate(d) for p, d in zip(pools, draws)]
    names = [p.config.name for p in pools]
    total = int(sum(int(p.lengths[d].sum()) for p, d in zip(pools, draws)))
    bar = progress.bar("write shards", unit="tok", total=total)
    if cfg.layout == "per_source":
        shards = []
        for s in range(len(pools)):
            if len(draws[s]) == 0:
                continue
            folder = os.path.join("sources", names[s])
            os.makedirs(os.path.join(stage, folder), exist_ok=True)
            writer = ShardWriter(stage, info.dtype, cfg.shard_tokens, with_mask, prefix=folder)
            _write_docs(writer, pools, located, names, [s] * len(draws[s]),
                        range(len(draws[s])), bar)
            shards += writer.close()
    else:
        writer = ShardWriter(stage, info.dtype, cfg.shard_tokens, with_mask)
        _write_docs(writer, pools, located, names, src.tolist(), pos.tolist(), bar)
        shards = writer.close()
    bar.close()
    return shards


WRITE_RUN = 4096  # documents gathered per write


def _write_docs(writer: ShardWriter, pools, located, names, sources, positions, bar) -> None:
    """Write documents in schedule order, gathered in runs of :data:`WRITE_RUN` (one write
    per run; the bytes are those of one write per document)."""
    views = [[(np.asarray(u.tokens), np.asarray(u.offsets),
               None if u.mask is None else np.asarray(u.mask)) for u in p.units] for p in pools]
    with_mask = any(m is not None for per in views for _, _, m in per)
    for at in range(0, len(sources), WRITE_RUN):
        parts, masks, lengths, ids, srcs = [], [], [], [], []
        for s, j in zip(sources[at:at + WRITE_RUN], positions[at:at + WRITE_RUN]):
            unit_no, local = located[s]
            u = int(unit_no[j])
            i = int(local[j])
            tokens, offsets, mask = views[s][u]
            pool = pools[s]
            ranges = pool.splices.get(int(pool.unit_starts[u]) + i) if pool.splices else None
            if ranges is None:
                ranges = [(int(offsets[i]), int(offsets[i + 1]))]
            # several ranges: parts removed by the clean stage, the kept token ranges joined
            parts.extend(tokens[x:y] for x, y in ranges)
            if with_mask:
                masks.extend(mask[x:y] if mask is not None else np.ones(y - x, np.bool_)
                             for x, y in ranges)
            lengths.append(sum(y - x for x, y in ranges))
            ids.append(pools[s].units[u].doc_id(i))
            srcs.append(names[s])
        run = np.concatenate(parts)
        writer.add_run(run, np.asarray(lengths, dtype=np.int64),
                       np.concatenate(masks) if with_mask else None, ids, srcs)
        bar.update(len(run))


