"""Input patterns -> input files, each with a label that names it in document ids.

A label is the file's path relative to its pattern's *fixed base* (the folders before the
first wildcard; a plain path's own folder), so it never depends on the other files or
patterns of a source: adding a folder to a source changes neither the labels nor the cache
keys of the files it already had.

Symbolic links: a file reached twice (through an alias link or two patterns) is read once,
under its first name in sorted order; a link to a folder that contains it (a loop) and a
dangling link are refused, naming the link.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
from collections.abc import Iterator, Mapping, Sequence

from instmix.errors import ConfigError

from . import fs

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.zst", ".json.zst", ".jsonl.gz", ".json.gz")
SUFFIXES = JSONL_SUFFIXES + (".parquet", ".txt")


def is_saved_dataset(path: str, storage_options: Mapping | None = None) -> bool:
    """A ``save_to_disk`` folder holds ``state.json`` and ``dataset_info.json``."""
    if fs.is_url(path):
        return fs.isfile(fs.join(path, "state.json"), storage_options)
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "state.json"))


def fixed_base(pattern: str) -> str:
    """The folders of ``pattern`` before its first wildcard component."""
    parts = os.path.normpath(pattern).split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    base = os.sep.join(fixed)
    if pattern.startswith(os.sep) and not base:
        base = os.sep
    return os.path.abspath(base or ".")


def _match(pat: list[str], parts: list[str]) -> bool:
    """glob's rules per path component: ``**`` spans folders, wildcards skip dot names."""
    if not pat:
        return not parts
    head = pat[0]
    if head == "**":
        return any(_match(pat[1:], parts[i:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    if not parts:
        return False
    if parts[0].startswith(".") and not head.startswith(".") and glob.has_magic(head):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _match(pat[1:], parts[1:])


def _walk(pattern: str, base: str, where: str, key: str) -> Iterator[str]:
    """Entries under ``base`` matching a ``**`` pattern, each folder visited once: a
    link to a folder already seen (an alias) is not entered again, and a link to an
    ancestor of itself (a loop) is refused."""
    pat = os.path.relpath(os.path.abspath(pattern), base).split(os.sep)
    seen: set[str] = set()

    def visit(folder: str, rel: list[str], chain: tuple[str, ...]) -> Iterator[str]:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return
        for name in names:
            path = os.path.join(folder, name)
            parts = rel + [name]
            if _match(pat, parts):
                yield path
            if os.path.isdir(path) and not is_saved_dataset(path):
                real = os.path.realpath(path)
                if real in chain:
                    raise ConfigError(where, key, f"{path}: symbolic link to a folder that "
                                      "contains it (a loop); remove it or narrow the pattern")
                if real not in seen:
                    seen.add(real)
                    yield from visit(path, parts, chain + (real,))

    real_base = os.path.realpath(base)
    seen.add(real_base)
    yield from visit(base, [], (real_base,))


def _loop_link(path: str, base: str) -> str | None:
    """A link component of ``path`` (below ``base``) that points at one of its ancestors."""
    rel = os.path.relpath(os.path.abspath(path), base)
    cur = base
    for part in rel.split(os.sep)[:-1]:
        cur = os.path.join(cur, part)
        if os.path.islink(cur):
            target = os.path.realpath(cur)
            parent = os.path.realpath(os.path.dirname(cur))
            if parent == target or parent.startswith(target.rstrip(os.sep) + os.sep):
                return cur
    return None


def _url_inputs(pattern: str, where: str, key: str,
                storage_options: Mapping | None) -> list[tuple[str, str]]:
    """``(url, label)`` for an object-store pattern; the label is relative to the
    pattern's fixed base, as for a local pattern (the same files give the same ids)."""
    proto, _, rest = pattern.partition("://")
    parts = rest.split("/")
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    base = "/".join(fixed)
    matches = [m for m in fs.glob(pattern, storage_options)
               if m.endswith(SUFFIXES) or is_saved_dataset(m, storage_options)]
    if not matches:
        raise ConfigError(where, key, f"{pattern!r} matches no file")
    return [(m, posixpath.relpath(m.partition("://")[2], base or "/")) for m in matches]


def resolve_inputs(patterns: Sequence[str], *, where: str, key: str,
                   storage_options: Mapping | None = None) -> list[tuple[str, str]]:
    """Expand globs (``**`` allowed) into sorted, de-duplicated ``(path, label)`` pairs;
    a pattern may be a URL (``s3://bucket/corpus/**/*.jsonl.zst``).

    A pattern that matches nothing, an unsupported file, a dangling link and a link loop
    are errors naming the config key.
    """
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for pattern in patterns:
        if fs.is_url(pattern):
            for m, label in _url_inputs(pattern, where, key, storage_options):
                if m not in seen:
                    seen.add(m)
                    found.append((m, label))
            continue
        base = fixed_base(pattern)
        if "**" in os.path.normpath(pattern).split(os.sep):
            matches = sorted(_walk(pattern, base, where, key))
        else:
            matches = sorted(glob.glob(pattern))
        kept = []
        for m in matches:
            if os.path.islink(m) and not os.path.exists(m):
                raise ConfigError(where, key, f"{m}: dangling symbolic link (its target "
                                  f"{os.readlink(m)!r} does not exist); fix or remove it")
            if os.path.isfile(m) or is_saved_dataset(m):
                kept.append(m)
        if not kept:
            raise ConfigError(where, key, f"{pattern!r} matches no file")
        for m in kept:
            link = _loop_link(m, base)
            if link is not None:
                raise ConfigError(where, key, f"{link}: symbolic link to a folder that "
                                  "contains it (a loop); remove it or narrow the pattern")
            if not (is_saved_dataset(m) or m.endswith(SUFFIXES)):
                raise ConfigError(where, key, f"{m}: unsupported file type (expected one of "
                                  f"{', '.join(SUFFIXES)} or a save_to_disk folder)")
            real = os.path.realpath(m)
            if real in seen:
                continue
            seen.add(real)
            found.append((m, os.path.relpath(os.path.abspath(m), base)))
    return found


def resolve_paths(patterns: Sequence[str], *, where: str, key: str,
                  storage_options: Mapping | None = None) -> list[str]:
    """The paths of :func:`resolve_inputs`."""
    return [p for p, _ in resolve_inputs(patterns, where=where, key=key,
                                         storage_options=storage_options)]
