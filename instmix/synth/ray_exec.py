"""Run the scheduler on a Ray cluster: one engine replica per actor, blocks fed lazily.

Each replica is a Ray actor holding an engine and running the same
:class:`~instmix.synth.schedule.Scheduler` as a local run (several blocks in flight,
continuous chains), so the output is the same. Its ``results`` method is a streaming
generator (``num_returns="streaming"``): every part reaches the driver, and storage, as
soon as it is made, not when a block ends. The driver reads the inputs as it goes and
keeps at most ``blocks_ahead`` unfinished blocks per replica, so pending text is never
all in memory. Ray Data's ``map_batches`` (with ``ActorPoolStrategy``) is not used: it
holds a generator's rows until its output block ends, and a dead actor loses its block.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
from collections.abc import Iterator

import instmix
from instmix.errors import InstmixError

from .block import BlockEnd, BlockInput, Part, Settings, make_encoder
from .chain import Entry
from .config import RayConfig
from .engines.base import create_engine
from .schedule import Scheduler

BLOCKS_AHEAD = 3  # unfinished blocks handed to one replica at a time


def _encode(item: Part | BlockEnd) -> str:
    if isinstance(item, Part):
        return json.dumps({"type": "part", "block": item.block, "round": item.round,
                           "index": item.index, "cache": item.cache,
                           "entries": [e.to_json() for e in item.entries]}, ensure_ascii=False)
    return json.dumps({"type": "end", "block": item.block, "docs": item.docs,
                       "split_docs": item.split_docs, "parts": item.parts})


def _decode(payload: str) -> Part | BlockEnd:
    d = json.loads(payload)
    if d["type"] == "part":
        return Part(d["block"], d["round"], d["index"],
                    tuple(Entry.from_json(e) for e in d["entries"]),
                    tuple(tuple(c) for c in d["cache"]))
    return BlockEnd(d["block"], d["docs"], d["split_docs"], tuple(d["parts"]))


def _block_payload(inp: BlockInput) -> str:
    return json.dumps({"block": inp.block, "docs": inp.docs,
                       "done": {n: [e.to_json() for e in es] for n, es in inp.done.items()}},
                      ensure_ascii=False)


class Replica:
    """Ray actor body: builds the engine once; ``feed`` hands it blocks, ``results``
    streams what the scheduler makes until ``feed(None)``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.encoder = make_encoder(settings.synthesizer, settings.where)
        self.engine = create_engine(settings.synthesizer, self.encoder.tok, settings.where)
        self.inbox: queue.Queue = queue.Queue()

    def feed(self, seq: int, payload: str | None) -> None:
        """Hand over block number ``seq`` (0, 1, ...) of this replica; None ends the
        stream. Calls of a threaded actor may run in any order: ``seq`` restores it."""
        self.inbox.put((seq, payload))

    def _blocks(self) -> Iterator[BlockInput]:
        early: dict[int, str | None] = {}
        seq = 0
        while True:
            while seq not in early:
                k, p = self.inbox.get()
                early[k] = p
            payload = early.pop(seq)
            seq += 1
            if payload is None:
                return
            d = json.loads(payload)
            done = {n: [Entry.from_json(e) for e in es] for n, es in d["done"].items()}
            yield BlockInput(d["block"], [tuple(x) for x in d["docs"]], done)

    def results(self) -> Iterator[str]:
        for item in Scheduler(self.settings, self.encoder, self.engine).run(self._blocks()):
            yield _encode(item)

    def close(self) -> None:
        self.engine.close()


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
        self.actors: list = []
        self.engine_seconds = 0.0
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
        ray = self.ray
        first = next(inputs, None)
        if first is None:
            return
        actor_cls = ray.remote(Replica).options(
            num_gpus=self.cfg.gpus_per_replica, num_cpus=self.cfg.cpus_per_replica,
            max_concurrency=2)
        self.actors = [actor_cls.remote(self.settings) for _ in range(self.cfg.replicas)]
        got: queue.Queue = queue.Queue()
        owner: dict[int, int] = {}  # block -> actor index
        sent = [0] * len(self.actors)  # blocks handed to each replica so far

        def send(i: int, payload: str | None) -> None:
            self.actors[i].feed.remote(sent[i], payload)
            sent[i] += 1

        def drain(i: int, gen) -> None:
            try:
                for ref in gen:
                    got.put((i, ray.get(ref)))
            except BaseException as e:  # handed to the driver's thread
                got.put((i, e))
            got.put((i, None))

        pending = itertools.chain([first], inputs)
        exhausted = False

        def feed(i: int) -> None:
            """One more block for replica i, or the end of every replica's stream."""
            nonlocal exhausted
            if exhausted:
                return
            inp = next(pending, None)
            if inp is None:
                exhausted = True
                for k in range(len(self.actors)):
                    send(k, None)
                return
            owner[inp.block] = i
            send(i, _block_payload(inp))

        threads = []
        for i, a in enumerate(self.actors):
            gen = a.results.options(num_returns="streaming").remote()
            threads.append(threading.Thread(target=drain, args=(i, gen), daemon=True))
            threads[-1].start()
        for _ in range(BLOCKS_AHEAD):
            for i in range(len(self.actors)):
                feed(i)
        running = len(self.actors)
        while running:
            i, item = got.get()
            if item is None:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise InstmixError(f"Ray replica {i} failed: {item}") from None
            out = _decode(item)
            yield out
            if isinstance(out, BlockEnd):
                owner.pop(out.block)
                feed(i)
        if owner:
            raise InstmixError(f"Ray replicas stopped with blocks {sorted(owner)} unfinished; "
                               "rerun the same command to resume")

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False
