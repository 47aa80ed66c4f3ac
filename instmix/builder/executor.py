"""Where a build's per-unit work runs: the executor interface and the local process pool.

An executor maps a picklable task function over picklable items and returns the results
in input order, whatever order they finish in, so a build's output never depends on the
number of workers. ``progress(item, result)`` is called in the caller's process as each
item finishes. Exceptions raised by a task are raised again by :meth:`Executor.map` in the
caller, with their class and message.

:class:`LocalExecutor` runs the items in this process (``processes=1``) or in a pool of
forked processes. Forked workers inherit everything the task function holds (a loaded
tokenizer, rank tables), so such fixed costs are paid once. Other executors (such as a
Ray one) implement the same :meth:`map`; their workers receive the task function
pickled, so task functions must drop unpicklable state in ``__getstate__`` and rebuild it
lazily. A task function may have a ``prepare()`` method (load what every item needs);
:class:`LocalExecutor` calls it once before running items or forking workers.
"""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol

from instmix.errors import InstmixError

Progress = Callable[[Any, Any], None]
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Executor(Protocol):
    """``map(fn, items, progress) -> [fn(item) for item in items]``, possibly in parallel."""

    @property
    def workers(self) -> int:
        """How many items run at once (a task may size its own threads by it)."""
        ...

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any],
            progress: Progress | None = None) -> list: ...


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """Up to ``processes`` forked worker processes (default: every available core); one
    process, or one item, runs inline."""

    def __init__(self, processes: int | None = None):
        if processes is not None and processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.processes = processes or available_cores()

    @property
    def workers(self) -> int:
        return self.processes

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def plan(self, items: int) -> int:
        """Processes :meth:`map` will use for ``items`` items (1 means inline)."""
        fork_ok = "fork" in multiprocessing.get_all_start_methods()
        return max(1, min(self.processes, items)) if fork_ok else 1

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any],
            progress: Progress | None = None) -> list:
        items = list(items)
        n = self.plan(len(items))
        prepare = getattr(fn, "prepare", None)
        if prepare is not None and items:
            prepare()  # fixed costs paid here once; forked workers inherit the result
        if n == 1:
            results = []
            for item in items:
                results.append(fn(item))
                if progress:
                    progress(item, results[-1])
            return results
        ctx = multiprocessing.get_context("fork")
        results: list = [None] * len(items)
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_install,
                                 initargs=(fn, os.getpid())) as pool:
            index = {pool.submit(_call, item): k for k, item in enumerate(items)}
            for fut in as_completed(index):
                status, value = fut.result()
                if status == "err":
                    for other in index:
                        other.cancel()
                    raise _rebuild(value)
                results[index[fut]] = value
                if progress:
                    progress(items[index[fut]], value)
        return results


_TASK: list = []  # the task function of this worker process, set once by _install


def _install(fn: Callable[[Any], Any], parent: int) -> None:
    _TASK[:] = [fn]
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """On Linux, a worker is killed when the build process dies (even by ``kill -9``), so
    no orphan keeps tokenizing; its temporary folder is then cleaned as abandoned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers end when their queue closes
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _call(item: Any) -> tuple[str, Any]:
    try:
        return "ok", _TASK[0](item)
    except BaseException as e:  # sent back as (class, message): not every error pickles
        return "err", (type(e), str(e), traceback.format_exc())


def _rebuild(value: tuple[type, str, str]) -> BaseException:
    """The worker's exception in this process: same class and message."""
    cls, message, tb = value
    if issubclass(cls, InstmixError):
        err = cls.__new__(cls)
        Exception.__init__(err, message)
        return err
    try:
        return cls(message)
    except Exception:  # a class whose constructor takes other arguments
        return RuntimeError(f"{cls.__name__}: {message}\nin a worker:\n{tb}")


EXECUTORS = ("local", "ray")


def make_executor(name: str = "local", address: str | None = None):
    """``local`` (processes of this machine) or ``ray`` (``address``: a cluster, else
    ``RAY_ADDRESS``, else a local Ray started and stopped by the executor). Use it as a
    context manager (``close`` stops what it started)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        # the Ray executor module (and ray) load only when asked for
        ray_executor = importlib.import_module("instmix.builder.ray_executor")
        return ray_executor.RayExecutor(address)
    raise InstmixError(f"--executor: expected one of {', '.join(EXECUTORS)}; got {name!r}")
