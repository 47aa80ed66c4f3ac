"""``instmix augment`` against a real local OpenAI-compatible HTTP server that dies mid-run:
the run stops with one line and a non-zero exit, nothing is checkpointed as failed, and
resuming against a live server writes exactly what an uninterrupted run writes."""

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from instmix.synth.config import load_augment_config
from instmix.synth.runner import augment
from instmix.synth.tokenizer import SynthTokenizer

from .synth_helpers import read_parts, sample_texts, write_jsonl
from .synth_scripted import script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CON = re.compile(r"<CON> (.*?) </CON>", re.S)


class SynthServer:
    """/v1/completions answering in the synthesizer's format; after ``die_after``
    requests it drops every connection and stops listening."""

    def __init__(self, tokdir, die_after=None):
        tok = SynthTokenizer(tokdir)
        self.count, self.dead = 0, False
        self.lock = threading.Lock()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with srv.lock:
                    srv.count += 1
                    if die_after is not None and srv.count > die_after and not srv.dead:
                        srv.dead = True
                        threading.Thread(target=srv.stop, daemon=True).start()
                    dead = srv.dead
                if dead:
                    self.close_connection = True  # no reply: the client sees a reset
                    return
                prompt = tok.decode(body["prompt"], skip_special_tokens=False)
                text = script(_CON.findall(prompt)[-1])
                raw = json.dumps({"choices": [{"text": text, "finish_reason": "stop"}],
                                  "usage": {"completion_tokens": len(
                                      tok.encode_batch([text])[0]) + 1}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _config(tmp, tokdir, url, out):
    return {"synthesizer": {"engine": "openai", "model": "synth", "tokenizer": tokdir,
                            "base_url": url, "max_model_len": 256, "max_new_tokens": 32,
                            "concurrency": 4, "retries": 1, "timeout": 10,
                            "options": {"retry_backoff": 0.01}},
            "rounds": 2, "block_size": 10, "checkpoint_every": 3,
            "sources": [{"name": "web", "paths": ["in.jsonl"]}], "output": out}


def _files(folder):
    return {n: open(os.path.join(folder, n), "rb").read()
            for n in sorted(os.listdir(folder)) if n.endswith(".jsonl.zst")}


def test_server_dying_mid_run_stops_then_resumes(tmp_path, tiny_tokenizer):
    write_jsonl(tmp_path / "in.jsonl", sample_texts(30))
    live = SynthServer(tiny_tokenizer)
    ref = load_augment_config(_config(tmp_path, tiny_tokenizer, live.url, "ref"),
                              base_dir=str(tmp_path))
    assert augment(ref)["complete"]
    dying = SynthServer(tiny_tokenizer, die_after=14)
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, tiny_tokenizer, dying.url, "run")))
    r = subprocess.run([sys.executable, "-m", "instmix", "augment", str(path), "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith(f"instmix: error: {dying.url}: no reply after 2 tries")
    out = tmp_path / "run"
    parts = read_parts(str(out))
    assert parts, "parts finished before the server died are kept"
    assert all(e["status"] == "ok" for es in parts.values() for e in es)  # none failed
    assert len(_files(str(out))) < len(_files(ref.output))
    # resume against a live server (another address: base_url may change)
    path.write_text(yaml.safe_dump(_config(tmp_path, tiny_tokenizer, live.url, "run")))
    r = subprocess.run([sys.executable, "-m", "instmix", "augment", str(path), "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _files(str(out)) == _files(ref.output)
    live.stop()
