"""Serving throughput and mixing exactness of instmix's datasets against the peers, in one run.

    python bench/corpus.py                        # once: bench/data/corpus (~53 MB of text)
    bash bench/setup_peers.sh                     # once: .venvs/bench (litdata, MosaicML, datasets)
    .venvs/bench/bin/python bench/loader.py       # -> table on stdout, bench/out/loader.json

Same tokens for every reader: ``instmix build`` of the benchmark corpus with
``max_repetition: 4`` (about 59M tokens, OLMo tokenizer, uint16, 4 shards), cut into the
2048-token windows ``ShardDataset`` serves (no window spans two shards); the peers' formats
are written from exactly those rows (litdata ``optimize`` with ``TokensLoader``, a Hugging
Face ``datasets`` table with an ``input_ids`` column saved to disk, MosaicML MDS). Every
reader hands out int64 torch tensors (a trainer's embedding input); the peers store uint16
like the build and convert. Each epoch over all rows runs in a fresh subprocess (so every
reader maps its files afresh and pays the first touch of every page, as in a one-epoch
run), page cache warm; 5 epochs per reader, taken round robin over the readers; the figure
is the median, with min-max for the noise (the goals' ratios are also given per
repetition, from epochs run next to each other). Dataset objects are made outside the
timer, iterators inside.

Mixing exactness: a 30/70 token mixture of a short-document source (paragraphs of three
corpus files, instruction-sized) and a long-document source (whole pages of the other four),
2048-token sequences: the running token share of the 30% source after 100 sequences, over
all measured sequences, its largest deviation from 0.30 after 100 sequences, and the worst
64-sequence batch, for ``instmix.StreamingMixture`` (stream order), the ``instmix build`` of
the same config (stream order, and shuffled by ``ShardDataset``), and Hugging Face
``interleave_datasets(probabilities=[0.3, 0.7])`` over the same documents and tokens (from
single-source builds) packed into 2048-token blocks the usual way (``run_clm``'s
``group_texts``: concatenate 1,000 documents per ``map`` batch, cut, drop the remainder).
The short source is built with ``loss: none``, so its tokens are exactly the labels == -100
of the instmix readers.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

L = 2048
REPS = 5  # epochs per reader (the machine is shared and noisy: +-20% run to run)
BATCH = 64  # sequences per batch for the mixing figures
MIX_SEQS = 50 * BATCH  # sequences measured for mixing
TARGET = 0.3
FORMAT = 1  # bump to rebuild the data after changing how it is written

READERS = [
    # name, label, group
    ("ref_seq", "numpy memmap row copy + int64 torch, sequential", "reference"),
    ("ref_shuf", "numpy memmap row copy + int64 torch, shuffled (the reference)", "reference"),
    ("view_shuf", "same, memmap viewed as a plain ndarray, shuffled (tuned)", "reference"),
    ("copy_shuf", "numpy memmap row copy only (uint16), shuffled", "reference"),
    ("sd_items", "instmix ShardDataset, items", "instmix"),
    ("dl_0_8", "instmix.DataLoader, 0 workers, batch 8", "instmix"),
    ("dl_0_64", "instmix.DataLoader, 0 workers, batch 64", "instmix"),
    ("dl_2_8", "instmix.DataLoader, 2 workers, batch 8", "instmix"),
    ("dl_2_64", "instmix.DataLoader, 2 workers, batch 64", "instmix"),
    ("torch_dl_2_8", "torch DataLoader over ShardDataset, 2 workers, batch 8", "instmix"),
    ("litdata", "litdata StreamingDataset (TokensLoader), shuffled, items", "peer"),
    ("hf_iter8", "HF datasets, torch format, .iter(batch_size=8), in order", "peer"),
    ("hf_rows", "HF datasets, torch format, per row, in order", "peer"),
    ("hf_rows_shuf", "HF datasets, torch format, per row, .shuffle(seed=0)", "peer"),
    ("mosaic_8", "MosaicML StreamingDataset (MDS), shuffled, items, batch_size=8", "peer"),
    ("mosaic_64", "MosaicML StreamingDataset (MDS), shuffled, items, batch_size=64", "peer"),
]


# -- data ----------------------------------------------------------------------------------
def import_streaming():
    """MosaicML ``streaming``, which imports torchvision for its vision datasets. PyPI's
    torchvision 0.28 is built against CUDA torch and fails to import beside the CPU torch
    (``operator torchvision::nms does not exist``); the bench uses none of it, so it stands
    in a stub for the three names ``streaming.vision`` imports."""
    try:
        import streaming
    except RuntimeError as e:
        if "torchvision" not in str(e):
            raise
        import types

        for mod in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "streaming")]:
            del sys.modules[mod]
        stub = {n: types.ModuleType(n) for n in (
            "torchvision", "torchvision.datasets", "torchvision.transforms",
            "torchvision.transforms.functional")}
        stub["torchvision.datasets"].VisionDataset = type("VisionDataset", (), {})
        stub["torchvision.datasets"].CIFAR10 = type("CIFAR10", (), {})
        stub["torchvision.transforms.functional"].to_tensor = None
        sys.modules.update(stub)
        import streaming
    return streaming


def run_build(cfg: dict, cfg_path: str) -> None:
    with open(cfg_path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    cmd = [sys.executable, "-m", "instmix", "build", "--no-progress", cfg_path]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=ROOT))


def fresh(path: str, key: str) -> bool:
    """True when ``path`` was made from ``key`` (its stamp matches); else clear it."""
    stamp = path.rstrip("/") + ".stamp"
    if os.path.exists(path) and os.path.exists(stamp) and open(stamp).read() == key:
        return True
    shutil.rmtree(path, ignore_errors=True)
    return False


def stamp(path: str, key: str) -> None:
    with open(path.rstrip("/") + ".stamp", "w") as f:
        f.write(key)


def corpus_key(files: list[str]) -> str:
    h = hashlib.sha256(f"format={FORMAT}".encode())
    for p in files:
        st = os.stat(p)
        h.update(f"{os.path.basename(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def windows(build: str) -> list[tuple[str, int, int]]:
    """(shard path, dtype, full windows) of a build, as ShardDataset cuts it (drop_last)."""
    from instmix.format.manifest import load_manifest

    m = load_manifest(build)
    return [(m.path(s["path"]), m.dtype, s["tokens"] // L) for s in m.shards]


def iter_rows(build: str):
    from instmix.format.reader import open_tokens

    for path, dtype, n in windows(build):
        mm = open_tokens(path, dtype)
        for i in range(n):
            yield np.array(mm[i * L:(i + 1) * L])


def _litdata_rows(task):
    from instmix.format.reader import open_tokens

    path, dtype, lo, hi = task
    mm = open_tokens(path, dtype)
    for i in range(lo, hi):
        yield np.array(mm[i * L:(i + 1) * L])


def prepare_tokens(work: str, files: list[str], tokenizer: str, key: str) -> dict:
    """The throughput data: one build, and the peers' formats from the same rows."""
    build = os.path.join(work, "tokens")
    paths = {"build": build, "litdata": os.path.join(work, "litdata"),
             "hf": os.path.join(work, "hf"), "mds": os.path.join(work, "mds")}
    times = {}
    if not fresh(build, key):
        cfg = {"tokenizer": tokenizer, "seed": 0, "output": build, "shard_tokens": 1 << 24,
               "cache_dir": os.path.join(work, "cache"),
               "sources": [{"name": "corpus", "paths": files, "id_field": "id",
                            "max_repetition": 4}]}
        t = time.perf_counter()
        run_build(cfg, os.path.join(work, "tokens.yaml"))
        times["instmix build"] = time.perf_counter() - t
        stamp(build, key)
    rows = sum(n for _, _, n in windows(build))

    if not fresh(paths["litdata"], key):
        from litdata import TokensLoader, optimize

        tasks = [(p, d, lo, min(lo + 4096, n)) for p, d, n in windows(build)
                 for lo in range(0, n, 4096)]
        t = time.perf_counter()
        optimize(fn=_litdata_rows, inputs=tasks, output_dir=paths["litdata"],
                 chunk_size=L * 8192, item_loader=TokensLoader(), num_workers=1,
                 verbose=False)
        times["litdata optimize"] = time.perf_counter() - t
        stamp(paths["litdata"], key)

    if not fresh(paths["hf"], key):
        import datasets

        t = time.perf_counter()
        feats = datasets.Features({"input_ids": datasets.List(datasets.Value("uint16"))})
        ds = datasets.Dataset.from_generator(
            lambda: ({"input_ids": r} for r in iter_rows(build)), features=feats,
            cache_dir=os.path.join(work, "hf-cache"))
        ds.save_to_disk(paths["hf"])
        times["datasets save_to_disk"] = time.perf_counter() - t
        shutil.rmtree(os.path.join(work, "hf-cache"), ignore_errors=True)
        stamp(paths["hf"], key)

    if not fresh(paths["mds"], key):
        MDSWriter = import_streaming().MDSWriter

        t = time.perf_counter()
        with MDSWriter(out=paths["mds"], columns={"input_ids": f"ndarray:uint16:{L}"},
                       size_limit=1 << 26) as w:
            for r in iter_rows(build):
                w.write({"input_ids": r})
        times["MDSWriter"] = time.perf_counter() - t
        stamp(paths["mds"], key)
    return {"paths": paths, "rows": rows, "tokens": rows * L, "write_s": times}


def prepare_mix(work: str, files: list[str], tokenizer: str, key: str) -> dict:
    """Sources for the 30/70 mixture: short (paragraphs) and long (pages), and builds."""
    import zstandard

    mix = os.path.join(work, "mix")
    short_dir, long_dir = os.path.join(mix, "short"), os.path.join(mix, "long")
    cache = os.path.join(work, "cache")
    paths = {"config": os.path.join(mix, "mix.yaml"), "build": os.path.join(mix, "build"),
             "short_all": os.path.join(mix, "short-all"),
             "long_all": os.path.join(mix, "long-all")}
    if fresh(mix, key):
        return paths
    os.makedirs(short_dir)
    os.makedirs(long_dir)
    cctx = zstandard.ZstdCompressor(level=3)
    for i, f in enumerate(files[:3]):  # paragraphs of three files: short documents
        data = zstandard.ZstdDecompressor().decompress(open(f, "rb").read(),
                                                       max_output_size=1 << 31)
        out = []
        for line in data.splitlines():
            doc = json.loads(line)
            for k, para in enumerate(re.split(r"\n\s*\n", doc["text"])):
                para = para.strip()
                if len(para) >= 100:
                    out.append(json.dumps({"id": f"{doc['id']}#{k}", "text": para}) + "\n")
        with open(os.path.join(short_dir, f"part-{i:03d}.jsonl.zst"), "wb") as fh:
            fh.write(cctx.compress("".join(out).encode("utf-8")))
    for f in files[3:]:  # whole pages of the others: long documents
        os.link(f, os.path.join(long_dir, os.path.basename(f)))
    short = {"name": "short", "paths": ["short/*.jsonl.zst"], "id_field": "id"}
    long_ = {"name": "long", "paths": ["long/*.jsonl.zst"], "id_field": "id"}
    base = {"tokenizer": tokenizer, "seed": 0, "cache_dir": cache}
    run_build({**base, "output": "build", "sources": [
        {**short, "ratio": 0.3, "loss": "none"}, {**long_, "ratio": 0.7}]}, paths["config"])
    run_build({**base, "output": "short-all", "sources": [short]},
              os.path.join(mix, "short-all.yaml"))
    run_build({**base, "output": "long-all", "sources": [long_]},
              os.path.join(mix, "long-all.yaml"))
    stamp(mix, key)
    return paths


# -- readers (each in a subprocess) --------------------------------------------------------
def reader(name: str, paths: dict):
    """``(make, run)``: make() builds the dataset (untimed), run(obj) iterates one epoch
    and returns the tokens it handed out as int64 torch tensors."""
    import torch

    build = paths["build"]
    if name in ("ref_seq", "ref_shuf", "view_shuf", "copy_shuf"):
        from instmix.format.reader import open_tokens

        ws = windows(build)
        shard = np.concatenate([np.full(n, s) for s, (_, _, n) in enumerate(ws)])
        off = np.concatenate([np.arange(n) * L for _, _, n in ws])
        order = np.arange(len(shard)) if name == "ref_seq" else \
            np.random.default_rng(0).permutation(len(shard))
        pairs = list(zip(shard[order].tolist(), off[order].tolist()))

        def run(_):
            n = 0
            mms = [open_tokens(p, d) for p, d, _ in ws]  # mapped afresh, like every reader
            if name == "view_shuf":  # slicing the memmap subclass costs ~1 us a row
                mms = [m.view(np.ndarray) for m in mms]
            if name == "copy_shuf":
                for s, a in pairs:
                    n += np.array(mms[s][a:a + L]).shape[0]
            else:
                for s, a in pairs:
                    n += torch.from_numpy(mms[s][a:a + L].astype(np.int64)).shape[0]
            return n
        return (lambda: None), run
    if name == "sd_items":
        from instmix import ShardDataset

        def run(ds):
            n = 0
            for item in ds:
                n += item["input_ids"].shape[0]
            return n
        return (lambda: ShardDataset(build, L)), run
    if name.startswith("dl_"):
        import instmix

        _, workers, batch = name.split("_")

        def run(loader):
            n = 0
            for b in loader:
                n += b["input_ids"].numel()
            return n
        return (lambda: instmix.DataLoader(instmix.ShardDataset(build, L), int(batch),
                                           num_workers=int(workers))), run
    if name == "torch_dl_2_8":
        import instmix

        def run(loader):
            n = 0
            for b in loader:
                n += b["input_ids"].numel()
            return n
        return (lambda: torch.utils.data.DataLoader(instmix.ShardDataset(build, L),
                                                    batch_size=8, num_workers=2)), run
    if name == "litdata":
        from litdata import StreamingDataset, TokensLoader

        def run(ds):
            n = 0
            for x in ds:
                n += torch.from_numpy(x.astype(np.int64)).shape[0]
            return n
        return (lambda: StreamingDataset(paths["litdata"],
                                         item_loader=TokensLoader(block_size=L),
                                         shuffle=True, seed=0)), run
    if name.startswith("hf_"):
        import datasets

        def make():
            ds = datasets.load_from_disk(paths["hf"]).with_format("torch")
            return ds.shuffle(seed=0) if name == "hf_rows_shuf" else ds

        def run(ds):
            n = 0
            if name == "hf_iter8":
                for b in ds.iter(batch_size=8):
                    n += b["input_ids"].numel()
            else:
                for row in ds:
                    n += row["input_ids"].shape[0]
            return n
        return make, run
    if name.startswith("mosaic_"):
        import_streaming()
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        def make():
            clean_stale_shared_memory()
            # batch_size sets how far its ready thread runs ahead (predownload = 8x);
            # with batch_size=1 the reader mostly sleeps (2.2 M tok/s here).
            return StreamingDataset(local=paths["mds"], shuffle=True, shuffle_seed=0,
                                    batch_size=int(name.split("_")[1]))

        def run(ds):
            n = 0
            for s in ds:
                n += torch.from_numpy(s["input_ids"].astype(np.int64)).shape[0]
            return n
        return make, run
    raise SystemExit(f"unknown reader {name}")


def measure(name: str, paths: dict) -> dict:
    """One epoch of reader ``name`` in this (fresh) process."""
    make, run = reader(name, paths)
    obj = make()
    t = time.perf_counter()
    n = run(obj)
    return {"tokens": n, "seconds": time.perf_counter() - t}


# -- mixing exactness ----------------------------------------------------------------------
def share_stats(shares: np.ndarray) -> dict:
    """Per-sequence token shares of the 30% source -> the exactness figures."""
    shares = shares[:MIX_SEQS]
    running = np.cumsum(shares) / np.arange(1, len(shares) + 1)
    batches = shares[:len(shares) // BATCH * BATCH].reshape(-1, BATCH).mean(1)
    worst = batches[np.argmax(np.abs(batches - TARGET))]
    return {"sequences": len(shares), "share_after_100": float(running[99]),
            "share_all": float(running[-1]),
            "max_dev_after_100": float(np.abs(running[99:] - TARGET).max()),
            "worst_batch": float(worst), "batches": len(batches)}


def mixture(paths: dict) -> dict:
    import datasets
    import torch

    import instmix
    from instmix.format.manifest import load_manifest
    from instmix.format.reader import iter_build_documents

    res = {}
    # instmix StreamingMixture: tokenizes on the fly, stream order.
    torch.manual_seed(0)
    t = time.perf_counter()
    mix = instmix.StreamingMixture(paths["config"], L, seed=0)
    got = []
    for b in instmix.DataLoader(mix, BATCH):
        got.append((b["labels"] == -100).sum(1).numpy() / L)
        if sum(len(g) for g in got) >= MIX_SEQS:
            break
    res["instmix StreamingMixture"] = {**share_stats(np.concatenate(got)),
                                       "seconds": time.perf_counter() - t}
    # instmix build of the same config, windows in stream order (the build's mask).
    m = load_manifest(paths["build"])
    shares = []
    for s in m.shards:
        mask = np.memmap(m.path(s["mask"]), dtype=np.bool_, mode="r")
        n = s["tokens"] // L
        shares.append(1 - mask[:n * L].reshape(n, L).mean(1))
    res["instmix build, stream order"] = share_stats(np.concatenate(shares))
    # ... and as ShardDataset serves it (shuffled windows).
    got = []
    for b in instmix.DataLoader(instmix.ShardDataset(paths["build"], L), BATCH):
        got.append((b["labels"] == -100).sum(1).numpy() / L)
        if sum(len(g) for g in got) >= MIX_SEQS:
            break
    res["instmix ShardDataset (shuffled)"] = share_stats(np.concatenate(got))

    # HF: the same documents and tokens, interleaved by documents, packed the usual way.
    def docs(build, src):
        d = [np.asarray(doc.tokens, dtype=np.int32) for doc in iter_build_documents(build)]
        return datasets.Dataset.from_dict(
            {"input_ids": d, "src": [src] * len(d)},
            features=datasets.Features({"input_ids": datasets.List(datasets.Value("int32")),
                                        "src": datasets.Value("int8")}))

    short, long_ = docs(paths["short_all"], 0), docs(paths["long_all"], 1)
    t = time.perf_counter()
    mixed = datasets.interleave_datasets([short, long_], probabilities=[0.3, 0.7], seed=0)

    def group_texts(batch):
        ids = batch["input_ids"]
        lens = [len(x) for x in ids]
        flat = np.concatenate(ids)
        src = np.repeat(np.asarray(batch["src"]), lens)
        n = len(flat) // L * L
        return {"input_ids": flat[:n].reshape(-1, L),
                "short": (src[:n].reshape(-1, L) == 0).sum(1)}

    packed = mixed.with_format("numpy").map(group_texts, batched=True, batch_size=1000,
                                            remove_columns=["input_ids", "src"])
    seconds = time.perf_counter() - t
    src = np.asarray(mixed.with_format("numpy")["src"])
    doc_share = float((src == 0).mean())
    shares = np.asarray(packed.with_format("numpy")["short"]) / L
    res["HF interleave_datasets + group_texts"] = {
        **share_stats(shares), "seconds": seconds, "short_doc_share": doc_share}
    shuf = np.asarray(packed.shuffle(seed=0).with_format("numpy")["short"][:MIX_SEQS]) / L
    res["HF interleave_datasets + group_texts, shuffled"] = share_stats(shuf)
    res["_sources"] = {}
    for name, ds in (("short", short), ("long", long_)):
        lens = np.array([len(x) for x in ds["input_ids"]])
        res["_sources"][name] = {"docs": len(lens), "tokens": int(lens.sum()),
                                 "mean_doc": float(lens.mean()), "max_doc": int(lens.max())}
    return res


# -- driver --------------------------------------------------------------------------------
def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "cores": os.cpu_count()}
    for name in ("torch", "numpy", "litdata", "mosaicml-streaming", "datasets", "pyarrow"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    try:
        out["instmix commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
            text=True).stdout.strip()
    except OSError:
        pass
    return out


def child(args, what: str, paths: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--paths", json.dumps(paths)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm(paths: list[str]) -> None:
    """Read every data file once, so all readers start from a warm page cache."""
    for root in paths:
        for f in glob.glob(os.path.join(root, "**"), recursive=True):
            if os.path.isfile(f):
                with open(f, "rb") as fh:
                    while fh.read(1 << 24):
                        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "examples", "quickstart",
                                                        "tokenizer.json"))
    ap.add_argument("--work", default=os.path.join(HERE, "data", "loader"))
    ap.add_argument("--json", default=os.path.join(HERE, "out", "loader.json"))
    ap.add_argument("--only", help="comma-separated reader names (default: all)")
    ap.add_argument("--no-mix", action="store_true", help="skip the mixing figures")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--paths", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        paths = json.loads(args.paths)
        res = mixture(paths) if args.child == "mixture" else measure(args.child, paths)
        print(json.dumps(res))
        return
    files = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))
    if len(files) < 4:
        raise SystemExit(f"no corpus in {args.corpus}: run python bench/corpus.py first")
    os.makedirs(args.work, exist_ok=True)
    key = corpus_key(files)
    tok = prepare_tokens(args.work, files, args.tokenizer, key)
    mix_paths = prepare_mix(args.work, files, args.tokenizer, key)
    ver = versions()
    print(f"data: {tok['rows']:,} rows x {L} = {tok['tokens'] / 1e6:.1f}M tokens; "
          f"{ver['cores']} cores, Python {ver['python']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()
                                   if k not in ("python", "cores")))
    warm(list(tok["paths"].values()))

    names = args.only.split(",") if args.only else [r[0] for r in READERS]
    labels = {n: (lab, g) for n, lab, g in READERS}
    # Round robin: repetition r of every reader before repetition r + 1 of any, so that
    # load from other processes on the machine spreads over all readers alike.
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(REPS):
        for name in names:
            r = child(args, name, tok["paths"])
            if r["tokens"] != tok["tokens"]:
                raise SystemExit(f"{name} read {r['tokens']:,} tokens, not {tok['tokens']:,}")
            seconds[name].append(r["seconds"])
            print(f"  rep {rep + 1}: {name}: {r['tokens'] / r['seconds'] / 1e6:.1f} M tok/s",
                  file=sys.stderr)
    rows = {}
    for name in names:
        rates = [tok["tokens"] / s / 1e6 for s in seconds[name]]
        rows[name] = {"label": labels[name][0], "group": labels[name][1],
                      "seconds": seconds[name], "mtok_s": statistics.median(rates),
                      "min": min(rates), "max": max(rates)}
    ref = rows.get("ref_shuf", {}).get("mtok_s")
    print()
    print(f"| reader | M tok/s (median of {REPS}) | min-max | x reference |")
    print("|---|---:|---:|---:|")
    for r in rows.values():
        x = f"{r['mtok_s'] / ref:.2f}" if ref else ""
        print(f"| {r['label']} | {r['mtok_s']:.1f} | {r['min']:.1f}-{r['max']:.1f} | {x} |")

    goals = {}
    sd = rows.get("sd_items", {}).get("mtok_s")
    for key_, other, want in (("ShardDataset >= 0.8x reference", "ref_shuf", 0.8),
                              ("ShardDataset >= 1.2x litdata", "litdata", 1.2),
                              ("ShardDataset >= 10x MosaicML", "mosaic", 10.0)):
        peers = [r["mtok_s"] for n, r in rows.items() if n == other or n.startswith(other + "_")]
        if sd and peers:  # against the peer's fastest setting
            x = sd / max(peers)
            goals[key_] = {"ratio": x, "met": x >= want}
            if other in rows:  # epochs run next to each other see the same load
                goals[key_]["paired"] = sorted(
                    b / a for a, b in zip(rows["sd_items"]["seconds"], rows[other]["seconds"]))
    if goals:
        print()
        for k, g in goals.items():
            paired = g.get("paired")
            extra = f" (per repetition: {', '.join(f'{x:.2f}' for x in paired)})" if paired \
                else ""
            print(f"{k}: {g['ratio']:.2f}x -> {'met' if g['met'] else 'MISSED'}{extra}")

    mix = None
    if not args.no_mix:
        mix = child(args, "mixture", mix_paths)
        srcs = mix.pop("_sources")
        print()
        print("30/70 token mixture, " + "; ".join(
            f"{k} source: {v['docs']:,} documents, {v['tokens']:,} tokens (mean "
            f"{v['mean_doc']:,.0f}, longest {v['max_doc']:,})" for k, v in srcs.items())
            + f"; first {MIX_SEQS:,} sequences of {L}, batches of {BATCH}")
        print("| reader | share after 100 seqs | share, all | max dev after 100 | "
              "worst batch share |")
        print("|---|---:|---:|---:|---:|")
        for k, v in mix.items():
            print(f"| {k} | {v['share_after_100']:.4f} | {v['share_all']:.4f} | "
                  f"{v['max_dev_after_100']:.4f} | {v['worst_batch']:.4f} |")
        hf = mix.get("HF interleave_datasets + group_texts")
        if hf:
            print(f"HF: the short source got {hf['short_doc_share']:.1%} of the documents")
        mix["_sources"] = srcs
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"versions": ver, "rows": tok["rows"], "tokens": tok["tokens"],
                   "seq_len": L, "reps": REPS, "write_s": tok["write_s"], "readers": rows,
                   "goals": goals, "mixture": mix}, f, indent=1)


if __name__ == "__main__":
    main()
