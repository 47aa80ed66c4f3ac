"""End-to-end build throughput against the raw tokenizers, in one run (issue 12).

    python bench/corpus.py && python bench/build.py     # measures under flock /tmp/bench.lock

On the benchmark corpus (``bench/corpus.py``, 53 MB of real English text), OLMo 2's dolma2
tokenizer (``tests/fixtures/dolma2-tokenizer.json``), every figure from this one run:

- raw tokenizers on the same texts already in memory, all cores, each in a fresh
  subprocess, load time excluded: gigatoken ``encode_batch`` (one call over every text)
  and Hugging Face ``encode_batch_fast`` (batches of 1,024);
- ``instmix build`` end to end (fresh subprocess, cold token cache, default ``auto``
  backend) of the 4x corpus: the corpus plus three copies whose documents are changed
  (lines rotated, a header line added) so that no cache recognises them. Throughput is
  build tokens / (wall - wall of a one-document build); the one-document build is the
  start-up, reported on its own;
- the same on short documents: OpenOrca-like rows (question, response) of at most 300
  tokens cut from the corpus's lines, against raw gigatoken; ratio and per-document
  overhead in microseconds ((net build wall - raw gigatoken time) / documents);
- scaling: the 4x build on 1 core vs 2 cores (``taskset``), same formula;
- peak memory of the build's process tree (sum over the build process and its workers,
  sampled from /proc every 20 ms) at 1x and 4x;
- hf, tiktoken and gigatoken builds of the whole corpus byte-identical (the script fails
  otherwise), with the documents checked;
- on paper: hours for 100B tokens on one 64-core node from the 1-core figure.

Raw gigatoken and the 4x builds (start-ups included) run ``--reps`` times (default 5),
interleaved, and the ratios use each figure's median: on the benchmark VM the first
raw run of a session has taken twice as long as the later ones, and one build varies by
20-30%, so a single run can put a ratio anywhere. Every repetition is printed.
The rank table of the tokenizer (``tokenizer.rank_cache``) is built on the first fast
load on a machine and read afterwards; the raw runs never use it.

``--quick`` runs everything on a small slice (for debugging the script; not a measurement).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
DOLMA2 = os.path.join(ROOT, "tests", "fixtures", "dolma2-tokenizer.json")


def load_rows(files: list[str]) -> list[dict]:
    import zstandard

    rows = []
    for path in files:
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().decompress(f.read(), max_output_size=1 << 31)
        rows.extend(json.loads(line) for line in data.splitlines() if line)
    return rows


def load_texts(files: list[str]) -> list[str]:
    """The text of every document (openorca rows formatted as instmix does)."""
    return [r["text"] if "text" in r else f"{r['question']} {r['response']}"
            for r in load_rows(files)]


def write_zst(path: str, rows: list[dict]) -> None:
    import zstandard

    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    with open(path, "wb") as f:
        f.write(zstandard.ZstdCompressor(level=3).compress(data))


def changed_copy(rows: list[dict], k: int) -> list[dict]:
    """Copy ``k`` of the corpus: each document's lines rotated by k quarters, a header added."""
    out = []
    for r in rows:
        lines = r["text"].split("\n")
        cut = len(lines) * k // 4
        out.append({"id": f"copy{k}/{r['id']}",
                    "text": f"[copy {k}] {r['id']}\n" + "\n".join(lines[cut:] + lines[:cut])})
    return out


def short_rows(rows: list[dict], want: int, tokenizer: str) -> list[dict]:
    """OpenOrca-like rows of <= 300 tokens (as built, EOS included): a question of 1-2
    lines, a response of 1-4, from the corpus's lines; longer rows are left out."""
    from instmix.config import TokenizerSpec
    from instmix.tokenize.encoder import Encoder
    from instmix.tokenize.facts import load_tokenizer_info

    enc = Encoder(load_tokenizer_info(TokenizerSpec(path=tokenizer)), "gigatoken", 0)
    lines = [ln.strip() for r in rows for ln in r["text"].split("\n") if len(ln.strip()) > 20]
    out, i, n = [], 0, len(lines)
    while len(out) < want:
        batch = []
        for _ in range(want - len(out) + 1000):
            q_len, r_len = 1 + i % 2, 1 + (i // 2) % 4
            q = " ".join(lines[(i + j) % n] for j in range(q_len))[:400]
            r = " ".join(lines[(i + q_len + j) % n] for j in range(r_len))[:800]
            batch.append({"question": f"Q{i}: {q}", "response": r})
            i += q_len + r_len
        _, lengths = enc.encode([f"{b['question']} {b['response']}" for b in batch])
        out.extend(b for b, k in zip(batch, lengths.tolist()) if k + 1 <= 300)
    return out[:want]


# -- raw tokenizers, each in a fresh subprocess ------------------------------------------------
def raw(method: str, tokenizer: str, files: list[str]) -> dict:
    texts = load_texts(files)
    if method == "gigatoken":
        import gigatoken
        import numpy as np

        tok = gigatoken.Tokenizer(tokenizer)
        t = time.perf_counter()
        arr = tok.encode_batch(texts)
        secs = time.perf_counter() - t
        n = int(np.asarray(arr.layout.offsets.data)[-1])
    else:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tokenizer)
        tok.encode_special_tokens = True
        t = time.perf_counter()
        n = 0
        for i in range(0, len(texts), 1024):
            n += sum(len(e.ids) for e in tok.encode_batch_fast(texts[i:i + 1024],
                                                               add_special_tokens=False))
        secs = time.perf_counter() - t
    return {"tokens": n, "seconds": secs, "documents": len(texts),
            "mb": sum(len(x.encode("utf-8")) for x in texts) / 1e6}


def run_raw(method: str, tokenizer: str, files: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--raw", method, "--tokenizer", tokenizer,
                          *files], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- builds --------------------------------------------------------------------------------------
def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB."""
    parents, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {pid}, True
    while grew:
        new = {p for p, pp in parents.items() if pp in tree} - tree
        grew = bool(new)
        tree |= new
    return sum(rss.get(p, 0) for p in tree) / 1e6


def run_build(work: str, name: str, sources: list[dict], tokenizer: str, backend: str = "auto",
              cores: str | None = None, cache: str | None = None,
              extra: dict | None = None, root: str = ROOT) -> dict:
    """``instmix build`` in a fresh subprocess (``extra``: more config keys; ``root``: the
    checkout whose code runs)."""
    out = os.path.join(work, name)
    cfg = {"tokenizer": {"path": tokenizer, "backend": backend}, "seed": 0, "output": out,
           "cache_dir": cache or os.path.join(work, "cache-" + name), "sources": sources,
           **(extra or {})}
    cfg_path = os.path.join(work, name + ".yaml")
    with open(cfg_path, "w") as f:
        yaml.safe_dump(cfg, f)
    cmd = [sys.executable, "-m", "instmix", "build", "--no-progress", cfg_path]
    if cores:
        cmd = ["taskset", "-c", cores] + cmd
    peak = [0.0]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=root))
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)  # CPU time of the build and its workers
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    if status != 0:
        raise SystemExit(f"build {name} failed with status {status}")
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    backends = set()
    for meta in glob.glob(os.path.join(cfg["cache_dir"], "*", "meta.json")):
        with open(meta) as f:
            backends.add(json.load(f)["backend"])
    # (wait4's ru_maxrss is not used: it keeps the RSS of this process from before exec)
    return {"name": name, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_tree_rss_mb": peak[0],
            "tokens": manifest["total_tokens"],
            "documents": manifest["documents"], "backends": sorted(backends), "out": out}


def cold_build(work: str, name: str, sources: list[dict], tokenizer: str, **kw) -> dict:
    """:func:`run_build` with its output and cache removed first."""
    for folder in (name, "cache-" + name):
        shutil.rmtree(os.path.join(work, folder), ignore_errors=True)
    return run_build(work, name, sources, tokenizer, **kw)


def median_run(runs: list[dict]) -> dict:
    """The run of median time (``seconds`` or ``wall_s``); the lower one of an even count."""
    key = "seconds" if "seconds" in runs[0] else "wall_s"
    return sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2]


def same_bytes(a: str, b: str) -> bool:
    names = sorted(os.listdir(a))
    if names != sorted(os.listdir(b)):
        return False
    for n in names:
        with open(os.path.join(a, n), "rb") as x, open(os.path.join(b, n), "rb") as y:
            if x.read() != y.read():
                return False
    return True


def net_rate(build: dict, start: dict) -> float:
    return build["tokens"] / (build["wall_s"] - start["wall_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description="instmix build throughput vs raw tokenizers")
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    ap.add_argument("--tokenizer", default=DOLMA2)
    ap.add_argument("--work", default=os.path.join(HERE, "out", "build"))
    ap.add_argument("--json", default=os.path.join(HERE, "out", "build.json"))
    ap.add_argument("--short-rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5,
                    help="repetitions of the raw gigatoken run and the 4x builds (medians)")
    ap.add_argument("--quick", action="store_true", help="a small slice, to debug the script")
    ap.add_argument("--lock", default="/tmp/bench.lock",
                    help="taken (flock) after preparing the data, for the measuring runs only "
                    "('' for none)")
    ap.add_argument("--raw", help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    if args.raw:
        print(json.dumps(raw(args.raw, args.tokenizer, args.files)))
        return
    files = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))
    if not files:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    shutil.rmtree(args.work, ignore_errors=True)
    data = os.path.join(args.work, "data")
    os.makedirs(data)
    rows = load_rows(files)
    if args.quick:
        rows, args.short_rows = rows[:300], 20_000
    one = [os.path.join(data, "x1", f"part-{i:03d}.jsonl.zst") for i in range(len(files))]
    os.makedirs(os.path.dirname(one[0]))
    per = -(-len(rows) // len(files))
    for i, path in enumerate(one):
        write_zst(path, rows[i * per:(i + 1) * per])
    four = list(one)
    for k in (1, 2, 3):
        copy = changed_copy(rows, k)
        for i in range(len(files)):
            path = os.path.join(data, f"copy{k}", f"part-{i:03d}.jsonl.zst")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_zst(path, copy[i * per:(i + 1) * per])
            four.append(path)
    tiny = os.path.join(data, "one-document.jsonl")
    with open(tiny, "w") as f:
        f.write(json.dumps({"text": "One short document."}) + "\n")
    orca_rows = short_rows(rows, args.short_rows, args.tokenizer)
    shorts = []
    n_short = 8
    step = -(-len(orca_rows) // n_short)
    for i in range(n_short):
        path = os.path.join(data, "short", f"part-{i:03d}.jsonl.zst")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_zst(path, orca_rows[i * step:(i + 1) * step])
        shorts.append(path)
    del rows, orca_rows

    if args.lock:
        import fcntl

        lock = open(args.lock, "a")
        print(f"data ready; waiting for {args.lock}", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the process ends
    cores = os.sched_getaffinity(0)
    load_start = os.getloadavg()[0]
    print(f"{len(cores)} cores, Python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.1f} at start; tokenizer {os.path.basename(args.tokenizer)}")
    src = lambda paths, **kw: [{"name": "corpus", "paths": paths, **kw}]  # noqa: E731
    first = str(sorted(cores)[0])
    # Repetitions, interleaved so drifts of the machine hit every figure alike: raw
    # gigatoken, then cold builds (output and cache removed) on all cores and on one.
    reps: dict[str, list] = {k: [] for k in ("raw", "start", "b4", "start_1", "b4_1")}
    for _ in range(args.reps):
        reps["raw"].append(run_raw("gigatoken", args.tokenizer, four))
        reps["start"].append(cold_build(args.work, "one-document", src([tiny]), args.tokenizer))
        reps["b4"].append(cold_build(args.work, "build-4x", src(four, id_field="id"),
                                     args.tokenizer))
        reps["start_1"].append(cold_build(args.work, "one-document-1core", src([tiny]),
                                          args.tokenizer, cores=first))
        reps["b4_1"].append(cold_build(args.work, "build-4x-1core", src(four, id_field="id"),
                                       args.tokenizer, cores=first))
    med = {k: median_run(v) for k, v in reps.items()}
    raw4 = {"gigatoken": med["raw"], "hf": run_raw("hf", args.tokenizer, four)}
    raw_short = {"gigatoken": run_raw("gigatoken", args.tokenizer, shorts)}
    start, b4, b4_1, start_1 = med["start"], med["b4"], med["b4_1"], med["start_1"]
    b1 = run_build(args.work, "build-1x", src(one), args.tokenizer)
    bs = cold_build(args.work, "build-short", src(shorts, kind="openorca"), args.tokenizer)
    same = {}
    for backend in ("hf", "tiktoken", "gigatoken"):
        same[backend] = run_build(args.work, f"same-{backend}", src(one), args.tokenizer,
                                  backend=backend)
    identical = (same_bytes(same["hf"]["out"], same["tiktoken"]["out"])
                 and same_bytes(same["hf"]["out"], same["gigatoken"]["out"])
                 and same_bytes(same["hf"]["out"], b1["out"]))
    load_end = os.getloadavg()[0]

    g_rate = raw4["gigatoken"]["tokens"] / raw4["gigatoken"]["seconds"]
    per_rep = [{"raw_gigatoken_s": r["seconds"], "start_s": a["wall_s"], "build_4x_s": b["wall_s"],
                "start_1core_s": c["wall_s"], "build_4x_1core_s": d["wall_s"],
                "4x_vs_gigatoken": (b["tokens"] / (b["wall_s"] - a["wall_s"]))
                / (r["tokens"] / r["seconds"]),
                "scaling": (d["wall_s"] - c["wall_s"]) / (b["wall_s"] - a["wall_s"])}
               for r, a, b, c, d in zip(*(reps[k] for k in ("raw", "start", "b4", "start_1",
                                                            "b4_1")))]
    h_rate = raw4["hf"]["tokens"] / raw4["hf"]["seconds"]
    r4 = net_rate(b4, start)
    gs = raw_short["gigatoken"]["tokens"] / raw_short["gigatoken"]["seconds"]
    rs = net_rate(bs, start)
    docs_s = bs["documents"]
    overhead_us = ((bs["wall_s"] - start["wall_s"]) - raw_short["gigatoken"]["seconds"]) \
        / docs_s * 1e6
    r4_1 = net_rate(b4_1, start_1)
    hours = 100e9 / (r4_1 * 64) / 3600
    report = {
        "cores": len(cores), "load_average_start_end": [load_start, load_end],
        "reps": args.reps, "per_rep": per_rep,
        "raw_4x": raw4, "raw_short": raw_short,
        "builds": [{k: v for k, v in b.items() if k != "out"}
                   for b in (start, b4, b1, bs, b4_1, start_1, *same.values())],
        "ratios": {"4x_vs_gigatoken": r4 / g_rate, "4x_vs_hf_fast": r4 / h_rate,
                   "short_vs_gigatoken": rs / gs,
                   "short_overhead_us_per_doc": overhead_us, "scaling_2_vs_1_core": r4 / r4_1},
        "rates_tok_s": {"raw_gigatoken_4x": g_rate, "raw_hf_fast_4x": h_rate, "build_4x": r4,
                        "build_4x_1core": r4_1, "raw_gigatoken_short": gs,
                        "build_short": rs},
        "hours_100B_64_cores_on_paper": hours, "identical": identical,
        "identical_documents": same["hf"]["documents"],
    }
    print(f"4x corpus: {raw4['gigatoken']['documents']:,} documents, "
          f"{raw4['gigatoken']['mb']:.1f} MB, {raw4['gigatoken']['tokens']:,} tokens")
    print(f"raw gigatoken encode_batch {g_rate / 1e6:.2f} M tok/s; HF encode_batch_fast "
          f"{h_rate / 1e6:.2f} M tok/s")
    print("| run | wall s | peak RSS MB (build + workers) | tokens | backends |")
    print("|---|---:|---:|---:|---|")
    for b in report["builds"]:
        print(f"| {b['name']} | {b['wall_s']:.2f} | {b['peak_tree_rss_mb']:.0f} | "
              f"{b['tokens']:,} | {', '.join(b['backends'])} |")
    rt = report["ratios"]
    print(f"{args.reps} repetitions (medians below):")
    print("| rep | raw gigatoken s | start-up s | 4x s | 1-core start-up s | 4x 1 core s | "
          "4x vs raw | scaling |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k, r in enumerate(per_rep, 1):
        print(f"| {k} | {r['raw_gigatoken_s']:.2f} | {r['start_s']:.2f} | {r['build_4x_s']:.2f} | "
              f"{r['start_1core_s']:.2f} | {r['build_4x_1core_s']:.2f} | "
              f"{r['4x_vs_gigatoken']:.2f}x | {r['scaling']:.2f}x |")
    print(f"start-up (one-document build): {start['wall_s']:.2f} s")
    print(f"4x build: {r4 / 1e6:.2f} M tok/s = {rt['4x_vs_gigatoken']:.2f}x raw gigatoken, "
          f"{rt['4x_vs_hf_fast']:.2f}x HF encode_batch_fast")
    print(f"short documents ({docs_s:,} rows, {raw_short['gigatoken']['tokens']:,} tokens): "
          f"build {rs / 1e6:.2f} M tok/s = {rt['short_vs_gigatoken']:.2f}x raw gigatoken "
          f"({gs / 1e6:.2f} M tok/s); overhead "
          f"{overhead_us:.2f} us per document")
    print(f"scaling: 1 core {r4_1 / 1e6:.2f} M tok/s, {len(cores)} cores {r4 / 1e6:.2f} M tok/s "
          f"= {rt['scaling_2_vs_1_core']:.2f}x")
    print(f"100B tokens on one 64-core node, on paper (1-core rate x 64): {hours:.2f} h")
    print(f"hf, tiktoken, gigatoken (and auto) builds byte-identical on "
          f"{same['hf']['documents']:,} documents: {identical}; load average at end "
          f"{load_end:.1f}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    if not identical:
        raise SystemExit("the backends' builds differ")


if __name__ == "__main__":
    main()
