"""Buffered file writes in pieces of at most :data:`WRITE_CHUNK` bytes.

On Linux 6.x, ext4 (and other file systems with large folios) size the page-cache folios
of a buffered write by the length of the ``write`` call. A large folio takes a large free
block, and where the kernel has reported its large free blocks to a hypervisor (free page
reporting, as on the benchmark VM), the host faults each such block in again: there,
``python bench/write_calls.py`` writes a new 256 MB file at 2,661 MB/s in 64 KiB calls,
3,345 MB/s in 256 KiB calls, 110 MB/s in 1 MiB calls and 70 MB/s in 8 MiB calls, and two
processes writing in large calls at once got 1.2x one (the host's faults do not scale
with cores). Small folios come from the many small free blocks the kernel keeps (never
reported). The bytes on disk are the same either way.
"""

from __future__ import annotations

import hashlib

import numpy as np

WRITE_CHUNK = 64 << 10  # bytes per write call


def write_chunked(f, data) -> int:
    """``f.write(data)`` as calls of at most :data:`WRITE_CHUNK` bytes; returns the length."""
    view = memoryview(data).cast("B")
    for at in range(0, len(view), WRITE_CHUNK):
        f.write(view[at:at + WRITE_CHUNK])
    return len(view)


class ChunkedFile:
    """A binary file object whose ``write`` goes through :func:`write_chunked`."""

    def __init__(self, f):
        self.f = f

    def write(self, data) -> int:
        return write_chunked(self.f, data)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()

    @property
    def closed(self) -> bool:
        return self.f.closed

    def __enter__(self) -> ChunkedFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_chunked(path: str) -> ChunkedFile:
    """``path`` opened for writing, never with a ``write`` call over :data:`WRITE_CHUNK`
    bytes: small writes are buffered up to that size, large ones are split."""
    return ChunkedFile(open(path, "wb", buffering=WRITE_CHUNK))


class _Hashed:
    """A writable file that hashes (sha256) what is written to it."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.f.write(data)


def save_npy(path: str, array: np.ndarray) -> str:
    """``np.save(path, array)`` (the same bytes, at exactly ``path``) in chunked writes;
    returns the file's sha256."""
    with open_chunked(path) as f:
        out = _Hashed(f)
        np.save(out, array)
    return out.sha.hexdigest()
