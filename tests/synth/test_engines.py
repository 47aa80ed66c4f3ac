"""Engines against their documented APIs: vLLM (a fake ``vllm`` module that records what
it is given), an OpenAI-compatible server (a real HTTP server on 127.0.0.1), and Hugging
Face ``generate`` with a tiny random model."""

import json
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instmix.errors import InstmixError
from instmix.synth.config import SynthesizerConfig
from instmix.synth.engines.base import EngineUnavailable, Request, create_engine, run_batches
from instmix.synth.tokenizer import SynthTokenizer

OUT = "<QUE> Who? <ANS> Ann </END>"


# ---------------------------------------------------------------- vLLM ----------------

class FakeVllm:
    """Records LLM(...) kwargs and generate(...) calls; answers like vLLM's RequestOutput."""

    def __init__(self, answer_ids, max_len):
        self.answer_ids, self.max_len = answer_ids, max_len
        self.llm_kwargs, self.params, self.calls = None, None, []
        self.reverse_batches = False
        fake = self
        mod = types.ModuleType("vllm")

        class SamplingParams:
            def __init__(self, **kw):
                fake.params = kw

        class LLM:
            def __init__(self, **kw):
                fake.llm_kwargs = kw

            def generate(self, prompts, sampling_params=None, *, use_tqdm=True, **kw):
                fake.calls.append({"prompts": prompts, "params": sampling_params,
                                   "use_tqdm": use_tqdm})
                for p in prompts:  # vLLM >= 0.8 rejects the whole call
                    if len(p["prompt_token_ids"]) > fake.max_len:
                        raise ValueError("prompt too long")
                outs = [types.SimpleNamespace(
                    request_id=str(i), prompt=None, prompt_token_ids=p["prompt_token_ids"],
                    finished=True, outputs=[types.SimpleNamespace(
                        index=0, text="", token_ids=list(fake.answer_ids),
                        finish_reason="stop")]) for i, p in enumerate(prompts)]
                return outs[::-1] if fake.reverse_batches and len(outs) > 1 else outs

        class Engine:
            """The step loop: each step finishes the oldest unfinished request."""

            def __init__(self):
                self.queue, self.added = [], []
                self.steps = 0
                self.vllm_config = types.SimpleNamespace(
                    scheduler_config=types.SimpleNamespace(max_num_seqs=8),
                    cache_config=types.SimpleNamespace(num_gpu_blocks=100, block_size=16))

            def add_request(self, request_id, prompt, params):
                if len(prompt["prompt_token_ids"]) > fake.max_len:
                    raise ValueError("prompt too long")
                self.added.append((request_id, prompt, params))
                self.queue.append((request_id, prompt["prompt_token_ids"]))

            def has_unfinished_requests(self):
                return bool(self.queue)

            def step(self):
                self.steps += 1
                if fake.die_at_step and self.steps >= fake.die_at_step:
                    raise RuntimeError("EngineDeadError: engine core died")
                if not self.queue or self.steps % 2:
                    return []  # a decode step where nothing finishes
                rid, ids = self.queue.pop(0)
                reason = "abort" if fake.abort_token in ids else "stop"
                return [types.SimpleNamespace(
                    request_id=rid, prompt_token_ids=ids, finished=True,
                    num_cached_tokens=len(ids) // 2, outputs=[types.SimpleNamespace(
                        index=0, text="", token_ids=list(fake.answer_ids),
                        finish_reason=reason)])]

        fake.die_at_step, fake.abort_token = 0, -1
        fake.engine = Engine()
        LLM.llm_engine = fake.engine
        mod.LLM, mod.SamplingParams = LLM, SamplingParams
        self.module = mod


@pytest.fixture
def tok(tiny_tokenizer):
    return SynthTokenizer(tiny_tokenizer)


@pytest.fixture
def fake_vllm(monkeypatch, tok):
    fake = FakeVllm(tok.encode_batch([OUT])[0] + [tok.eos_id], max_len=100)
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    return fake


def _cfg(engine, tokdir, **kw):
    return SynthesizerConfig(engine=engine, model=kw.pop("model", "/models/synth"),
                             tokenizer=tokdir, **kw)


def test_vllm_request_building(fake_vllm, tok, tiny_tokenizer):
    cfg = _cfg("vllm", tiny_tokenizer, engine_args={"enforce_eager": True})
    engine = create_engine(cfg, tok)
    assert fake_vllm.llm_kwargs == {
        "model": "/models/synth", "tokenizer": tiny_tokenizer, "max_model_len": 4096,
        "enable_prefix_caching": True, "dtype": "auto", "gpu_memory_utilization": 0.9,
        "tensor_parallel_size": 1, "seed": 0, "enforce_eager": True}
    assert fake_vllm.params == {"temperature": 0.0, "max_tokens": 400, "detokenize": False}
    reqs = [Request("a", [tok.bos_id, 5, 6, 7]), Request("b", [tok.bos_id, 8])]
    res = engine.generate(reqs)
    call = fake_vllm.calls[-1]
    assert call["prompts"] == [{"prompt_token_ids": [tok.bos_id, 5, 6, 7]},
                               {"prompt_token_ids": [tok.bos_id, 8]}]
    assert call["use_tqdm"] is False
    assert [(r.id, r.text, r.output_tokens, r.finish_reason) for r in res] == [
        ("a", OUT, len(fake_vllm.answer_ids), "stop"), ("b", OUT, len(fake_vllm.answer_ids),
                                                        "stop")]


def test_vllm_ngram_speculation_passes_through_checked(fake_vllm, tok, tiny_tokenizer, tmp_path):
    from instmix.errors import ConfigError

    spec = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4,
            "prompt_lookup_min": 2}
    cfg = SynthesizerConfig.parse("<dict>", {"engine": "vllm", "model": "/m",
                                             "tokenizer": tiny_tokenizer,
                                             "engine_args": {"speculative_config": spec}},
                                  tmp_path)
    create_engine(cfg, tok)
    assert fake_vllm.llm_kwargs["speculative_config"] == spec
    for bad, message in [({"method": "ngram"}, "num_speculative_tokens: expected a number"),
                         ({**spec, "prompt_lookup_min": 5}, "prompt_lookup_min: 5 is more"),
                         ({**spec, "num_speculative_tokens": 0}, "must be >= 1"),
                         ("ngram", "expected a mapping with a method")]:
        with pytest.raises(ConfigError, match=message):
            SynthesizerConfig.parse("<dict>", {"engine": "vllm", "model": "/m",
                                               "engine_args": {"speculative_config": bad}},
                                    tmp_path)


def test_vllm_over_long_prompt_does_not_sink_the_batch(fake_vllm, tok, tiny_tokenizer):
    engine = create_engine(_cfg("vllm", tiny_tokenizer, max_model_len=150,
                                max_new_tokens=50), tok)
    reqs = [Request("ok1", [1] * 20), Request("long", [1] * 101), Request("ok2", [1] * 30)]
    res = run_batches(engine, [reqs], limit=100)
    assert [len(p["prompt_token_ids"]) for p in fake_vllm.calls[-1]["prompts"]] == [20, 30]
    assert res["ok1"].text == OUT and res["ok2"].text == OUT
    assert "exceeds the limit" in res["long"].error


def test_vllm_outputs_checked_against_their_prompts(fake_vllm, tok, tiny_tokenizer):
    engine = create_engine(_cfg("vllm", tiny_tokenizer), tok)
    fake_vllm.reverse_batches = True
    reqs = [Request("a", [1, 5]), Request("b", [1, 6, 6])]
    with pytest.raises(InstmixError, match="does not match"):
        engine.generate(reqs)
    res = run_batches(engine, [reqs], limit=1000)  # isolation: each prompt on its own
    assert res["a"].text == OUT and res["b"].text == OUT and res["a"].error is None


def test_vllm_step_loop_returns_each_result_as_it_finishes(fake_vllm, tok, tiny_tokenizer):
    engine = create_engine(_cfg("vllm", tiny_tokenizer, max_model_len=150,
                                max_new_tokens=50), tok)
    assert engine.capacity == 9 and engine.kv_tokens == 1600  # max_num_seqs + 1/8
    engine.submit([Request("a", [tok.bos_id, 5]), Request("long", [1] * 101),
                   Request("b", [tok.bos_id, 6, 7, 8])])
    (refused,) = engine.poll()
    assert refused.id == "long" and "too long" in refused.error
    (first,) = engine.poll()
    engine.submit([Request("c", [tok.bos_id, 9])])  # joins while b is still running
    got = [first] + engine.poll() + engine.poll()
    assert [r.id for r in got] == ["a", "b", "c"]
    assert all(r.text == OUT and r.error is None for r in got)
    assert [r.cached_tokens for r in got] == [1, 2, 1]
    added = fake_vllm.engine.added
    assert [a[1] for a in added] == [{"prompt_token_ids": [tok.bos_id, 5]},
                                     {"prompt_token_ids": [tok.bos_id, 6, 7, 8]},
                                     {"prompt_token_ids": [tok.bos_id, 9]}]
    assert engine.poll() == []


def test_vllm_abort_fails_the_prompt_and_a_dead_engine_stops(fake_vllm, tok, tiny_tokenizer):
    engine = create_engine(_cfg("vllm", tiny_tokenizer), tok)
    fake_vllm.abort_token = 99
    engine.submit([Request("a", [tok.bos_id, 99])])
    (res,) = engine.poll()
    assert res.error == "vLLM finish_reason abort" and res.text == ""
    fake_vllm.die_at_step = fake_vllm.engine.steps + 1
    engine.submit([Request("b", [tok.bos_id, 5])])
    with pytest.raises(EngineUnavailable, match="vLLM engine failed: RuntimeError"):
        engine.poll()


# ---------------------------------------------------------------- OpenAI --------------

class Server:
    """A /v1/completions endpoint with scripted failures and an in-flight counter."""

    def __init__(self, fail_first=0, bad_token=None, delay=0.05, keep_alive=False):
        self.bodies, self.headers, self.clients = [], [], set()
        self.attempts = {}
        self.inflight = self.peak = 0
        self.lock = threading.Lock()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = json.dumps(body["prompt"])
                with srv.lock:
                    srv.clients.add(self.client_address)
                    srv.bodies.append(body)
                    srv.headers.append(dict(self.headers))
                    srv.attempts[key] = srv.attempts.get(key, 0) + 1
                    n = srv.attempts[key]
                    srv.inflight += 1
                    srv.peak = max(srv.peak, srv.inflight)
                time.sleep(delay)
                with srv.lock:
                    srv.inflight -= 1
                if self.path != "/v1/completions":
                    return self._send(404, {"error": "no such path"})
                if bad_token is not None and bad_token in (body["prompt"] or []):
                    return self._send(400, {"error": "prompt too long"})
                if n <= fail_first:
                    return self._send(503, {"error": "busy"})
                self._send(200, {"choices": [{"text": OUT, "finish_reason": "stop"}],
                                 "usage": {"completion_tokens": 7}})

            def _send(self, code, data):
                raw = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    made = []

    def make(**kw):
        made.append(Server(**kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _openai(tokdir, tok, url, **kw):
    opts = {"retry_backoff": 0.01}
    cfg = _cfg("openai", tokdir, model="synth", base_url=url, options=opts, **kw)
    return create_engine(cfg, tok)


def test_openai_token_prompts_and_bounded_concurrency(server_factory, tok, tiny_tokenizer):
    srv = server_factory()
    engine = _openai(tiny_tokenizer, tok, srv.url, concurrency=2, max_new_tokens=77)
    reqs = [Request(f"r{i}", [tok.bos_id, 10 + i, 11]) for i in range(8)]
    res = engine.generate(reqs)
    assert [r.id for r in res] == [f"r{i}" for i in range(8)]
    assert all(r.text == OUT and r.output_tokens == 7 and r.error is None for r in res)
    assert srv.peak == 2
    got = sorted(srv.bodies, key=lambda b: b["prompt"][1])
    assert got[0] == {"model": "synth", "prompt": [tok.bos_id, 10, 11], "max_tokens": 77,
                      "temperature": 0.0, "n": 1, "stream": False}
    engine.close()


def test_openai_text_prompts_add_no_special_tokens(server_factory, tok, tiny_tokenizer,
                                                   monkeypatch):
    monkeypatch.setenv("SYNTH_KEY", "sekrit")
    srv = server_factory()
    engine = _openai(tiny_tokenizer, tok, srv.url, prompt_format="text",
                     api_key_env="SYNTH_KEY")
    engine.generate([Request("a", [1, 2, 3], "<s> <CON> x </CON>\n\n")])
    assert srv.bodies[0]["prompt"] == "<s> <CON> x </CON>\n\n"
    assert srv.bodies[0]["add_special_tokens"] is False
    assert srv.headers[0]["Authorization"] == "Bearer sekrit"


def test_openai_retries_then_succeeds(server_factory, tok, tiny_tokenizer):
    srv = server_factory(fail_first=2)
    engine = _openai(tiny_tokenizer, tok, srv.url, retries=3)
    res = engine.generate([Request("a", [1, 5]), Request("b", [1, 6])])
    assert all(r.text == OUT for r in res)
    assert sorted(srv.attempts.values()) == [3, 3]


def test_openai_failures_stay_with_their_prompt(server_factory, tok, tiny_tokenizer):
    srv = server_factory(bad_token=999)
    engine = _openai(tiny_tokenizer, tok, srv.url, retries=3)
    res = {r.id: r for r in engine.generate([Request("ok", [1, 5]),
                                             Request("bad", [1, 999])])}
    assert res["ok"].text == OUT and res["ok"].error is None
    assert res["bad"].error.startswith("HTTP 400") and res["bad"].text == ""
    assert srv.attempts[json.dumps([1, 999])] == 1  # a client error is not retried


def test_openai_gives_up_after_retries(server_factory, tok, tiny_tokenizer):
    srv = server_factory(fail_first=100)
    engine = _openai(tiny_tokenizer, tok, srv.url, retries=2)
    (res,) = engine.generate([Request("a", [1, 5])])
    assert res.error.startswith("HTTP 503") and srv.attempts[json.dumps([1, 5])] == 3


def test_openai_unreachable_server_stops(tok, tiny_tokenizer):
    engine = _openai(tiny_tokenizer, tok, "http://127.0.0.1:9/v1", retries=1, timeout=2)
    with pytest.raises(EngineUnavailable, match=r"127.0.0.1:9/v1: no reply after 2 tries "
                       r"\(ConnectionRefusedError"):
        engine.generate([Request("a", [1, 5])])


def test_openai_window_on_persistent_connections(server_factory, tok, tiny_tokenizer):
    assert SynthesizerConfig().concurrency == 256
    srv = server_factory(keep_alive=True, delay=0.02)
    engine = _openai(tiny_tokenizer, tok, srv.url, concurrency=4)
    assert engine.capacity == 4
    reqs = [Request(f"r{i}", [tok.bos_id, 10 + i]) for i in range(24)]
    engine.submit(reqs[:4])
    got, k = [], 4
    while len(got) < len(reqs):
        done = engine.poll()
        got += done
        engine.submit(reqs[k:k + len(done)])  # refill the window as results come
        k += len(done)
    assert sorted(r.id for r in got) == sorted(r.id for r in reqs)
    assert srv.peak == 4 and len(srv.bodies) == 24
    assert len(srv.clients) <= 4  # one kept-alive connection per worker, not per request
    engine.close()


# ---------------------------------------------------------------- transformers --------

def test_transformers_engine_is_greedy_and_batch_independent(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    tok = SynthTokenizer(tiny_model)
    cfg = _cfg("transformers", tiny_model, model=tiny_model, max_new_tokens=8, batch_size=4,
               device="cpu", threads=1)
    engine = create_engine(cfg, tok)
    prompts = [[tok.bos_id] + tok.encode_batch([t])[0] for t in
               ("The river runs", "A much longer prompt about farms and towns and the sea",
                "def f(x):")]
    batched = engine.generate([Request(str(i), p) for i, p in enumerate(prompts)])
    single = [engine.generate([Request(str(i), p)])[0] for i, p in enumerate(prompts)]
    longest_first = sorted(range(3), key=lambda i: -len(prompts[i]))
    assert [r.id for r in batched] == [str(i) for i in longest_first]
    assert {r.id: r.text for r in batched} == {r.id: r.text for r in single}
    # greedy: the same tokens as an argmax loop over the model's logits
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    ids = list(prompts[0])
    new = []
    with torch.inference_mode():
        for _ in range(8):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == tok.eos_id:
                break
            ids.append(nxt)
            new.append(nxt)
    r0 = single[0]
    assert r0.text == tok.decode(new) and r0.output_tokens == len(new) + (len(new) < 8)
