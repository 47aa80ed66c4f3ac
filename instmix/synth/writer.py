"""A background writer: parts, markers and session files go to storage in a thread, in
the order they were handed over, so compressing and fsync-ing never holds up the engine.

An error in the thread is raised by the next :meth:`Writer.put` or by :meth:`Writer.close`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Writer:
    def __init__(self, depth: int = 64):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, daemon=True, name="instmix-writer")
        self.thread.start()

    def _work(self) -> None:
        while True:
            job = self.q.get()
            if job is None:
                return
            if self.error is None:
                try:
                    job()
                except BaseException as e:  # raised again in the caller's thread
                    self.error = e

    def _raise(self) -> None:
        if self.error is not None:
            e, self.error = self.error, None
            raise e

    def put(self, job: Callable[[], None]) -> None:
        self._raise()
        self.q.put(job)

    def close(self) -> None:
        """Write everything handed over, stop the thread, raise its error if any."""
        self.q.put(None)
        self.thread.join()
        self._raise()
