"""Source kind ``augmented``: ``augment`` output -> one templated document per chain.

All files of the source are read together. Files named like augment parts
(``part-BBBBBB-...``) are grouped by block, since a chain never leaves its block; each
other file is a group of its own. Inside a group, chains are emitted sorted by chain id,
entries by round, and rendered by :func:`~instmix.synth.templates.render_chain` with the
source's ``options.template_seed`` (default 0). ``spans`` are the answers' characters;
``parts`` are the pairs (question, answer, their text) in chain order and ``cuts`` the
rendered characters that go with each, so the clean stage can remove one pair.
An entry with ``status: failed`` (the engine gave no answer) is never rendered: it is
left out of its chain and counted as ``failed_entry`` in the source's skipped records
(rerun ``instmix augment --retry-failed`` to make it again).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence

from instmix.errors import ConfigError, InputError
from instmix.io.readers import iter_records
from instmix.sources.kinds import Document, Kind, Part

from .pairkinds import pair_kind
from .templates import render_chain

_PART = re.compile(r"^part-(\d+)-")
OPTIONS = ("template_seed",)


def template_seed(src) -> int:
    for key in src.options:
        if key not in OPTIONS:
            raise ConfigError(f"source {src.name}", f"options.{key}",
                              f"unknown option for kind augmented (known: {', '.join(OPTIONS)})")
    seed = src.options.get("template_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"source {src.name}", "options.template_seed",
                          f"expected a whole number >= 0, got {seed!r}")
    return seed


def file_groups(paths: Sequence[str]) -> list[list[str]]:
    """Part files of one block together (first-seen order); any other file alone."""
    groups: dict[object, list[str]] = {}
    for p in paths:
        m = _PART.match(os.path.basename(p))
        groups.setdefault(("block", m.group(1)) if m else ("file", p), []).append(p)
    return list(groups.values())


def _str(rec: Mapping, name: str, path: str, line: int) -> str:
    v = rec.get(name)
    if not isinstance(v, str):
        raise InputError(path, line, name, "missing" if v is None else
                         f"expected a string, got {type(v).__name__}")
    return v


def read_entry(rec: Mapping, path: str, line: int
               ) -> tuple[str, int, str, tuple[tuple[str, str], ...]]:
    """``(chain_id, round, context, pairs)`` of one output line, validated."""
    chain_id = _str(rec, "chain_id", path, line)
    _str(rec, "id", path, line)
    rnd = rec.get("round")
    if isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 0:
        raise InputError(path, line, "round", f"expected a whole number >= 0, got {rnd!r}")
    context = _str(rec, "context", path, line)
    if not context.strip():
        raise InputError(path, line, "context", "empty")
    raw = rec.get("pairs")
    if not isinstance(raw, list):
        raise InputError(path, line, "pairs", "expected a list")
    pairs = []
    for i, p in enumerate(raw):
        if not (isinstance(p, Mapping) and isinstance(p.get("question"), str)
                and isinstance(p.get("answer"), str) and p["answer"].strip()):
            raise InputError(path, line, f"pairs[{i}]",
                             "expected {question, answer} strings with a non-empty answer")
        pairs.append((p["question"], p["answer"]))
    return chain_id, rnd, context, tuple(pairs)


def iter_chains(paths: Sequence[str], *, skip_bad: bool, stats: dict
                ) -> Iterator[tuple[str, list[tuple[str, tuple]]]]:
    """``(chain_id, [(context, pairs), ...])`` per chain, entries by round; see the module
    docstring for the order."""
    finished: set[str] = set()
    for group in file_groups(paths):
        chains: dict[str, dict[int, tuple[str, tuple]]] = {}
        for path in group:
            for line, rec in iter_records(path, skip_bad=skip_bad, stats=stats):
                if isinstance(rec, Mapping) and rec.get("status") == "failed":
                    _count(stats, "failed_entry")
                    continue
                try:
                    chain_id, rnd, context, pairs = read_entry(rec, path, line)
                except InputError:
                    if not skip_bad:
                        raise
                    _count(stats, "bad_entry")
                    continue
                rounds = chains.get(chain_id, {})
                problem = None
                if chain_id in finished:
                    problem = "split_chain", InputError(
                        path, line, "chain_id",
                        f"chain {chain_id!r} also appears in another block's files")
                elif rnd in rounds:
                    problem = "duplicate_entry", InputError(
                        path, line, "round", f"chain {chain_id!r} has round {rnd} twice")
                if problem:
                    if not skip_bad:
                        raise problem[1]
                    _count(stats, problem[0])
                    continue
                chains.setdefault(chain_id, rounds)[rnd] = (context, pairs)
        for chain_id in sorted(chains):
            rounds = chains.pop(chain_id)
            finished.add(chain_id)
            yield chain_id, [rounds[k] for k in sorted(rounds)]


class AugmentedKind(Kind):
    per_file = False
    has_parts = True  # every pair is a Part; its rendered text and headings are Cuts

    def groups(self, paths: Sequence[str]) -> list[list[str]]:
        """One group per block (:func:`file_groups`): read alone, a block gives the chains
        it gives read with the others, unless a chain id recurs in another block (the
        ``split_chain`` case, which the builder detects by repeated document ids)."""
        return file_groups(paths)

    def documents(self, src, paths: Sequence[str], label: str, *, skip_bad: bool,
                  stats: dict) -> Iterator[Document]:
        seed = template_seed(src)
        for chain_id, entries in iter_chains(paths, skip_bad=skip_bad, stats=stats):
            r = render_chain(entries, seed, chain_id)
            parts = tuple(Part(q, a, context) for context, pairs in entries for q, a in pairs)
            yield Document(chain_id, r.text, r.spans, _tags(entries, r.layouts), parts, r.cuts)


def _tags(entries, layouts) -> tuple[tuple[str, str], ...]:
    """Composition labels: the layout and pair count of every entry, the kind of every pair."""
    tags = [("entries_per_chain", str(len(entries)))]
    for (_, pairs), layout in zip(entries, layouts):
        tags.append(("layout", layout))
        tags.append(("pairs_per_text", str(len(pairs))))
        tags.extend(("pair_kind", pair_kind(q, a)) for q, a in pairs)
    return tuple(tags)


def _count(stats: dict, reason: str) -> None:
    stats[reason] = stats.get(reason, 0) + 1
