"""A real S3-compatible server on loopback for the tests (moto's server mode, as s3fs's own
test suite uses), and a throttling proxy in front of it that answers some requests with
S3's ``503 SlowDown``, as a busy bucket does."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instmix.io import fs

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}


class MotoS3:
    """``with MotoS3() as s3:`` a server on 127.0.0.1; ``s3.endpoint`` is its URL."""

    def __init__(self):
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def __enter__(self) -> MotoS3:
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    def env(self, endpoint: str | None = None) -> dict:
        """The standard variables a user sets for an S3-compatible endpoint."""
        return {**ENV, "AWS_ENDPOINT_URL": endpoint or self.endpoint}


class ThrottlingProxy:
    """Forwards HTTP to ``target``; every ``every``-th request (from the ``start``-th on)
    gets ``503 SlowDown`` instead, without reaching the server. ``throttled`` counts them."""

    def __init__(self, target: str, every: int = 3, start: int = 1):
        self.target = target.removeprefix("http://")
        self.every, self.start = every, start
        self.seen = 0
        self.throttled = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self):
                body = self._body()
                with proxy.lock:
                    proxy.seen += 1
                    k = proxy.seen
                    throttle = k >= proxy.start and (k - proxy.start) % proxy.every == 0
                    proxy.throttled += throttle
                if throttle:
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(proxy.target, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "content-length")}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ThrottlingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def set_env(monkeypatch, env: dict) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def fresh_fs() -> None:
    """Drop fsspec's cached S3 filesystems (each holds the endpoint it was made with)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def s3_session(bucket: str) -> Iterator[MotoS3]:
    """A moto server with the environment pointed at it and ``bucket`` made; the
    environment and fsspec's cached filesystems are restored after."""
    with MotoS3() as server:
        mp = pytest.MonkeyPatch()
        set_env(mp, server.env())
        fresh_fs()
        fs.filesystem("s3://x").mkdir(bucket)
        try:
            yield server
        finally:
            mp.undo()
            fresh_fs()


def s3_tree(url: str, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every object under ``url`` by its key relative to it, except keys starting with ``skip``."""
    handle = fs.filesystem(url)
    handle.invalidate_cache()
    key = url.removeprefix("s3://")
    found = {p[len(key) + 1:]: p for p in handle.find(key)}
    return {rel: handle.cat_file(p) for rel, p in found.items() if not rel.startswith(skip)}
