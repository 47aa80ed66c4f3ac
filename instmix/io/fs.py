"""Paths and URLs: local files as they always were, object stores through fsspec.

A path with a ``protocol://`` prefix other than ``file://`` (``s3://``, ``gs://``, any
protocol an installed fsspec implementation registers) is a URL; everything else is a
local path and goes straight to ``os``/``open`` (same bytes, same speed as before).

Credentials and endpoints come from the standard environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
``GOOGLE_APPLICATION_CREDENTIALS``) through the filesystem's own client, and from a
config's ``storage_options`` (``{protocol: {option: value}}``).

Every request goes through :func:`call`: throttling and transient errors (``SlowDown``,
503/500, connection resets, timeouts) are retried with exponential backoff and full
jitter, at most :data:`ATTEMPTS` times; retries are counted (:func:`retry_count`). For
``s3`` the client's own retries are turned off by default so that every retry is one of
ours, bounded and counted. Any other error raises :class:`StorageError` naming the key.
"""

from __future__ import annotations

import copy
import errno
import glob as globlib
import hashlib
import io
import os
import posixpath
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from instmix.errors import InstmixError

ATTEMPTS = 8
BASE_DELAY = 0.05  # seconds; attempt k waits up to BASE_DELAY * 2**k (capped)
MAX_DELAY = 5.0
READ_BLOCK = 8 << 20  # bytes per ranged GET when streaming an object
_TRANSIENT_WORDS = ("slowdown", "slow down", "reduce your request rate", "throttl", "503", "500", "502", "504",
                    "service unavailable", "internalerror", "requesttimeout", "reset by peer",
                    "connection reset", "timed out", "timeout", "serverdisconnected",
                    "connection aborted", "broken pipe", "too many requests", "429")
_TRANSIENT_ERRNO = {errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE, errno.ECONNABORTED,
                    errno.EAGAIN, errno.EBUSY}  # s3fs maps SlowDown to EBUSY
_retries = [0]
_lock = threading.Lock()


class StorageError(InstmixError):
    """A request that failed for good (not found, denied, or out of retries)."""


def is_url(path: str | os.PathLike) -> bool:
    s = os.fspath(path)
    head, sep, _ = s.partition("://")
    return bool(sep) and head.isidentifier() and head != "file"


def local_path(path: str) -> str:
    """``file://x`` -> ``x``; other paths unchanged."""
    return path[len("file://"):] if path.startswith("file://") else path


def protocol(url: str) -> str:
    return url.partition("://")[0]


def join(base: str, *parts: str) -> str:
    """``os.path.join`` for local paths, ``/``-joining for URLs."""
    if is_url(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def dirname(path: str) -> str:
    if is_url(path):
        proto, _, rest = path.partition("://")
        return f"{proto}://{posixpath.dirname(rest.rstrip('/'))}"
    return os.path.dirname(os.path.abspath(path))


def normalize(path: str) -> str:
    """Absolute local path, or the URL with no trailing slash."""
    return path.rstrip("/") if is_url(path) else os.path.abspath(local_path(path))


# -- the fsspec filesystems ------------------------------------------------------------------
_DEFAULTS: dict[str, dict] = {
    # the client retries nothing itself: :func:`call` does it, bounded and counted
    "s3": {"config_kwargs": {"retries": {"total_max_attempts": 1, "mode": "standard"}}},
}


def _options(proto: str, storage_options: Mapping | None) -> dict:
    opts = copy.deepcopy(_DEFAULTS.get(proto, {}))  # botocore edits its config in place
    given = dict((storage_options or {}).get(proto, {}))
    if "config_kwargs" in given and "config_kwargs" in opts:
        given["config_kwargs"] = {**opts["config_kwargs"], **given["config_kwargs"]}
    opts.update(given)
    if proto == "s3" and os.environ.get("AWS_ENDPOINT_URL") and "endpoint_url" not in opts \
            and "endpoint_url" not in opts.get("client_kwargs", {}):
        opts["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    return opts


def filesystem(url: str, storage_options: Mapping | None = None):
    """The fsspec filesystem for ``url``'s protocol (fsspec caches instances)."""
    import fsspec  # lazy: fsspec (and s3fs/gcsfs behind it) load only when a URL is used

    proto = protocol(url)
    opts = _options(proto, storage_options)
    own = opts.pop("retries", 1) if proto == "s3" else None  # s3fs's own retry loop
    try:
        handle = fsspec.filesystem(proto, **opts)
    except (ImportError, ValueError) as e:
        extra = {"s3": "s3", "gs": "gcs", "gcs": "gcs"}.get(proto)
        hint = f"pip install 'instmix[{extra}]'" if extra else "install its fsspec package"
        raise StorageError(f"{url}: no filesystem for {proto}:// ({e}); {hint}") from None
    if own is not None:
        handle.retries = own
    return handle


def transient(err: BaseException) -> bool:
    """Throttling, 5xx and connection trouble: worth another try."""
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError,
                        NotADirectoryError, FileExistsError)):
        return False
    if isinstance(err, OSError) and err.errno in _TRANSIENT_ERRNO:
        return True
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(err).__name__} {err}".lower()
    return any(w in text for w in _TRANSIENT_WORDS)


def retry_count() -> int:
    """Retries made by this process so far (a build reports the difference)."""
    return _retries[0]


def call(fn: Callable[..., Any], *args: Any, key: str, what: str = "request",
         attempts: int = ATTEMPTS, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried on transient errors; a lasting error names ``key``."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as e:  # classified below: retried, or raised naming the key
            if not transient(e):
                raise StorageError(f"{key}: {what} failed: {type(e).__name__}: {e}") from None
            if attempt == attempts - 1:
                raise StorageError(f"{key}: {what} failed after {attempts} attempts "
                                   f"(last: {type(e).__name__}: {e})") from None
            with _lock:
                _retries[0] += 1
            time.sleep(random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2 ** attempt)))
    raise AssertionError("unreachable")


def _strip(fs, url: str) -> str:
    return fs._strip_protocol(url)


def _rebase(fs, base: str, found) -> list[str]:
    """fsspec's protocol-less paths under ``base`` as URLs spelled like ``base`` (fsspec
    writes some roots its own way: ``memory://a`` is ``/a``), sorted."""
    url = base.rstrip("/")
    root = _strip(fs, url).rstrip("/")
    out = []
    for p in found:
        if p == root or p.startswith(root + "/"):
            out.append(url + p[len(root):])
        else:
            out.append(f"{protocol(base)}://{p}")
    return sorted(out)


# -- queries ---------------------------------------------------------------------------------
def _info(path: str, storage_options: Mapping | None) -> dict | None:
    """The object's (or prefix's) info, None when absent. fsspec's own exists/isfile answer
    False on any error, throttling included; this retries instead."""
    handle = filesystem(path, storage_options)
    try:
        return call(handle.info, _strip(handle, path), key=path, what="stat")
    except FileNotFoundError:
        return None


def exists(path: str, storage_options: Mapping | None = None) -> bool:
    if not is_url(path):
        return os.path.exists(local_path(path))
    return _info(path, storage_options) is not None


def isfile(path: str, storage_options: Mapping | None = None) -> bool:
    if not is_url(path):
        return os.path.isfile(local_path(path))
    info = _info(path, storage_options)
    return info is not None and info.get("type") == "file"


def isdir(path: str, storage_options: Mapping | None = None) -> bool:
    if not is_url(path):
        return os.path.isdir(local_path(path))
    info = _info(path, storage_options)
    return info is not None and info.get("type") == "directory"


def stamp(path: str, storage_options: Mapping | None = None) -> str:
    """``path:size:version``: changes when the file does (mtime locally; ETag or
    generation on object stores)."""
    if not is_url(path):
        st = os.stat(local_path(path))
        return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
    info = _info(path, storage_options) or {}
    version = info.get("ETag") or info.get("etag") or info.get("generation") or \
        info.get("LastModified") or info.get("mtime") or ""
    return f"{path}:{info.get('size')}:{version}"


def size(path: str, storage_options: Mapping | None = None) -> int:
    if not is_url(path):
        return os.path.getsize(local_path(path))
    fs = filesystem(path, storage_options)
    return int(call(fs.size, _strip(fs, path), key=path, what="stat"))


def glob(pattern: str, storage_options: Mapping | None = None) -> list[str]:
    """Sorted matches of ``pattern`` (``**`` recurses), as URLs with the same protocol."""
    if not is_url(pattern):
        return sorted(globlib.glob(local_path(pattern), recursive=True))
    fs = filesystem(pattern, storage_options)
    found = call(fs.glob, _strip(fs, pattern), key=pattern, what="list")
    proto, _, rest = pattern.partition("://")
    parts = rest.split("/")
    fixed = next((i for i, part in enumerate(parts) if globlib.has_magic(part)), len(parts))
    return _rebase(fs, f"{proto}://{'/'.join(parts[:fixed])}", found)


def listdir(path: str, storage_options: Mapping | None = None) -> list[str]:
    """Names (not paths) directly under ``path``; empty when it does not exist."""
    if not is_url(path):
        try:
            return sorted(os.listdir(local_path(path)))
        except FileNotFoundError:
            return []
    fs = filesystem(path, storage_options)
    try:
        entries = call(fs.ls, _strip(fs, path), detail=False, key=path, what="list")
    except FileNotFoundError:
        return []
    return sorted(posixpath.basename(e.rstrip("/")) for e in entries)


def walk_files(path: str, storage_options: Mapping | None = None) -> list[str]:
    """Every file under a folder or prefix, sorted (URLs keep their protocol)."""
    if not is_url(path):
        p = local_path(path)
        return sorted(os.path.join(r, f) for r, _, names in os.walk(p) for f in names)
    fs = filesystem(path, storage_options)
    found = call(fs.find, _strip(fs, path), key=path, what="list")
    return _rebase(fs, path, found)


# -- reading ---------------------------------------------------------------------------------
def read_range(path: str, start: int, end: int, storage_options: Mapping | None = None
               ) -> bytes:
    """Bytes ``[start, end)`` of an object: one ranged GET."""
    if not is_url(path):
        with open(local_path(path), "rb") as f:
            f.seek(start)
            return f.read(end - start)
    fs = filesystem(path, storage_options)
    return call(fs.cat_file, _strip(fs, path), start=start, end=end, key=path, what="read")


def read_bytes(path: str, storage_options: Mapping | None = None) -> bytes:
    if not is_url(path):
        with open(local_path(path), "rb") as f:
            return f.read()
    fs = filesystem(path, storage_options)
    return call(fs.cat_file, _strip(fs, path), key=path, what="read")


class RangeReader(io.RawIOBase):
    """A read-only object as a seekable binary stream; each read is one retried range GET."""

    def __init__(self, url: str, storage_options: Mapping | None = None):
        self.url, self.options = url, storage_options
        self.length = size(url, storage_options)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b) -> int:
        n = min(len(b), self.length - self.pos)
        if n <= 0:
            return 0
        data = read_range(self.url, self.pos, self.pos + n, self.options)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)


def open_read(path: str, storage_options: Mapping | None = None,
              buffer_size: int = 1 << 20) -> io.BufferedIOBase:
    """A buffered binary reader: a plain file locally, ranged GETs of ``READ_BLOCK`` for URLs."""
    if not is_url(path):
        return open(local_path(path), "rb", buffering=buffer_size)
    return io.BufferedReader(RangeReader(path, storage_options), buffer_size=READ_BLOCK)


# -- writing (object stores: whole objects, each PUT atomic) ---------------------------------
def put_file(local: str, url: str, storage_options: Mapping | None = None) -> None:
    fs = filesystem(url, storage_options)
    call(fs.put_file, local, _strip(fs, url), key=url, what="upload")


def put_bytes(url: str, data: bytes, storage_options: Mapping | None = None) -> None:
    fs = filesystem(url, storage_options)
    call(fs.pipe_file, _strip(fs, url), data, key=url, what="upload")


def get_file(url: str, local: str, storage_options: Mapping | None = None) -> None:
    fs = filesystem(url, storage_options)
    call(fs.get_file, _strip(fs, url), local, key=url, what="download")


def remove(path: str, storage_options: Mapping | None = None) -> None:
    """Delete one file or object; a missing one raises FileNotFoundError."""
    if not is_url(path):
        os.remove(local_path(path))
        return
    fs = filesystem(path, storage_options)
    if _info(path, storage_options) is None:
        raise FileNotFoundError(path)
    call(fs.rm_file, _strip(fs, path), key=path, what="delete")


def remove_prefix(url: str, storage_options: Mapping | None = None) -> None:
    """Delete every object under ``url/`` (a missing prefix is fine)."""
    fs = filesystem(url, storage_options)
    keys = call(fs.find, _strip(fs, url), key=url, what="list")
    if keys:
        call(fs.rm, list(keys), key=url, what="delete")


def upload_tree(folder: str, url: str, storage_options: Mapping | None = None, *,
                last: tuple[str, ...] = ()) -> list[str]:
    """Upload every file of local ``folder`` under ``url``; names in ``last`` go after all
    others (commit markers). Returns the relative names uploaded."""
    rels = sorted(os.path.relpath(p, folder) for p in walk_files(folder))
    ordered = [r for r in rels if r not in last] + [r for r in last if r in rels]
    for rel in ordered:
        put_file(os.path.join(folder, rel), join(url, *rel.split(os.sep)), storage_options)
    return ordered


def local_copy(url: str, names: tuple[str, ...] = (), storage_options: Mapping | None = None
               ) -> str:
    """Download ``url`` (a file, or the ``names`` present in a folder) to a local folder
    keyed by the URL, refreshed on every call; returns the local file or folder."""
    folder = os.path.join(tempfile.gettempdir(), f"instmix-{os.getuid()}", "fetched",
                          hashlib.sha256(url.encode()).hexdigest()[:16])
    os.makedirs(folder, exist_ok=True)
    wanted = [(url, posixpath.basename(url.rstrip("/")))] if not names else \
        [(join(url, n), n) for n in names]
    for src, name in wanted:
        if names and not isfile(src, storage_options):
            continue
        dest = os.path.join(folder, name)
        tmp = f"{dest}.part-{os.getpid()}"
        get_file(src, tmp, storage_options)
        os.replace(tmp, dest)
    return folder if names else os.path.join(folder, wanted[0][1])
