"""An iterator consumed in a background thread, a few items ahead of its consumer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Full, Queue


def read_ahead(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a thread, at most ``depth`` items ahead (reading and parsing input
    overlap tokenization). The thread stops when the consumer does, normally or by an
    exception; an exception of ``it`` is raised again in the consumer."""
    q: Queue = Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def work():
        try:
            for item in it:
                if not put(item):
                    return
        except BaseException as e:  # re-raised in the consumer
            put(e)
            return
        put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
