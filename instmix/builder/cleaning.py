"""The clean stage of a build (``dedup``, ``decontaminate``, per-source ``filters``).

1. Facts per cache unit (:mod:`instmix.clean.signatures`), read from the unit's inputs and
   cached beside the token caches; units missing some are computed by ``workers``
   processes, each unit on its own (so results do not depend on how many).
2. Removals over all sources at once (:mod:`instmix.clean.stage`).
3. Each source's pool viewed without the removed documents, and with the cut token ranges
   of removed parts left out of the documents that stay: the plan and the writer see only
   what is kept, and no token cache changes.
4. The listing of what was removed and why, written to the build as ``removed.jsonl``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from instmix.clean.decontam import fingerprint
from instmix.clean.minhash import MinHasher, cached_params
from instmix.clean.signatures import UnitSignatures, Wanted, compute, missing
from instmix.clean.stage import DOC_REASONS, KEPT, SourceRemoval, find_removals
from instmix.config import BuildConfig, SourceConfig
from instmix.io import fs
from instmix.io.progress import Progress
from instmix.sources.kinds import kept_cuts
from instmix.sources.registry import get_kind
from instmix.tokenize.cache import CacheUnit
from instmix.tokenize.remote_cache import mirror_root

REMOVED_FILE = "removed.jsonl"


def enabled(cfg: BuildConfig) -> bool:
    return bool(cfg.dedup or cfg.decontaminate or any(s.filters for s in cfg.sources))


def wanted(cfg: BuildConfig, src: SourceConfig) -> Wanted:
    near = cfg.dedup.near if cfg.dedup else None
    evals = None
    if cfg.decontaminate:
        d = cfg.decontaminate
        evals = (fingerprint(d.paths, d.ngram), d.paths, d.ngram)
    hasher = None
    if near:
        params, _ = cached_params(params_folder(cfg), near.num_perm, 1, near.threshold)
        hasher = MinHasher(near.num_perm, near.ngram, params=params)
    return Wanted(near=hasher, evals=evals, filters=src.filters)


def _clean_root(cfg: BuildConfig) -> str:
    """Beside the token caches; for a cache on an object store, beside its local mirror
    (these facts are small and rebuilt from the units when missing)."""
    root = cfg.resolved_cache_dir
    if fs.is_url(root):
        return os.path.join(os.path.dirname(mirror_root()), "clean",
                            hashlib.sha256(root.encode()).hexdigest()[:16])
    return os.path.join(root, "clean")


def params_folder(cfg: BuildConfig) -> str:
    return os.path.join(_clean_root(cfg), "params")


def facts_folder(cfg: BuildConfig, unit: CacheUnit) -> str:
    """Keyed by the token unit's content key and the record policy (which documents exist)."""
    key = hashlib.sha256(json.dumps([os.path.basename(unit.folder),
                                     cfg.skip_bad_records]).encode()).hexdigest()
    return os.path.join(_clean_root(cfg), key)


@dataclass(frozen=True)
class _Job:
    folder: str
    src: SourceConfig
    paths: tuple[str, ...]
    label: str
    documents: int
    wanted: Wanted
    has_parts: bool
    todo: tuple[str, ...]
    skip_bad: bool


def _run(job: _Job) -> str:
    kind = get_kind(job.src.kind)
    docs = kind.documents(job.src, list(job.paths), job.label, skip_bad=job.skip_bad,
                          stats={})
    compute(job.folder, docs, job.documents, job.wanted, job.has_parts, list(job.todo))
    return job.folder


def unit_facts(cfg: BuildConfig, pools, progress: Progress, workers: int = 1
               ) -> list[list[UnitSignatures]]:
    """Every unit's facts, computing the missing ones."""
    jobs, layout = [], []
    for pool in pools:
        src = pool.config
        want = wanted(cfg, src)
        parts = get_kind(src.kind).has_parts
        row = []
        for unit, (paths, label) in zip(pool.units, pool.inputs):
            folder = facts_folder(cfg, unit)
            todo = missing(folder, want, parts)
            if todo:
                jobs.append(_Job(folder, src, tuple(paths), label, unit.meta.documents, want,
                                 parts, tuple(todo), cfg.skip_bad_records))
            row.append((folder, want, parts))
        layout.append(row)
    if jobs:
        bar = progress.bar("clean: signatures", unit="unit", total=len(jobs))
        if workers > 1 and len(jobs) > 1:
            # forkserver: workers start from a clean process, not a fork of this one (which
            # may hold tokenizer threads)
            with ProcessPoolExecutor(min(workers, len(jobs)),
                                     mp_context=get_context("forkserver")) as ex:
                for _ in ex.map(_run, jobs):
                    bar.update(1)
        else:
            for job in jobs:
                _run(job)
                bar.update(1)
        bar.close()
    return [[UnitSignatures(f, w, p) for f, w, p in row] for row in layout]


def find(cfg: BuildConfig, pools, progress: Progress, workers: int = 1) -> list[SourceRemoval]:
    facts = unit_facts(cfg, pools, progress, workers)
    near = cfg.dedup.near if cfg.dedup else None
    bands = cached_params(params_folder(cfg), near.num_perm, 1, near.threshold)[1] if near \
        else None
    return find_removals(cfg.seed, [p.config.name for p in pools], facts,
                         exact=bool(cfg.dedup and cfg.dedup.exact),
                         near_threshold=near.threshold if near else None,
                         decontaminate=cfg.decontaminate is not None, bands=bands)


def kept_ranges(unit: CacheUnit, i: int, removed: np.ndarray, add_bos: bool
                ) -> list[tuple[int, int]]:
    """Token ranges of document ``i`` of ``unit`` that stay when parts ``removed`` go."""
    a, b = int(unit.offsets[i]), int(unit.offsets[i + 1])
    rows, off = unit.cuts
    rows = rows[off[i]:off[i + 1]]
    body, end = a + int(add_bos), b - 1  # text between BOS and EOS
    gaps, pos = [], body
    for start, stop, _, _ in rows:
        gaps.append(start > pos)
        pos = stop
    gaps.append(end > pos)
    keep = kept_cuts([(int(lo), int(hi)) for _, _, lo, hi in rows], gaps, list(removed))
    out, pos = [], a
    for (start, stop, _, _), k in zip(rows, keep):
        if not k:
            if start > pos:
                out.append((pos, int(start)))
            pos = int(stop)
    out.append((pos, b))
    return [(x, y) for x, y in out if y > x]


def cleaned_pool(pool, removal: SourceRemoval, add_bos: bool):
    """The pool without removed documents; removed parts cut from the others."""
    lengths = pool.lengths.copy()
    loss = pool.loss_lengths.copy()
    splices = {}
    for doc, mask in removal.parts.items():
        unit_no, local = pool.locate(np.array([doc]))
        unit = pool.units[int(unit_no[0])]
        ranges = kept_ranges(unit, int(local[0]), mask, add_bos)
        splices[doc] = ranges
        lengths[doc] = sum(y - x for x, y in ranges)
        if unit.mask is not None:
            loss[doc] = sum(int(unit.mask[x:y].sum()) for x, y in ranges)
        else:
            loss[doc] = lengths[doc]
    keep = np.flatnonzero(removal.reason == KEPT)
    clone = copy.copy(pool)
    clone.index = keep
    clone.lengths = lengths[keep]
    clone.loss_lengths = loss[keep]
    clone.splices = splices
    clone.removed = removal.counts
    return clone


def listing(pools, removals: list[SourceRemoval]) -> list[dict]:
    """One record per removed document or part: reason and what it matched."""
    starts = np.cumsum([0] + [p.documents_total for p in pools])

    def ident(gi: int) -> tuple[str, str]:
        s = int(np.searchsorted(starts, gi, side="right") - 1)
        return pools[s].config.name, pools[s].doc_id(int(gi - starts[s]))

    out = []
    for pool, rem in zip(pools, removals):
        name = pool.config.name
        for i in np.flatnonzero(rem.reason != KEPT):
            rec = {"source": name, "id": pool.doc_id(int(i)),
                   "reason": DOC_REASONS[rem.reason[i]]}
            if rem.match[i] >= 0:
                src, doc = ident(int(rem.match[i]))
                rec["match"] = {"source": src, "id": doc}
                if rem.score[i]:
                    rec["jaccard"] = round(float(rem.score[i]), 4)
            elif rem.eval_record[i] is not None:
                rec["eval"] = rem.eval_record[i]
            out.append(rec)
        for i in sorted(rem.part_reasons):
            for part, reason, record in rem.part_reasons[i]:
                rec = {"source": name, "id": pool.doc_id(int(i)), "pair": part,
                       "reason": reason}
                if record is not None:
                    rec["eval"] = record
                out.append(rec)
    return out


def dump_listing(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
