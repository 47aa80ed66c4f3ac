"""Run block jobs on Ray Data: one engine replica per actor, blocks spread over replicas.

The driver reads the inputs, hands each pending block (its documents and any parts
already on disk) to ``map_batches`` with an actor class that holds an engine (vLLM on a
GPU, or any other engine), and writes the parts that stream back. Every block runs the
same :class:`~instmix.synth.runner.BlockJob` as a local run, so the output is the same.
Pending blocks are materialized in Ray's object store (it spills to disk when full).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import instmix
from instmix.errors import InstmixError

from .block import BlockEnd, BlockInput, BlockJob, Part, Settings, make_encoder
from .chain import Entry
from .config import RayConfig
from .engines.base import create_engine


def _encode(item: Part | BlockEnd) -> str:
    if isinstance(item, Part):
        return json.dumps({"type": "part", "round": item.round, "index": item.index,
                           "engine_seconds": item.engine_seconds,
                           "entries": [e.to_json() for e in item.entries]}, ensure_ascii=False)
    return json.dumps({"type": "end", "docs": item.docs, "split_docs": item.split_docs})


def _decode(block: int, payload: str) -> Part | BlockEnd:
    d = json.loads(payload)
    if d["type"] == "part":
        return Part(block, d["round"], d["index"],
                    tuple(Entry.from_json(e) for e in d["entries"]), d["engine_seconds"])
    return BlockEnd(block, d["docs"], d["split_docs"])


class BlockWorker:
    """Ray Data actor: builds the engine once, then runs one block per input row."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.encoder = make_encoder(settings.synthesizer, settings.where)
        self.engine = create_engine(settings.synthesizer, self.encoder.tok, settings.where)

    def __call__(self, batch) -> Iterator[dict]:
        for block, payload in zip(batch["block"], batch["payload"]):
            data = json.loads(payload)
            done = {name: [Entry.from_json(e) for e in entries]
                    for name, entries in data["done"].items()}
            inp = BlockInput(int(block), [tuple(d) for d in data["docs"]], done)
            for item in BlockJob(inp, self.settings, self.encoder).run(self.engine):
                yield {"block": [int(block)], "payload": [_encode(item)]}


class RayExecutor:
    """Connects to (or starts) a Ray cluster; ``close`` shuts down only what it started."""

    def __init__(self, settings: Settings, cfg: RayConfig):
        try:
            import ray  # lazy: optional extra, instmix[ray]
        except ImportError:
            raise InstmixError("'ray' in the config needs Ray: pip install 'instmix[ray]'"
                               ) from None
        self.ray = ray
        self.settings = settings
        self.cfg = cfg
        self.started = False
        if not ray.is_initialized():
            # ship this instmix to the workers (they may not have it installed)
            env = {"py_modules": [os.path.dirname(os.path.abspath(instmix.__file__))]}
            if cfg.address == "local":
                ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, runtime_env=env,
                         log_to_driver=False)
            else:
                ray.init(address=cfg.address, runtime_env=env, log_to_driver=False)
            self.started = True

    def run(self, inputs: Iterator[BlockInput]) -> Iterator[Part | BlockEnd]:
        rows = [{"block": inp.block, "payload": json.dumps(
            {"docs": inp.docs, "done": {n: [e.to_json() for e in es]
                                        for n, es in inp.done.items()}}, ensure_ascii=False)}
                for inp in inputs]
        if not rows:
            return
        ds = self.ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(BlockWorker, batch_size=1, fn_constructor_kwargs={
            "settings": self.settings}, concurrency=self.cfg.replicas,
            num_gpus=self.cfg.gpus_per_replica or None, num_cpus=self.cfg.cpus_per_replica)
        for row in ds.iter_rows():
            yield _decode(int(row["block"]), row["payload"])

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False
