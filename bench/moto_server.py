"""A moto S3 server on loopback in its own process, for the object-store benchmarks: the
environment of this process points boto/s3fs at it (``AWS_ENDPOINT_URL`` and test keys)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
       "AWS_DEFAULT_REGION": "us-east-1"}


class MotoServer:
    """Started on a free port when made, answering once its port accepts; ``close()`` stops it."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ.update(ENV, AWS_ENDPOINT_URL=self.endpoint)
        for _ in range(100):
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} (is moto[server] "
                           "installed?)")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
