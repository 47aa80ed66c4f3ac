"""An OpenAI-compatible ``/v1/completions`` server (``vllm serve``, SGLang, ...).

Continuous: every submitted prompt is one HTTP request on a pool of ``concurrency``
threads (default 256), each holding one persistent (keep-alive) connection, and
:meth:`OpenAIEngine.poll` returns each result as soon as its reply arrives, so the
server always holds a whole window of requests. ``prompt_format: tokens`` (default) sends
the prompt as token ids; ``text`` sends the text with ``add_special_tokens: false`` so the
server adds no second BOS (a prompt whose raw text holds a marker string such as ``<s>``
comes without text and is sent as ids, where it stays text).

Failures: 408/409/429 and 5xx replies are retried up to ``retries`` times with
exponential back-off, then fail that prompt; other HTTP errors fail it at once. No reply
at all (refused, reset, timed out) after the retries means the server is down or
unreachable: :class:`~instmix.synth.engines.base.EngineUnavailable`, and the run stops.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from instmix.errors import InstmixError

from .base import Engine, EngineUnavailable, Request, Result

_RETRY_STATUS = {408, 409, 429}
_NO_REPLY = (OSError, http.client.HTTPException)  # refused, reset, timeout, closed early


class _HttpStatus(Exception):
    def __init__(self, code: int, detail: str):
        super().__init__(f"HTTP {code}: {detail}")
        self.code = code


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, cfg, tokenizer):
        super().__init__(cfg, tokenizer)
        url = urllib.parse.urlsplit(cfg.base_url + "/completions")
        self.https = url.scheme == "https"
        self.host, self.path = url.netloc, url.path
        self.headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise InstmixError(f"synthesizer.api_key_env: environment variable "
                                   f"{cfg.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        self.backoff = float(cfg.options.get("retry_backoff", 1.0))
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency,
                                       thread_name_prefix="instmix-openai")
        self.local = threading.local()
        self.conns: list[http.client.HTTPConnection] = []
        self.lock = threading.Lock()
        self.flight: set[Future] = set()

    @property
    def capacity(self) -> int:
        return self.cfg.concurrency

    def body(self, req: Request) -> dict:
        body = {"model": self.cfg.model, "max_tokens": self.cfg.max_new_tokens,
                "temperature": 0.0, "n": 1, "stream": False}
        if self.cfg.prompt_format == "text" and req.prompt:
            body["prompt"] = req.prompt
            body["add_special_tokens"] = False
        else:
            body["prompt"] = list(req.prompt_ids)
        return body

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return list(self.pool.map(self._one, requests))

    def submit(self, requests: Sequence[Request]) -> None:
        self.flight.update(self.pool.submit(self._one, r) for r in requests)

    def poll(self) -> list[Result]:
        if not self.flight:
            return []
        done, self.flight = wait(self.flight, return_when=FIRST_COMPLETED)
        return [f.result() for f in done]  # re-raises EngineUnavailable

    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, timeout=self.cfg.timeout)
            self.local.conn = conn
            with self.lock:
                self.conns.append(conn)
        return conn

    def _post(self, data: bytes, fresh: bool) -> dict:
        conn = self._conn(fresh)
        conn.request("POST", self.path, body=data, headers=self.headers)
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            raise _HttpStatus(resp.status, raw.decode("utf-8", "replace")[:300])
        return json.loads(raw)

    def _one(self, req: Request) -> Result:
        data = json.dumps(self.body(req)).encode()
        error, down = "", False
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 60.0))
            try:
                return self._result(req, self._post(data, fresh=attempt > 0))
            except _HttpStatus as e:
                error, down = str(e), False
                if e.code not in _RETRY_STATUS and e.code < 500:
                    break
            except _NO_REPLY as e:
                error, down = f"{type(e).__name__}: {e}", True
            except (ValueError, KeyError, IndexError, TypeError) as e:
                error, down = f"malformed reply: {e}", False
                break
        if down:
            raise EngineUnavailable(f"{self.cfg.base_url}: no reply after "
                                    f"{self.cfg.retries + 1} tries ({error}); start the "
                                    "server (or fix base_url) and rerun the same command")
        return Result(req.id, error=error[:500])

    def _result(self, req: Request, reply: dict) -> Result:
        choice = reply["choices"][0]
        text = choice["text"]
        usage = reply.get("usage") or {}
        n = usage.get("completion_tokens")
        if n is None:
            n = len(self.tokenizer.encode_batch([text])[0])
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        return Result(req.id, text, int(n), choice.get("finish_reason"),
                      cached_tokens=None if cached is None else int(cached))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            for conn in self.conns:
                conn.close()
