"""What a report shows, read from build folders: the manifest and the ``.csv.gz`` document
indexes (never the token files), reduced to per-source document lengths and a subsampled
running share of every source along the stream."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from instmix.errors import InstmixError
from instmix.format.manifest import MANIFEST, load_manifest
from instmix.format.reader import index_path, read_index
from instmix.io import fs

CURVE_POINTS = 1200  # points of the running-share curve per build (the stream is subsampled)
SWEEP = "sweep.json"  # written by instmix sweep beside its mixtures
REQUIRED = ("tokenizer", "dtype", "seed", "total_tokens", "sources", "shards")


@dataclass(frozen=True)
class Curve:
    """Running share: after ``tokens[i]`` tokens of the stream, source ``j`` holds
    ``shares[i, j]`` of them (columns in the order of ``BuildData.names``)."""

    tokens: np.ndarray
    shares: np.ndarray


@dataclass
class BuildData:
    root: str
    label: str
    manifest: dict
    lengths: dict[str, np.ndarray] = field(default_factory=dict)  # source -> doc lengths
    curve: Curve | None = None  # None for per_source builds (the trainer interleaves)

    @property
    def sources(self) -> list[dict]:
        return self.manifest["sources"]

    @property
    def names(self) -> list[str]:
        return [s["name"] for s in self.sources]

    @property
    def interleaved(self) -> bool:
        return self.manifest.get("layout", "interleaved") == "interleaved"

    def source(self, name: str) -> dict | None:
        return next((s for s in self.sources if s["name"] == name), None)


def expand_dirs(dirs: list[str]) -> list[str]:
    """Build folders named by ``dirs``: a folder holding no manifest but build folders
    one level down (a sweep's output) stands for those."""
    out: list[str] = []
    for d in dirs:
        if fs.is_url(d):  # a build, or a sweep's prefix, on an object store
            if fs.isfile(fs.join(d, MANIFEST)):
                out.append(d)
                continue
        elif not os.path.exists(d):
            raise InstmixError(f"{d}: no such folder")
        elif not os.path.isdir(d):
            raise InstmixError(f"{d}: not a folder (give a build folder, which holds {MANIFEST})")
        if fs.isfile(fs.join(d, MANIFEST)):
            out.append(d)
            continue
        children = _child_builds(d)
        if not children:
            raise InstmixError(f"{d}: not an instmix build (no {MANIFEST}, and no build "
                               "folders inside it)")
        out.extend(children)
    seen: dict[str, str] = {}
    for d in out:
        real = d.rstrip("/") if fs.is_url(d) else os.path.realpath(d)
        if real in seen:
            raise InstmixError(f"{d}: the same build is given twice (also as {seen[real]})")
        seen[real] = d
    return out


def _child_builds(folder: str) -> list[str]:
    """Build folders inside ``folder``: in ``sweep.json``'s order when it lists them (the
    order the sweep was asked for), the others after them by name."""
    names = sorted(c for c in fs.listdir(folder) if fs.isfile(fs.join(folder, c, MANIFEST)))
    order: list[str] = []
    try:
        listed = [m.get("output") for m in json.loads(fs.read_bytes(fs.join(folder, SWEEP))
                                                      ).get("mixtures", [])]
        order = [n for n in listed if isinstance(n, str) and n in names]
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    order = list(dict.fromkeys(order))
    return [fs.join(folder, n) for n in order + [n for n in names if n not in order]]


def labels_for(roots: list[str]) -> list[str]:
    """Shortest distinct path tails: ``a/out`` and ``b/out`` -> ``a/out``, ``b/out``."""
    parts = [(r.partition("://")[2] if fs.is_url(r) else os.path.abspath(r)).rstrip(
        "/" + os.sep).split("/") for r in roots]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            return labels
        depth += 1


def load_build(root: str, label: str, curve_points: int = CURVE_POINTS) -> BuildData:
    m = load_manifest(root)
    where = fs.join(root, MANIFEST)
    data = m.data
    for key in REQUIRED:
        if key not in data:
            raise InstmixError(f"{where}: missing key '{key}'; not a complete instmix build")
    names = [s.get("name") for s in data["sources"]]
    for i, s in enumerate(data["sources"]):
        missing = [k for k in ("name", "kind", "tokens", "documents") if k not in s]
        if missing:
            raise InstmixError(f"{where}: sources[{i}] lacks {', '.join(missing)}")
    code_of = {n: i for i, n in enumerate(names)}
    lengths_parts, code_parts = [], []
    for shard in data["shards"]:
        lengths, codes = _shard_index(m.path(shard["path"]), code_of, shard)
        lengths_parts.append(lengths)
        code_parts.append(codes)
    lengths = np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, np.int64)
    codes = np.concatenate(code_parts) if code_parts else np.zeros(0, np.int32)
    build = BuildData(m.root, label, data)
    for i, name in enumerate(names):
        build.lengths[name] = lengths[codes == i]
    if build.interleaved and len(lengths):
        build.curve = running_share(lengths, codes, len(names), curve_points)
    return build


def _shard_index(shard_path: str, code_of: dict[str, int], shard: dict
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(document lengths, source codes) of one shard, from its ``.csv.gz`` only."""
    path = index_path(shard_path)
    if not fs.isfile(path):
        raise InstmixError(f"{path}: missing; the build is incomplete (check it with "
                           "instmix verify)")
    expected = shard.get("documents")
    if expected == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    try:
        if fs.is_url(path):  # the exact reader streams it by ranged requests
            raise ValueError(path)
        lengths, names, codes = _read_arrow(path, expected)
    except Exception:  # pyarrow missing or a malformed file: the exact reader names the line
        try:
            idx = read_index(shard_path)
        except ValueError as e:
            raise InstmixError(str(e)) from None
        except (OSError, EOFError) as e:
            raise InstmixError(f"{path}: unreadable ({e})") from None
        lengths = idx.end - idx.start
        names, codes = np.unique(np.asarray(idx.src, dtype=object), return_inverse=True)
        names = [str(n) for n in names]
    if expected is not None and len(lengths) != expected:
        raise InstmixError(f"{path}: {len(lengths):,} documents, but manifest.json says "
                           f"{expected:,}; check the build with instmix verify")
    if len(lengths) and int(lengths.min()) < 0:
        raise InstmixError(f"{path}: a document ends before it starts")
    unknown = [n for n in names if n not in code_of]
    if unknown:
        raise InstmixError(f"{path}: source '{unknown[0]}' is not in manifest.json")
    table = np.asarray([code_of[n] for n in names], dtype=np.int32)
    return lengths.astype(np.int64, copy=False), table[np.asarray(codes, dtype=np.int64)]


def _read_arrow(path: str, expected: int | None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Parse with pyarrow (several times faster than the csv module). Ids holding a
    newline (quoted) need the slower multi-line parser: tried when the fast one fails or
    finds another number of documents than the manifest."""
    try:
        out = _arrow_table(path, multiline=False)
        if expected is None or len(out[0]) == expected:
            return out
    except Exception:
        pass
    return _arrow_table(path, multiline=True)


def _arrow_table(path: str, multiline: bool) -> tuple[np.ndarray, list[str], np.ndarray]:
    import pyarrow as pa  # lazy: a slow import, only the report reads indexes this way
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(column_names=["start", "end", "id", "src"]),
        parse_options=pcsv.ParseOptions(newlines_in_values=multiline),
        convert_options=pcsv.ConvertOptions(
            include_columns=["start", "end", "src"],
            column_types={"start": pa.int64(), "end": pa.int64(),
                          "src": pa.dictionary(pa.int32(), pa.string())}))
    start = _ints(table.column("start").combine_chunks(), np.int64)
    end = _ints(table.column("end").combine_chunks(), np.int64)
    src = table.column("src").unify_dictionaries().combine_chunks()
    return end - start, src.dictionary.to_pylist(), _ints(src.indices, np.int32)


def _ints(arr, dtype) -> np.ndarray:
    """A null-free pyarrow integer array as numpy, read from its buffer (``to_numpy``
    imports pandas, a second of start-up)."""
    if arr.null_count:
        raise ValueError("empty field")
    if len(arr) == 0:
        return np.zeros(0, dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))[arr.offset:]


def running_share(lengths: np.ndarray, codes: np.ndarray, n_sources: int,
                  points: int = CURVE_POINTS) -> Curve:
    """Share of each source in the tokens emitted so far, at up to ``points`` document
    boundaries evenly spaced in tokens (one pass over the documents, O(documents))."""
    cum = np.cumsum(lengths)
    total = int(cum[-1])
    n = len(lengths)
    if n <= points:
        at = np.arange(n)
    else:
        marks = np.linspace(total / points, total, points)
        at = np.unique(np.minimum(np.searchsorted(cum, marks, side="left"), n - 1))
    # document i belongs to the first sample point at or after it; at[-1] == n - 1
    segment = np.repeat(np.arange(len(at), dtype=np.int64) * n_sources,
                        np.diff(at, prepend=-1))
    per = np.bincount(segment + codes, weights=lengths,
                      minlength=len(at) * n_sources).reshape(len(at), n_sources)
    sums = np.cumsum(per, axis=0)
    emitted = cum[at].astype(np.float64)
    shares = sums / np.maximum(emitted, 1)[:, None]
    return Curve(emitted, shares)


def load_builds(dirs: list[str], curve_points: int = CURVE_POINTS) -> list[BuildData]:
    roots = expand_dirs(dirs)
    return [load_build(r, label, curve_points) for r, label in zip(roots, labels_for(roots))]
