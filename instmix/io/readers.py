"""Input files -> records.

Formats (chosen by name): ``.jsonl``/``.json`` (one JSON object per line), ``.jsonl.zst``,
``.jsonl.gz``, ``.parquet``, ``.txt`` (one record per file or per blank-line-separated
paragraph, see :class:`~instmix.config.SourceConfig.txt_unit`), and a folder written by
``datasets.Dataset.save_to_disk``. Every record comes with its 1-based position: the line
for JSON lines, the row for tables, the paragraph for text files.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import zstandard

from instmix.errors import ConfigError, InputError

from . import fs

try:  # orjson parses ~3x faster than json; both give the same objects.
    import orjson as _json

    _loads = _json.loads
except ImportError:  # pragma: no cover - orjson is a dependency
    import json as _json

    _loads = _json.loads

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.zst", ".json.zst", ".jsonl.gz", ".json.gz")
SUFFIXES = JSONL_SUFFIXES + (".parquet", ".txt")


def is_saved_dataset(path: str, storage_options: Mapping | None = None) -> bool:
    """A ``save_to_disk`` folder holds ``state.json`` and ``dataset_info.json``."""
    if fs.is_url(path):
        return fs.isfile(fs.join(path, "state.json"), storage_options)
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "state.json"))


def resolve_paths(patterns: Sequence[str], *, where: str, key: str,
                  storage_options: Mapping | None = None) -> list[str]:
    """Expand globs (``**`` allowed) into a sorted, de-duplicated list of inputs (local
    paths or URLs: ``s3://bucket/corpus/**/*.jsonl.zst``).

    A pattern that matches nothing is an error naming the config key.
    """

    found: list[str] = []
    for pattern in patterns:
        matches = fs.glob(pattern, storage_options)
        if fs.is_url(pattern):
            matches = [m for m in matches if m.endswith(SUFFIXES) or
                       is_saved_dataset(m, storage_options)]
        else:
            matches = [m for m in matches if os.path.isfile(m) or is_saved_dataset(m)]
        if not matches:
            raise ConfigError(where, key, f"{pattern!r} matches no file")
        for m in matches:
            if not (m.endswith(SUFFIXES) or is_saved_dataset(m, storage_options)):
                raise ConfigError(where, key, f"{m}: unsupported file type (expected one of "
                                  f"{', '.join(SUFFIXES)} or a save_to_disk folder)")
        found.extend(matches)
    seen: set[str] = set()
    return [p for p in found if not (p in seen or seen.add(p))]


def _open_binary(path: str, storage_options: Mapping | None = None) -> io.BufferedIOBase:
    if path.endswith(".zst"):
        raw = open(path, "rb") if not fs.is_url(path) else fs.open_read(path, storage_options)
        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)
    if path.endswith(".gz"):
        return gzip.open(fs.open_read(path, storage_options) if fs.is_url(path) else path, "rb")
    return fs.open_read(path, storage_options)


def _json_error(path: str, line_no: int, raw: bytes, err: Exception) -> InputError:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as u:
        return InputError(path, line_no, None, f"invalid UTF-8 at byte {u.start} of the line")
    return InputError(path, line_no, None, f"invalid JSON ({err})")


def iter_jsonl(path: str, skip_bad: bool = False, stats: dict | None = None,
               storage_options: Mapping | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, object)`` for every non-blank line."""
    with _open_binary(path, storage_options) as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = _loads(raw)
            except ValueError as e:
                err = _json_error(path, line_no, raw, e)
                if not skip_bad:
                    raise err from None
                _count(stats, "bad_utf8" if "UTF-8" in str(err) else "bad_json")
                continue
            yield line_no, obj


def iter_txt(path: str, unit: str, skip_bad: bool = False, stats: dict | None = None,
             storage_options: Mapping | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(n, {"text": ...})``: the whole file (n=1) or each paragraph (n = its first line).

    Paragraphs are separated by one or more blank lines; line ends inside are kept.
    """
    data = fs.read_bytes(path, storage_options)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as u:
        line = data.count(b"\n", 0, u.start) + 1
        err = InputError(path, line, None, f"invalid UTF-8 at byte {u.start} of the file")
        if not skip_bad:
            raise err from None
        _count(stats, "bad_utf8")
        return
    if unit == "file":
        yield 1, {"text": text}
        return
    block: list[str] = []
    start = 1
    for line_no, line in enumerate(text.splitlines(keepends=True), 1):
        if line.strip():
            if not block:
                start = line_no
            block.append(line)
        elif block:
            yield start, {"text": "".join(block).rstrip("\n")}
            block = []
    if block:
        yield start, {"text": "".join(block).rstrip("\n")}


def iter_arrow_batches(batches, columns: Sequence[str] | None) -> Iterator[tuple[int, Any]]:
    row = 0
    for batch in batches:
        for rec in batch.to_pylist():
            row += 1
            yield row, rec


def iter_parquet(path: str, columns: Sequence[str] | None,
                 storage_options: Mapping | None = None) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq  # lazy: only parquet inputs need it (slow import)

    pf = pq.ParquetFile(fs.open_read(path, storage_options) if fs.is_url(path) else path)
    names = set(pf.schema_arrow.names)
    cols = [c for c in columns if c in names] if columns else None
    yield from iter_arrow_batches(pf.iter_batches(batch_size=4096, columns=cols), columns)


def iter_saved_dataset(path: str, columns: Sequence[str] | None,
                       storage_options: Mapping | None = None) -> Iterator[tuple[int, Any]]:
    import datasets  # lazy: importing datasets takes ~1 s, only saved datasets need it

    ds = datasets.load_from_disk(path, storage_options=(storage_options or {}).get(
        fs.protocol(path)) if fs.is_url(path) else None)
    if isinstance(ds, datasets.DatasetDict):
        raise InputError(path, None, None, "is a DatasetDict; point at one split's folder "
                         f"(one of: {', '.join(ds.keys())})")
    table = ds.data.table
    if columns:
        table = table.select([c for c in columns if c in table.column_names])
    yield from iter_arrow_batches(table.to_batches(max_chunksize=4096), columns)


def iter_records(path: str, *, columns: Sequence[str] | None = None, txt_unit: str = "file",
                 skip_bad: bool = False, stats: dict | None = None,
                 storage_options: Mapping | None = None) -> Iterator[tuple[int, Mapping]]:
    """Yield ``(position, record)`` from one input; ``record`` is a mapping of fields.

    ``columns`` lets table formats read only what is needed. A record that is not a JSON
    object is an error (or skipped and counted when ``skip_bad``). URLs are read through
    :mod:`instmix.io.fs` with ``storage_options``.
    """
    remote_file = fs.is_url(path) and path.endswith(SUFFIXES)  # one request saved
    if not remote_file and is_saved_dataset(path, storage_options):
        it = iter_saved_dataset(path, columns, storage_options)
    elif path.endswith(".parquet"):
        it = iter_parquet(path, columns, storage_options)
    elif path.endswith(".txt"):
        it = iter_txt(path, txt_unit, skip_bad, stats, storage_options)
    else:
        it = iter_jsonl(path, skip_bad, stats, storage_options)
    for pos, rec in it:
        if not isinstance(rec, Mapping):
            err = InputError(path, pos, None, f"expected a JSON object, got {type(rec).__name__}")
            if not skip_bad:
                raise err
            _count(stats, "not_an_object")
            continue
        yield pos, rec


def _count(stats: dict | None, reason: str) -> None:
    if stats is not None:
        stats[reason] = stats.get(reason, 0) + 1
