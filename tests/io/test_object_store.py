"""Builds, verify and ShardDataset over a real S3-compatible server on loopback (moto's
server mode): the same files as a local build, committed by the manifest, retried when
the store throttles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from conftest import OLMO_TOKENIZER, ROOT, read_tree, write_corpus
from s3server import ThrottlingProxy, fresh_fs, s3_session, s3_tree

import instmix
from instmix.errors import InstmixError, VerifyError
from instmix.format.manifest import manifest_digest
from instmix.format.verify import verify
from instmix.io import fs

BUCKET = "instmix-test"


@pytest.fixture(scope="module")
def s3():
    with s3_session(BUCKET) as server:
        yield server


def _s3(s3):
    return fs.filesystem("s3://x")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, paragraphs, s3):
    """Local inputs (jsonl, zst, nested), the same files uploaded under s3://BUCKET/corpus."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, paragraphs, ends=(300, 700, 900), cut=60)
    handle = _s3(s3)
    for dirpath, _, names in os.walk(root):
        for n in names:
            local = os.path.join(dirpath, n)
            handle.put_file(local, f"{BUCKET}/corpus/{os.path.relpath(local, root)}")
    handle.put_file(OLMO_TOKENIZER, f"{BUCKET}/tok/tokenizer.json")
    return root


def _cfg(data: str, out: str, cache: str, tok: str, **kw) -> dict:
    cfg = {"tokenizer": tok, "seed": 3, "output": out, "cache_dir": cache, "shard_tokens": 9_000,
           "sources": [{"name": "web", "paths": [f"{data}/data/**/*.jsonl*"], "ratio": 0.7,
                        "max_repetition": 2},
                       {"name": "qa", "kind": "openorca", "paths": [f"{data}/qa/*.jsonl"],
                        "ratio": 0.3, "loss": "responses", "max_repetition": 3}]}
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def local_build(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    cfg = _cfg(str(corpus), str(tmp / "out"), str(tmp / "cache"), OLMO_TOKENIZER)
    m = instmix.build(instmix.load_config(cfg))
    return str(tmp / "out"), m


@pytest.fixture(scope="module")
def s3_build(s3, corpus, local_build):
    url = f"s3://{BUCKET}/builds/x"
    cfg = _cfg(f"s3://{BUCKET}/corpus", url, f"s3://{BUCKET}/cache",
               f"s3://{BUCKET}/tok/tokenizer.json")
    stats: dict = {}
    m = instmix.build(instmix.load_config(cfg), stats=stats)
    return url, m, cfg


def _generation(s3, url: str) -> str:
    return json.loads(_s3(s3).cat_file(f"{url.removeprefix('s3://')}/manifest.json"))[
        "generation"]


def test_s3_to_s3_build_equals_the_local_build_file_for_file(s3, local_build, s3_build):
    local, lm = local_build
    url, m, _ = s3_build
    assert m == lm
    gen = _generation(s3, url)
    tree = s3_tree(url)
    committed = {k[len(gen) + 1:]: v for k, v in tree.items() if k.startswith(gen + "/")}
    assert committed == read_tree(local)  # every file, byte for byte (ids included)
    # the prefix holds the commit point and that one generation only
    assert set(tree) == {"manifest.json"} | {f"{gen}/{k}" for k in committed}
    top = json.loads(tree["manifest.json"])
    assert top["manifest_sha256"] == manifest_digest(top)  # sealed with its generation
    assert top.pop("generation") == gen
    assert {k: v for k, v in top.items() if k != "manifest_sha256"} == \
        {k: v for k, v in lm.items() if k != "manifest_sha256"}


def test_remote_cache_units_are_reused(s3, s3_build):
    url, m, cfg = s3_build
    handle = _s3(s3)
    units = [p for p in handle.ls(f"{BUCKET}/cache") if not p.rsplit("/", 1)[1].startswith(".")]
    assert len(units) == 3  # a.jsonl, sub/b.jsonl.zst, q.jsonl
    assert all(handle.exists(f"{u}/meta.json") for u in units)
    stamps = {u: handle.info(f"{u}/meta.json")["LastModified"] for u in units}
    instmix.build(instmix.load_config({**cfg, "output": f"s3://{BUCKET}/builds/again"}))
    assert {u: handle.info(f"{u}/meta.json")["LastModified"] for u in units} == stamps


def test_verify_over_s3_passes_and_names_a_flipped_byte(s3, s3_build):
    url, m, cfg = s3_build
    assert verify(url) == {"shards": len(m["shards"]), "documents": m["documents"],
                           "tokens": m["total_tokens"]}
    # verify a copy, flipping one byte of shard 1 there
    copy = f"s3://{BUCKET}/builds/flipped"
    instmix.build(instmix.load_config({**cfg, "output": copy}))
    gen = _generation(s3, copy)
    key = f"{BUCKET}/builds/flipped/{gen}/{m['shards'][1]['path']}"
    handle = _s3(s3)
    data = bytearray(handle.cat_file(key))
    data[101] ^= 0x01
    handle.pipe_file(key, bytes(data))
    with pytest.raises(VerifyError, match=r"part-00001.npy: .*(sha256|EOS|vocab)"):
        verify(copy)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bad = subprocess.run([sys.executable, "-m", "instmix", "verify", copy], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "part-00001.npy" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_shard_dataset_over_s3_serves_the_local_sequences(s3, local_build, s3_build):
    from instmix.serve.shard_dataset import ShardDataset

    local, _ = local_build
    url, _, _ = s3_build
    for drop_last in (True, False):
        a = ShardDataset(local, 256, seed=5, drop_last=drop_last)
        b = ShardDataset(url, 256, seed=5, drop_last=drop_last, block_bytes=4096,
                         cache_bytes=64 << 10)
        assert a.fingerprint == b.fingerprint and len(a) == len(b)
        xs, ys = list(a), list(b)
        assert len(xs) == len(ys) > 10
        for x, y in zip(xs, ys):
            for k in x:
                assert np.array_equal(x[k].numpy(), y[k].numpy()), k
    # resume from a saved state: the rest equals the uninterrupted run
    b = ShardDataset(url, 256, seed=5, block_bytes=4096, cache_bytes=64 << 10)
    it = iter(b)
    head = [next(it) for _ in range(7)]
    state = b.state_dict()
    c = ShardDataset(url, 256, seed=5, block_bytes=4096, cache_bytes=64 << 10)
    c.load_state_dict(state)
    rest = list(c)
    full = list(ShardDataset(local, 256, seed=5))
    assert len(head) + len(rest) == len(full)
    for x, y in zip(head + rest, full):
        assert np.array_equal(x["input_ids"].numpy(), y["input_ids"].numpy())
    # bounded: the block cache never held more than its budget, and reads were ranged
    cache = c._blocks
    assert cache is not None and cache.held <= 64 << 10 and cache.requests > 0


def test_kill_9_during_an_s3_build_keeps_the_committed_build(s3, corpus, s3_build, tmp_path):
    url, m, cfg = s3_build
    out = f"s3://{BUCKET}/builds/kill"
    instmix.build(instmix.load_config({**cfg, "output": out}))
    old_gen = _generation(s3, out)
    old_top = _s3(s3).cat_file(f"{BUCKET}/builds/kill/manifest.json")
    # a different, slower rebuild (reference tokenizer, fresh cache): kill it once its
    # generation has files but before it commits
    new = {**cfg, "output": out, "seed": 11, "cache_dir": str(tmp_path / "cache"),
           "tokenizer": {"path": cfg["tokenizer"], "backend": "hf"}, "shard_tokens": 2_000}
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(new), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    handle = _s3(s3)
    proc = subprocess.Popen([sys.executable, "-m", "instmix", "build", "--no-progress",
                             str(path)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    prefix = f"{BUCKET}/builds/kill"
    deadline = time.monotonic() + 120
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        handle.invalidate_cache()
        gens = [p for p in handle.ls(prefix) if p.rsplit("/", 1)[1].startswith("gen-")
                and not p.endswith(old_gen)]
        if gens and handle.find(gens[0]):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
            break
        time.sleep(0.02)
    assert killed, "the rebuild finished before its generation appeared"
    handle.invalidate_cache()
    assert handle.cat_file(f"{prefix}/manifest.json") == old_top
    assert verify(out)["tokens"] == m["total_tokens"]
    stale = [p for p in handle.ls(prefix) if "gen-" in p and not p.endswith(old_gen)]
    assert stale  # the killed build's uncommitted files are there ...
    r = subprocess.run([sys.executable, "-m", "instmix", "build", "--no-progress", str(path)],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    handle.invalidate_cache()
    gens = [p.rsplit("/", 1)[1] for p in handle.ls(prefix) if "gen-" in p]
    assert gens == [_generation(s3, out)]  # ... and go, with the old one, after the commit
    assert verify(out)["documents"] > 0


def test_throttled_requests_are_retried_and_counted(s3, corpus, local_build, tmp_path,
                                                    monkeypatch):
    local, lm = local_build
    with ThrottlingProxy(s3.endpoint, every=4) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        fresh_fs()
        try:
            out = f"s3://{BUCKET}/builds/throttled"
            cfg = _cfg(f"s3://{BUCKET}/corpus", out, f"s3://{BUCKET}/cache-throttled",
                       f"s3://{BUCKET}/tok/tokenizer.json")
            stats: dict = {}
            m = instmix.build(instmix.load_config(cfg), stats=stats)
            assert proxy.throttled > 5
            assert stats["storage_retries"] >= proxy.throttled
            assert m == lm
            assert verify(out)["tokens"] == lm["total_tokens"]
        finally:
            monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
            fresh_fs()


def test_storage_options_in_the_config_reach_the_client(s3, corpus, local_build, monkeypatch):
    local, lm = local_build
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    fresh_fs()
    try:
        cfg = _cfg(f"s3://{BUCKET}/corpus", f"s3://{BUCKET}/builds/opts",
                   f"s3://{BUCKET}/cache", f"s3://{BUCKET}/tok/tokenizer.json",
                   storage_options={"s3": {"endpoint_url": s3.endpoint}})
        assert instmix.build(instmix.load_config(cfg)) == lm
    finally:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        fresh_fs()


def test_bad_urls_are_one_line_errors(s3, tmp_path):
    with pytest.raises(InstmixError, match=r"s3://instmix-test/nowhere: not an instmix build"):
        verify(f"s3://{BUCKET}/nowhere")
    with pytest.raises(InstmixError, match=r"sources\[0\]\.paths.*matches no file"):
        instmix.build(instmix.load_config(_cfg(f"s3://{BUCKET}/missing", str(tmp_path / "o"),
                                               str(tmp_path / "c"), OLMO_TOKENIZER)))
    with pytest.raises(InstmixError, match="storage_options"):
        instmix.load_config(_cfg("x", "y", "z", OLMO_TOKENIZER, storage_options=["s3"]))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "instmix", "verify", "s3://no-such-bucket-x/b"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "no-such-bucket-x" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_commands_take_s3_urls(s3, corpus, local_build, s3_build, tmp_path):
    """inspect, report, export and sweep over s3:// (the CLI, as a user runs it)."""
    local, lm = local_build
    url, m, cfg = s3_build
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def run(*args):
        r = subprocess.run([sys.executable, "-m", "instmix", *args], env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    shown = run("inspect", url, "-n", "2", "--no-summary")
    assert shown == run("inspect", local, "-n", "2", "--no-summary")  # same documents
    assert "--- part-00000.npy [0:" in shown
    run("report", url, "--out", str(tmp_path / "report"))
    assert (tmp_path / "report" / "report.html").is_file()
    run("export", "olmo-core", url, "--out", str(tmp_path / "olmo"), "--seq-len", "512")
    yaml_text = "\n".join(p.read_text() for p in (tmp_path / "olmo").glob("*.yaml"))
    gen = _generation(s3, url)
    assert f"{url}/{gen}/part-00000.npy" in yaml_text  # the trainer reads the committed files
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = f"s3://{BUCKET}/sweeps/a"
    run("sweep", str(path), "--ratios", "web=0.5,0.8", "--out", out, "--no-progress")
    for label in ("web=0.5", "web=0.8"):
        assert verify(f"{out}/{label}")["tokens"] > 0
    run("report", out, "--out", str(tmp_path / "report-sweep"))


def test_streaming_mixture_reads_s3_inputs(s3, corpus):
    from instmix.serve.streaming import StreamingMixture

    def items(data, tok):
        cfg = instmix.load_config(_cfg(data, "unused", "unused", tok))
        return [x["input_ids"].numpy() for _, x in zip(range(40), StreamingMixture(cfg, 128))]

    a = items(str(corpus), OLMO_TOKENIZER)
    b = items(f"s3://{BUCKET}/corpus", f"s3://{BUCKET}/tok/tokenizer.json")
    assert len(a) == len(b) == 40
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_shard_dataset_default_blocks_fit_the_cache_and_serve_the_same(s3, local_build,
                                                                       s3_build):
    """Default ``block_bytes``: 1 MiB when the whole build fits in the cache, else 64 KiB
    (>= 2 items) blocks; the cache stays within ``cache_bytes`` either way."""
    from instmix.serve.shard_dataset import ShardDataset

    local, _ = local_build
    url, _, _ = s3_build
    want = [x["input_ids"].numpy() for x in ShardDataset(local, 256, seed=5)]
    fits = ShardDataset(url, 256, seed=5)
    small = ShardDataset(url, 256, seed=5, cache_bytes=96 << 10)  # less than the build
    assert fits._blocks_spec == (1 << 20, 256 << 20) and small._blocks_spec == (64 << 10, 96 << 10)
    for ds in (fits, small):
        got = [x["input_ids"].numpy() for x in ds]
        assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
        assert ds._blocks.held <= ds._blocks_spec[1]
    assert small._blocks.requests > fits._blocks.requests  # misses cost requests
