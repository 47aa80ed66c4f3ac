"""Cache units as picklable jobs, and the task function that builds them in any process.

:class:`UnitJob` names one cache unit to build; :class:`UnitTokenizer` builds it and
returns the published folder. The tokenizer is loaded once per process: by
:meth:`UnitTokenizer.prepare` in a process that forks its workers (they inherit it), or
on the first job in a process that received the task pickled (the encoder is not
pickled; a process keeps the encoders it loaded, keyed by the tokenizer's facts, so a Ray
worker that runs many units loads it once). Every unit's content depends only on its inputs and options, never on the
process or the number of processes that built it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass

from instmix.config import SourceConfig, TokenizerSpec
from instmix.io import fs
from instmix.io.readers import SUFFIXES

from .cache import build_unit
from .encoder import Encoder
from .facts import TokenizerInfo, load_tokenizer_info


@dataclass(frozen=True)
class UnitJob:
    """One cache unit: ``root/key`` from ``paths`` of ``src`` (``label`` names them in ids)."""

    root: str
    key: str
    src: SourceConfig
    paths: tuple[str, ...]
    label: str

    @property
    def input_bytes(self) -> int:
        """Size on disk of the unit's inputs (for ordering and progress)."""
        total = 0
        for p in self.paths:
            if fs.is_url(p):
                total += fs.size(p, self.src.storage_options) if p.endswith(SUFFIXES) else 0
            elif os.path.isfile(p):
                total += os.path.getsize(p)
            else:
                total += sum(os.path.getsize(os.path.join(r, f))
                             for r, _, names in os.walk(p) for f in names)
        return total


@dataclass
class UnitResult:
    folder: str
    backend: str
    storage_retries: int = 0  # object-store requests retried while building it


_ENCODERS: dict[tuple, tuple[TokenizerInfo, Encoder]] = {}  # this process's, by facts


class UnitTokenizer:
    """Task function: ``(job) -> UnitResult``. ``threads``: the encoder's own threads
    (1 in forked workers, every core when units run one at a time in this process).
    ``ship_tokenizer``: carry the tokenizer's bytes, for workers on machines that cannot
    read ``info.path`` (sent once with the task function, not with every job)."""

    def __init__(self, info: TokenizerInfo, backend: str, check_rate: float, threads: int,
                 skip_bad: bool, batch_bytes: int, ship_tokenizer: bool = False):
        self.info = info
        self.backend = backend
        self.check_rate = check_rate
        self.threads = threads
        self.skip_bad = skip_bad
        self.batch_bytes = batch_bytes
        self.tokenizer_json = None
        if ship_tokenizer:
            with open(info.path, "rb") as f:
                self.tokenizer_json = f.read()
        self._encoder: Encoder | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_encoder": None}  # rebuilt in the receiving process

    def prepare(self) -> Encoder:
        """Load the tokenizer (once per process)."""
        if self._encoder is None:
            key = (self.info.sha256, self.info.path, self.backend, self.check_rate,
                   self.threads)
            if key not in _ENCODERS:
                info = _readable(self.info, self.tokenizer_json)
                _ENCODERS[key] = (info, Encoder(info, self.backend, self.check_rate,
                                                self.threads))
            self.info, self._encoder = _ENCODERS[key]
        return self._encoder

    def __call__(self, job: UnitJob) -> UnitResult:
        encoder = self.prepare()
        before = fs.retry_count()
        unit = build_unit(job.root, job.key, job.src, job.paths, job.label, self.info,
                          encoder, skip_bad=self.skip_bad, batch_bytes=self.batch_bytes)
        return UnitResult(unit.folder, unit.meta.backend, fs.retry_count() - before)


def _readable(info: TokenizerInfo, data: bytes | None) -> TokenizerInfo:
    """``info`` with a path this process can read: a copy of ``data`` when ``info.path``
    is not on this machine."""
    if data is None or os.path.isfile(info.path):
        return info
    folder = os.path.join(tempfile.gettempdir(), f"instmix-{os.getuid()}", "tokenizers",
                          info.sha256)
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.part-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return dataclasses.replace(info, path=path, _tokenizer=None)


def preload(spec: TokenizerSpec, dtype: str, where: str, storage_options, backend: str,
            check_rate: float) -> bool:
    """On a worker of another process: load the tokenizer of a build that is about to send
    its units here, while the driver still resolves and hashes the inputs (a
    :class:`UnitTokenizer` with one thread then finds it loaded). Best effort: an error
    here (say, a path this machine cannot read) surfaces in the units' own tasks."""
    try:
        asked = (spec, dtype, backend, check_rate, fs.stamp(spec.path, storage_options))
        if asked in _PRELOADED:  # loaded by an earlier build: nothing to read again
            return True
        info = load_tokenizer_info(spec, dtype, where, storage_options)
        key = (info.sha256, info.path, backend, check_rate, 1)
        if key not in _ENCODERS:
            _ENCODERS[key] = (info, Encoder(info, backend, check_rate, 1))
        _PRELOADED.add(asked)
    except Exception:  # noqa: BLE001 - reported by the units that need it
        return False
    return True


_PRELOADED: set = set()  # (spec, dtype, backend, check_rate, file stamp) loaded here
