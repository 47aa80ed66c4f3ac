"""Real torch.distributed (gloo) processes: equal steps under DistributedDataParallel for
both datasets (StreamingMixture with either tail) and three loaders, and data-parallel
device meshes."""

from __future__ import annotations

import datetime
import os
import socket
import traceback
from contextlib import contextmanager

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import config, write_jsonl

import instmix

SEQ = 64
BATCH = 4  # divides no epoch below
TIMEOUT = datetime.timedelta(seconds=60)  # a rank left waiting fails instead of hanging


@pytest.fixture(scope="module")
def data(tmp_path_factory, paragraphs, real_docs):
    tmp = tmp_path_factory.mktemp("dist")
    raw = write_jsonl(tmp / "raw.jsonl", real_docs[:12])
    orca = write_jsonl(tmp / "orca.jsonl", [{"question": p[:50], "response": p[50:]}
                                            for p in paragraphs[:150]])
    sources = [{"name": "raw", "paths": [raw], "ratio": 1},
               {"name": "orca", "paths": [orca], "kind": "openorca", "ratio": 1,
                "loss": "responses", "max_repetition": 3}]
    build = config(tmp / "b", sources, shard_tokens=4_000)
    instmix.build(instmix.load_config(build))
    stream = config(tmp / "s", sources, total_tokens=SEQ * 6 * 7 + 5,  # 7 sequences a stream
                    tokenizer={"path": config(tmp, [])["tokenizer"], "backend": "hf"})
    return {"build": build["output"], "stream": stream}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dataset(kind: str, data: dict, **kw):
    if kind == "shard":
        return instmix.ShardDataset(data["build"], SEQ, seed=2, **kw)
    if kind == "wrap":  # the last step completed from the epoch's start
        kw["tail"] = "wrap"
    return instmix.StreamingMixture(data["stream"], SEQ, streams=6, block_size=16, **kw)


def _loader(name: str, ds, workers: int):
    if name == "instmix":
        return instmix.DataLoader(ds, batch_size=BATCH, num_workers=workers)
    if name == "torch":
        return torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=workers)
    from torchdata.stateful_dataloader import StatefulDataLoader

    return StatefulDataLoader(ds, batch_size=BATCH, num_workers=workers)


@contextmanager
def _rank_process(rank: int, out: str):
    """A rank's body: its traceback saved to ``OUT.errRANK`` for the parent to show, and its
    process group destroyed however it ends."""
    try:
        yield
    except Exception:
        with open(out + f".err{rank}", "w") as f:
            f.write(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _ddp_rank(rank: int, world: int, port: int, data: dict, out: str) -> None:
    with _rank_process(rank, out):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world, timeout=TIMEOUT)
        torch.set_num_threads(1)  # 2 cores shared by all ranks and workers
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(
            torch.nn.Embedding(1000, 4), torch.nn.Linear(4, 1)))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        results = {}
        for kind in ("shard", "stream", "wrap"):
            for name in ("instmix", "torch", "stateful"):
                if kind == "wrap" and name == "stateful":
                    continue  # the same dataset iterator as under torch's loader
                for workers in (0, 2):
                    # the datasets take rank and world size from the process group
                    ds = _dataset(kind, data, batch_size=BATCH)
                    loader = _loader(name, ds, workers)
                    expected = len(loader)
                    seen = []
                    for batch in loader:  # DDP: every rank must run every step's backward
                        loss = model(batch["input_ids"] % 1000).mean()
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        seen += batch["index"].tolist()
                    everyone = [None] * world
                    dist.all_gather_object(everyone, (expected, seen))
                    results[kind, name, workers] = everyone
                    if rank == 0 and os.environ.get("INSTMIX_DIST_TRACE"):
                        print("done", kind, name, workers, datetime.datetime.now(), flush=True)
        dist.barrier()
        if rank == 0:
            torch.save(results, out)


def _spawn(fn, world: int, *args, timeout: float = 900) -> None:
    ctx = mp.start_processes(fn, args=(world, _port(), *args), nprocs=world, join=False,
                             start_method="spawn")
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
    while not ctx.join(timeout=5):
        if datetime.datetime.now() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"distributed run did not finish in {timeout} s (a rank hung)")


@pytest.mark.parametrize("world", [2, 3])
def test_equal_steps_under_ddp(data, tmp_path, world):
    out = str(tmp_path / "res.pt")
    try:
        _spawn(_ddp_rank, world, data, out)
    except mp.ProcessRaisedException:
        errs = [open(os.path.join(tmp_path, f)).read() for f in os.listdir(tmp_path)
                if ".err" in f]
        pytest.fail("a rank failed:\n" + "\n".join(errs))
    results = torch.load(out)
    n_shard = instmix.ShardDataset(data["build"], SEQ).num_sequences
    per_step = world * BATCH
    for (kind, name, workers), ranks in results.items():
        n = n_shard if kind == "shard" else 6 * 7
        assert n % per_step, "the epoch must not divide into steps for this test"
        steps = n // per_step if kind != "wrap" else -(-n // per_step)
        for expected, seen in ranks:  # every rank: the same whole steps, len() true
            assert expected == steps, (kind, name, workers)
            assert len(seen) == steps * BATCH, (kind, name, workers)
        everything = [i for _, seen in ranks for i in seen]
        if kind == "wrap":  # every sequence, and the epoch's first ones once more
            extra = steps * per_step - n
            assert sorted(everything) == sorted([*range(n), *range(extra)]), (name, workers)
            continue
        assert len(set(everything)) == len(everything), (kind, name, workers)  # none twice
        assert set(everything) <= set(range(n))


def _mesh_rank(rank: int, world: int, port: int, data: dict, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with _rank_process(rank, out):
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=TIMEOUT)
        mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        got = {}
        for kind in ("shard", "stream"):
            ds = _dataset(kind, data, device_mesh=mesh)
            loader = instmix.DataLoader(ds, batch_size=2, num_workers=0)
            it = iter(loader)
            got[kind] = [next(it)["index"].tolist()]
            got[kind + "_state"] = loader.state_dict()  # gathers over the dp group
            got[kind] += [b["index"].tolist() for b in it]
        everyone = [None] * world
        dist.all_gather_object(everyone, (mesh.get_coordinate(), got))
        if rank == 0:
            torch.save(everyone, out)


def test_data_parallel_mesh(data, tmp_path):
    out = str(tmp_path / "mesh.pt")
    try:
        _spawn(_mesh_rank, 4, data, out)
    except mp.ProcessRaisedException:
        errs = [open(os.path.join(tmp_path, f)).read() for f in os.listdir(tmp_path)
                if ".err" in f]
        pytest.fail("a rank failed:\n" + "\n".join(errs))
    everyone = torch.load(out)
    by_coord = {tuple(c): got for c, got in everyone}
    for kind in ("shard", "stream"):
        for dp in (0, 1):  # TP peers: identical batches
            assert by_coord[dp, 0][kind] == by_coord[dp, 1][kind]
            assert by_coord[dp, 0][kind]
        a, b = by_coord[0, 0][kind], by_coord[1, 0][kind]
        assert len(a) == len(b)  # DP groups: equal length, disjoint
        flat_a, flat_b = {i for x in a for i in x}, {i for x in b for i in x}
        assert not flat_a & flat_b
    # the streaming state gathered over "dp" holds every stream
    assert len(by_coord[0, 0]["stream_state"]["cursor"]["streams"]) == 6
