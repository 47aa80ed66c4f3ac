"""Issue 13 benchmark: the build on Ray and over S3, and ShardDataset over S3, each against
the local baseline measured in the same run.

    python bench/corpus.py            # once: bench/data/corpus (53 MB of English text)
    python bench/scaleout.py          # -> bench/data/scaleout/results.json and a table

1. ``instmix build`` (CLI, end to end) locally and with ``--executor ray`` (a local Ray it
   starts itself: a head and one worker process per core); then, in this process, a Ray
   executor started once and ``--repeats`` pairs of builds (local, Ray; fresh cache and
   output each) alternating: the first Ray build loads the tokenizer in every worker, the
   later ones find it loaded (what a user of a running cluster sees from the second build
   on). Outputs compared file for file.
2. An ``s3://`` -> ``s3://`` build (inputs, tokenizer, cache and output on a moto S3 server
   on loopback, in its own process) against the local -> local build.
3. ``ShardDataset`` over the ``s3://`` build vs the local one: shuffled ``seq_len`` 2048
   items, tokens/s (256 MiB block cache; 64 KiB blocks, and 1 MiB blocks: the default
   for a build that fits in the cache, bench/shard_blocks.py).
Fresh caches for every build. Measuring runs take ``/tmp/bench.lock`` after preparing data.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import yaml
from moto_server import MotoServer
from shard_rate import shard_rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "dolma2-tokenizer.json")


def tree(folder: str) -> dict[str, bytes]:
    out = {}
    for d, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = f.read()
    return out


def write_cfg(work: str, name: str, files: list[str], out: str, cache: str, tok: str) -> str:
    cfg = {"tokenizer": tok, "seed": 0, "output": out, "cache_dir": cache,
           "sources": [{"name": "corpus", "paths": files}]}
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def cli_build(cfg: str, *extra: str, env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "instmix", "build", "--no-progress", cfg, *extra],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.path.join(ROOT, "bench", "data", "corpus"))
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "data", "scaleout"))
    ap.add_argument("--files", type=int, default=0, help="use only the first N files")
    ap.add_argument("--items", type=int, default=3000, help="ShardDataset items per reader")
    ap.add_argument("--repeats", type=int, default=4, help="in-process local/Ray build pairs")
    ap.add_argument("--no-lock", action="store_true", help="do not wait for /tmp/bench.lock "
                    "(debugging at small scale; the figures then share the machine)")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))
    if args.files:
        files = files[:args.files]
    if not files:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    mb = sum(os.path.getsize(f) for f in files) / 1e6
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    w = args.work
    res: dict = {"files": len(files), "compressed_mb": round(mb, 1), "cores": os.cpu_count()}

    moto = MotoServer()
    endpoint = moto.endpoint
    try:
        import s3fs

        s3 = s3fs.S3FileSystem(endpoint_url=endpoint)
        s3.mkdir("bench")
        for f in files:
            s3.put_file(f, f"bench/corpus/{os.path.basename(f)}")
        s3.put_file(TOKENIZER, "bench/tok/tokenizer.json")
        s3_files = [f"s3://bench/corpus/{os.path.basename(f)}" for f in files]

        lock = open("/tmp/bench.lock", "a")
        if not args.no_lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
        res["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
        res["started_utc"] = time.strftime("%H:%M:%S", time.gmtime())
        # warm-up (page cache, tokenizer load), untimed
        cli_build(write_cfg(w, "warmup", files, f"{w}/warmup", f"{w}/c-warmup", TOKENIZER))
        # 1. local vs Ray (CLI end to end, then a warm Ray in this process)
        local_cfg = write_cfg(w, "local", files, f"{w}/local", f"{w}/c-local", TOKENIZER)
        res["local_s"] = cli_build(local_cfg)
        ray_cfg = write_cfg(w, "ray", files, f"{w}/ray", f"{w}/c-ray", TOKENIZER)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        os.environ.clear()
        os.environ.update(env)
        res["ray_cli_s"] = cli_build(ray_cfg, "--executor", "ray")
        res["ray_identical"] = tree(f"{w}/ray") == tree(f"{w}/local")

        import instmix
        from instmix.builder.executor import make_executor

        def inproc(name: str, executor=None) -> float:
            cfg = instmix.load_config(write_cfg(w, name, files, f"{w}/{name}", f"{w}/c-{name}",
                                                TOKENIZER))
            t = time.perf_counter()
            manifest = instmix.build(cfg, executor=executor)
            res["tokens"] = manifest["total_tokens"]
            return time.perf_counter() - t

        t = time.perf_counter()
        ex = make_executor("ray")  # starts a local Ray; its workers import instmix
        res["ray_start_s"] = time.perf_counter() - t
        locals_, rays = [], []
        try:
            # alternating, each build with a fresh cache and output: the first Ray build
            # loads the tokenizer in every worker, later ones find it loaded
            for k in range(args.repeats):
                locals_.append(inproc(f"local-{k}"))
                rays.append(inproc(f"warm-{k}", ex))
        finally:
            ex.close()
        res["local_inproc_runs_s"], res["ray_warm_runs_s"] = locals_, rays
        res["local_inproc_s"] = sorted(locals_)[len(locals_) // 2]
        res["ray_first_s"] = rays[0]
        later = sorted(rays[1:]) or rays
        res["ray_warm_s"] = later[len(later) // 2]
        res["warm_identical"] = all(tree(f"{w}/warm-{k}") == tree(f"{w}/local")
                                    for k in range(args.repeats))

        # 2. s3 -> s3 vs local -> local
        s3_cfg = write_cfg(w, "s3", s3_files, "s3://bench/builds/x", "s3://bench/cache",
                           "s3://bench/tok/tokenizer.json")
        res["s3_s"] = cli_build(s3_cfg)
        gen = json.loads(s3.cat_file("bench/builds/x/manifest.json"))["generation"]
        got = {p.split(gen + "/", 1)[1]: s3.cat_file(p) for p in s3.find(f"bench/builds/x/{gen}")}
        res["s3_identical"] = got == tree(f"{w}/local")

        # 3. ShardDataset: local vs s3
        res["sd_local_tok_s"], res["sd_local_open_s"], _ = shard_rate(f"{w}/local", args.items)
        res["sd_s3_tok_s"], res["sd_s3_open_s"], _ = shard_rate(
            "s3://bench/builds/x", args.items, block_bytes=64 << 10)
        res["sd_s3_1m_tok_s"], _, _ = shard_rate("s3://bench/builds/x", args.items,
                                                 block_bytes=1 << 20)
        res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        moto.close()
    res["ray_cli_speed"] = res["local_s"] / res["ray_cli_s"]
    res["ray_warm_speed"] = res["local_inproc_s"] / res["ray_warm_s"]
    res["ray_first_speed"] = res["local_inproc_s"] / res["ray_first_s"]
    res["s3_speed"] = res["local_s"] / res["s3_s"]
    res["sd_s3_ratio"] = res["sd_s3_tok_s"] / res["sd_local_tok_s"]
    with open(os.path.join(w, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    tok = res["tokens"]
    print(f"corpus: {res['files']} files, {res['compressed_mb']} MB zst, {tok:,} tokens, "
          f"{res['cores']} cores; started {res['started_utc']} UTC, load average "
          f"{res['loadavg_start']} -> {res['loadavg_end']}")
    print(f"local build (CLI)        {res['local_s']:7.1f} s  {tok / res['local_s'] / 1e6:5.2f} M tok/s")
    print(f"ray build (CLI, starts)  {res['ray_cli_s']:7.1f} s  speed x{res['ray_cli_speed']:.2f}"
          f"  identical={res['ray_identical']}")
    print(f"local build (in process) {res['local_inproc_s']:7.2f} s  median of "
          f"{res['local_inproc_runs_s']}")
    print(f"ray build, Ray running, first build {res['ray_first_s']:7.2f} s  speed "
          f"x{res['ray_first_speed']:.2f}  (Ray start {res['ray_start_s']:.1f} s, not counted)")
    print(f"ray build, Ray running, later builds {res['ray_warm_s']:7.2f} s  speed "
          f"x{res['ray_warm_speed']:.2f}  median of {res['ray_warm_runs_s']}  "
          f"identical={res['warm_identical']}")
    print(f"s3 -> s3 build (CLI)     {res['s3_s']:7.1f} s  speed x{res['s3_speed']:.2f}"
          f"  identical={res['s3_identical']}")
    print(f"ShardDataset local       {res['sd_local_tok_s'] / 1e6:7.1f} M tok/s "
          f"(open {res['sd_local_open_s']:.2f} s)")
    print(f"ShardDataset s3, 64 KiB  {res['sd_s3_tok_s'] / 1e6:7.2f} M tok/s "
          f"(open {res['sd_s3_open_s']:.2f} s)  x{res['sd_s3_ratio']:.4f}")
    print(f"ShardDataset s3, 1 MiB blocks {res['sd_s3_1m_tok_s'] / 1e6:7.2f} M tok/s  "
          f"x{res['sd_s3_1m_tok_s'] / res['sd_local_tok_s']:.4f}")


if __name__ == "__main__":
    main()
