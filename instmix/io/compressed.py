"""Compressed inputs read to the end, or refused.

``zstandard``'s stream reader ends quietly at a cut frame, and a cut after a complete frame
of a multi-frame file looks like a clean end. :class:`CheckedZstd` decodes frame by frame
and raises :class:`DamagedInput` when the data ends inside a frame or when bytes after a
frame are not another frame. gzip damage (truncation, CRC, trailing junk) surfaces as
``EOFError``/``gzip.BadGzipFile``/``zlib.error``, which :func:`damage_message` names.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Mapping

import zstandard

from . import fs

_CHUNK = 1 << 20
# Compressed bytes per decompress call: about 0.5 MB of output each, which the allocator
# reuses; 1 MiB calls gave 4+ MB outputs, each in freshly faulted pages (twice the time).
ZSTD_INPUT = 1 << 17


class DamagedInput(Exception):
    """A compressed input is incomplete or corrupt (``args[0]`` says how)."""


class CheckedZstd(io.RawIOBase):
    """A read-only stream of the decompressed content of a (multi-frame) ``.zst`` file."""

    def __init__(self, raw: io.IOBase):
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = None  # decompressobj of the frame being read; None between frames
        self._pending = b""
        self._buf = memoryview(b"")  # decompressed bytes not yet read (a view: no copies)
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self._buf and not self._eof:
            data = self._pending or self._raw.read(ZSTD_INPUT)
            self._pending = b""
            if not data:
                if self._obj is not None:
                    raise DamagedInput("zstd data ends inside a frame (truncated file)")
                self._eof = True
                return
            if self._obj is None:
                self._obj = self._dctx.decompressobj()
            try:
                self._buf = memoryview(self._obj.decompress(data))
            except zstandard.ZstdError as e:
                raise DamagedInput(f"zstd data is corrupt ({e})") from None
            if self._obj.eof:
                self._pending = self._obj.unused_data
                self._obj = None

    def readinto(self, b) -> int:
        self._fill()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._buf = memoryview(b"")  # let the last decompressed chunk go
        self._raw.close()
        super().close()


def open_binary(path: str, storage_options: Mapping | None = None) -> io.BufferedIOBase:
    """A buffered binary reader of ``path`` (a local path or a URL, read through
    :func:`instmix.io.fs.open_read`), decompressing ``.zst`` and ``.gz``."""
    if path.endswith(".zst"):
        return io.BufferedReader(CheckedZstd(fs.open_read(path, storage_options)),
                                 buffer_size=_CHUNK)
    if path.endswith(".gz"):
        return gzip.open(fs.open_read(path, storage_options), "rb")
    return fs.open_read(path, storage_options, buffer_size=_CHUNK)


def damage_message(e: BaseException) -> str | None:
    """What is wrong with a compressed input, for errors raised while reading it."""
    if isinstance(e, DamagedInput):
        return str(e)
    if isinstance(e, EOFError):
        return "compressed data ends early (truncated file)"
    if isinstance(e, (gzip.BadGzipFile, zlib.error)):
        return f"gzip data is corrupt ({e})"
    return None
