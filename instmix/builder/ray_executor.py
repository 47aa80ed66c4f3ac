"""Build tasks as Ray tasks: a cluster at ``address`` (else ``RAY_ADDRESS``), or a local
Ray that this executor starts and stops.

Each task is an ordinary Ray task with ``max_retries``: when a worker process dies (killed,
out of memory, a lost node) Ray runs the task again, and as every task is a pure function
of its item that writes whole files (a shard, a cache unit published atomically), the
retry writes the same bytes. The function is put in the object store once per ``map``;
results come back in input order, ``progress(item, result)`` is called as each finishes (the driver's
progress bar).
"""

from __future__ import annotations

import importlib
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from instmix.errors import InstmixError
from instmix.io import fs

from .executor import available_cores

MAX_RETRIES = 3
# what every build task imports: loaded by each worker when the executor starts, so no task
# pays for it
WARM_MODULES = ("instmix.tokenize.jobs", "instmix.builder.tasks")


def _run(fn, item):
    return fn(item)


def _call(fn, args):
    return fn(*args)


def _warm(hold: float) -> int:
    """On a worker: import the build's modules, then hold the slot briefly so that the
    warm-up tasks spread over every worker."""
    for name in WARM_MODULES:
        importlib.import_module(name)
    time.sleep(hold)
    return os.getpid()


def _probe(path: str, storage_options) -> str | None:
    """On a worker: read the probe the driver wrote; None when all is well."""
    try:
        fs.read_bytes(path, storage_options)
    except Exception as e:  # reported to the driver as the reason
        return f"{type(e).__name__}: {e}"
    return None


class RayExecutor:
    """:class:`~instmix.builder.executor.Executor` on Ray; ``remote``: its tasks run in
    other processes (maybe machines), so the build ships them whole items."""

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 max_retries: int = MAX_RETRIES):
        try:
            import ray  # lazy: optional extra instmix[ray], seconds to import
        except ImportError:
            raise InstmixError("--executor ray needs Ray: pip install 'instmix[ray]'") from None
        self.ray = ray
        self.max_retries = max_retries
        self.started = False
        address = address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # instmix/
            try:
                if address:  # a cluster: ship this instmix to its workers
                    ray.init(address=address, runtime_env={"py_modules": [package]},
                             log_to_driver=False)
                else:  # a local Ray: workers import this instmix from where it lies
                    path = os.pathsep.join(p for p in (os.path.dirname(package),
                                                       os.environ.get("PYTHONPATH")) if p)
                    ray.init(num_cpus=num_cpus or available_cores(), include_dashboard=False,
                             log_to_driver=False, configure_logging=False,
                             runtime_env={"env_vars": {"PYTHONPATH": path}})
            except ConnectionError as e:
                raise InstmixError(f"--ray-address {address}: cannot connect ({e})") from None
            self.started = True
        self._remote = ray.remote(max_retries=max_retries, retry_exceptions=False)(_run)
        self._probe = ray.remote(max_retries=max_retries)(_probe)
        self._call = ray.remote(max_retries=0)(_call)
        self._warming: list = []
        warm = ray.remote(_warm)
        self.worker_pids = set(ray.get([warm.remote(0.2) for _ in range(self.workers)]))

    @property
    def workers(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def plan(self, items: int) -> int:
        return max(1, min(self.workers, items))

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any],
            progress: Callable[[Any, Any], None] | None = None) -> list:
        items = list(items)
        if not items:
            return []
        ray = self.ray
        fn_ref = ray.put(fn)
        refs = [self._remote.remote(fn_ref, item) for item in items]
        where = {r: i for i, r in enumerate(refs)}
        out: list = [None] * len(refs)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for r in done:
                    value = _get(ray, r)
                    out[where[r]] = value
                    if progress is not None:
                        progress(items[where[r]], value)
        except BaseException:
            for r in pending:
                ray.cancel(r, force=True)
            raise
        return out

    def warm(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` once per worker slot, without waiting (ahead of the tasks
        that follow): workers load what a build's tasks will need while the driver
        plans. Its results and errors are ignored."""
        self._warming = [self._call.remote(fn, args) for _ in range(self.workers)]

    def check_storage(self, path: str, storage_options: Mapping | None = None) -> None:
        """Write a probe under ``path`` here and read it in a Ray task."""
        probe = fs.join(path, f".instmix-probe-{secrets.token_hex(4)}")
        if fs.is_url(probe):
            fs.put_bytes(probe, b"instmix", storage_options)
        else:
            os.makedirs(path, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"instmix")
        try:
            err = self.ray.get(self._probe.remote(probe, dict(storage_options or {})))
        finally:
            if fs.is_url(probe):
                fs.filesystem(probe, storage_options).rm_file(
                    fs.filesystem(probe, storage_options)._strip_protocol(probe))
            else:
                os.remove(probe)
        if err is not None:
            raise InstmixError(f"{path}: the Ray workers cannot read what this machine writes "
                               f"there ({err}); put cache_dir and output on storage every node "
                               "sees (a shared filesystem or an object store)")

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False


def _get(ray, ref):
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)  # the task's own exception, without Ray's header
        if isinstance(cause, InstmixError):
            raise InstmixError(str(cause)) from None
        raise
    except ray.exceptions.WorkerCrashedError as e:
        raise InstmixError(f"a Ray worker died {MAX_RETRIES + 1} times on one task ({e})"
                           ) from None

