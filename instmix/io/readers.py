"""Input files -> records.

Formats (chosen by name): ``.jsonl``/``.json`` (one JSON object per line), ``.jsonl.zst``,
``.jsonl.gz``, ``.parquet``, ``.txt`` (one record per file or per blank-line-separated
paragraph, see :class:`~instmix.config.SourceConfig.txt_unit`), and a folder written by
``datasets.Dataset.save_to_disk``. Every record comes with its 1-based position: the line
for JSON lines, the row for tables, the paragraph for text files.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from instmix.errors import InputError

from . import fs
from .compressed import DamagedInput, damage_message, open_binary
from .paths import JSONL_SUFFIXES, SUFFIXES, is_saved_dataset, resolve_inputs, resolve_paths

__all__ = ["JSONL_SUFFIXES", "SUFFIXES", "is_saved_dataset", "resolve_inputs", "resolve_paths",
           "iter_jsonl", "iter_txt", "iter_records", "iter_parquet", "iter_saved_dataset"]

try:  # orjson parses ~3x faster than json; both give the same objects.
    import orjson as _json

    _loads = _json.loads
except ImportError:  # pragma: no cover - orjson is a dependency
    import json as _json

    _loads = _json.loads



def _open_binary(path: str, storage_options: Mapping | None = None) -> io.BufferedIOBase:
    return open_binary(path, storage_options)


def _json_error(path: str, line_no: int, raw: bytes, err: Exception) -> InputError:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as u:
        return InputError(path, line_no, None, f"invalid UTF-8 at byte {u.start} of the line")
    return InputError(path, line_no, None, f"invalid JSON ({err})")


def iter_jsonl(path: str, skip_bad: bool = False, stats: dict | None = None,
               select: Callable[[int], bool] | None = None,
               storage_options: Mapping | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, object)`` for every non-blank line (with ``select``: only for the
    non-blank lines whose 0-based ordinal it accepts; the others are not parsed)."""
    ordinal = -1
    with _open_binary(path, storage_options) as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if not raw.strip():
                continue
            ordinal += 1
            if select is not None and not select(ordinal):
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


BOM = b"\xef\xbb\xbf"


def iter_txt(path: str, unit: str, skip_bad: bool = False, stats: dict | None = None,
             storage_options: Mapping | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(n, {"text": ...})``: the whole file (n=1) or each paragraph (n = its first line).

    Paragraphs are separated by one or more blank lines; line ends inside are kept. A
    leading UTF-8 byte-order mark is dropped and CRLF line ends read as LF.
    """
    data = fs.read_bytes(path, storage_options)
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        text = data.decode("utf-8").replace("\r\n", "\n")
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
                 select: Callable[[int], bool] | None = None,
                 storage_options: Mapping | None = None) -> Iterator[tuple[int, Mapping]]:
    """Yield ``(position, record)`` from one input; ``record`` is a mapping of fields.

    ``columns`` lets table formats read only what is needed. A record that is not a JSON
    object is an error (or skipped and counted when ``skip_bad``). ``select`` keeps only
    the records whose 0-based ordinal in the file it accepts (JSON lines it rejects are
    not parsed). URLs are read through :mod:`instmix.io.fs` with ``storage_options``.
    """
    remote_file = fs.is_url(path) and path.endswith(SUFFIXES)  # one request saved
    if not remote_file and is_saved_dataset(path, storage_options):
        it = iter_saved_dataset(path, columns, storage_options)
    elif path.endswith(".parquet"):
        it = iter_parquet(path, columns, storage_options)
    elif path.endswith(".txt"):
        it = iter_txt(path, txt_unit, skip_bad, stats, storage_options)
    else:
        it = iter_jsonl(path, skip_bad, stats, select, storage_options)
        select = None  # applied while reading
    if select is not None:
        it = (pr for i, pr in enumerate(it) if select(i))
    for pos, rec in _guarded(path, it):
        if not isinstance(rec, Mapping):
            err = InputError(path, pos, None, f"expected a JSON object, got {type(rec).__name__}")
            if not skip_bad:
                raise err
            _count(stats, "not_an_object")
            continue
        yield pos, rec


def _guarded(path: str, it: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """``it``, with a damaged or unreadable file raised as one InputError naming it.

    Only errors of reading reach here (a generator does not see its consumer's errors);
    ValueError is what pyarrow raises for a file that is not Parquet.
    """
    pos = 0
    try:
        for pos, rec in it:
            yield pos, rec
    except InputError:
        raise
    except (OSError, EOFError, ValueError, zlib.error, DamagedInput) as e:
        what = damage_message(e)
        if what is None and isinstance(e, OSError):
            what = f"cannot read ({e.strerror or e})"
        elif what is None:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            what = f"not a readable {os.path.splitext(path)[1] or 'input'} file ({first})"
        after = f" after record {pos}" if pos else ""
        raise InputError(path, None, None, f"{what}{after}; re-create or re-download it, or "
                         "remove it from the source") from None


def _count(stats: dict | None, reason: str) -> None:
    if stats is not None:
        stats[reason] = stats.get(reason, 0) + 1
