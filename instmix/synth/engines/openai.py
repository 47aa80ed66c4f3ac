"""An OpenAI-compatible ``/v1/completions`` server (``vllm serve``, SGLang, ...).

One HTTP request per prompt, at most ``concurrency`` in flight. ``prompt_format: tokens``
(default) sends the prompt as token ids; ``text`` sends the text with
``add_special_tokens: false`` so the server adds no second BOS. Connection errors,
timeouts, 408/409/429 and 5xx responses are retried up to ``retries`` times with
exponential back-off; other errors fail that prompt only.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from instmix.errors import InstmixError

from .base import Engine, Request, Result

_RETRY_STATUS = {408, 409, 429}


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, cfg, tokenizer):
        super().__init__(cfg, tokenizer)
        self.url = cfg.base_url + "/completions"
        self.headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise InstmixError(f"synthesizer.api_key_env: environment variable "
                                   f"{cfg.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        self.backoff = float(cfg.options.get("retry_backoff", 1.0))
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency,
                                       thread_name_prefix="instmix-openai")

    def body(self, req: Request) -> dict:
        body = {"model": self.cfg.model, "max_tokens": self.cfg.max_new_tokens,
                "temperature": 0.0, "n": 1, "stream": False}
        if self.cfg.prompt_format == "tokens":
            body["prompt"] = list(req.prompt_ids)
        else:
            body["prompt"] = req.prompt
            body["add_special_tokens"] = False
        return body

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return list(self.pool.map(self._one, requests))

    def _one(self, req: Request) -> Result:
        data = json.dumps(self.body(req)).encode()
        error = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 60.0))
            http = urllib.request.Request(self.url, data=data, headers=self.headers,
                                          method="POST")
            try:
                with urllib.request.urlopen(http, timeout=self.cfg.timeout) as resp:
                    reply = json.loads(resp.read())
                return self._result(req, reply)
            except urllib.error.HTTPError as e:
                error = f"HTTP {e.code}: {_detail(e)}"
                if e.code not in _RETRY_STATUS and e.code < 500:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                error = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except (ValueError, KeyError, IndexError, TypeError) as e:
                error = f"malformed reply: {e}"
                break
        return Result(req.id, error=error[:500])

    def _result(self, req: Request, reply: dict) -> Result:
        choice = reply["choices"][0]
        text = choice["text"]
        usage = reply.get("usage") or {}
        n = usage.get("completion_tokens")
        if n is None:
            n = len(self.tokenizer.encode_batch([text])[0])
        return Result(req.id, text, int(n), choice.get("finish_reason"))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _detail(err: urllib.error.HTTPError) -> str:
    try:
        return err.read().decode("utf-8", "replace")[:300]
    except Exception:
        return str(err.reason)
