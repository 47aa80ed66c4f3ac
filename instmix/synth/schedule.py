"""Keep the engine busy: continuous M-shot chains over several blocks in flight.

The scheduler keeps ``engine.capacity`` prompts in flight (and, when the engine tells
its KV cache size, no more than ``KV_SHARE`` of it, each prompt counted with room for its
whole answer). When a result arrives its slot's next prompt is planned at once and goes
first: the newest continuation is sent before older ones and before any new work, so a
chain's next prompt follows its previous one closely in time, while that prompt's KV
blocks are the most recently freed ones in the engine's prefix cache (an LRU cache evicts
the oldest first): cache-aware order. Round-0 prompts of new blocks fill the rest; a new
block is taken when the queue runs short, from a thread that reads and segments blocks
ahead. Parts are yielded as they complete, then each block's end.

Failures: a result with ``error`` is a failed entry. :class:`FailureGuard` stops the run
when failures pile up (a systematic problem, not a bad prompt); an
:class:`~instmix.synth.engines.base.EngineUnavailable` from the engine stops it at once.
Either way the prompts in flight are dropped, not recorded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator

from instmix.errors import InstmixError

from .block import BlockEnd, BlockInput, BlockState, Part, Settings
from .chain import Planned
from .engines.base import Engine, Request, too_long
from .prompt import BOS_MARK, EOS_MARK, PromptEncoder, build_prompt
from .segment import segment_documents

KV_SHARE = 0.8  # of the KV cache for prompts in flight; the rest keeps their prefixes cached


class FailureGuard:
    """Stops the run when more than ``rate`` of the last ``window`` results failed (once
    at least ``least`` of them did)."""

    def __init__(self, rate: float, window: int = 200, least: int = 10):
        self.rate, self.least = rate, least
        self.recent: deque[bool] = deque(maxlen=window)
        self.failures = 0
        self.first: str | None = None

    def add(self, error: str | None) -> None:
        if len(self.recent) == self.recent.maxlen and self.recent[0]:
            self.failures -= 1
        self.recent.append(error is not None)
        if error is not None:
            self.failures += 1
            self.first = self.first or error
        if self.failures >= self.least and self.failures > self.rate * len(self.recent):
            raise InstmixError(
                f"synthesis stopped: {self.failures} of the last {len(self.recent)} prompts "
                f"failed (max_failure_rate {self.rate}; first error: {self.first}); fix the "
                "engine and rerun the same command (add --retry-failed to redo failed "
                "prompts)")


class Prefetch:
    """Reads and segments blocks in a thread, ``ahead`` blocks in advance."""

    _END = object()

    def __init__(self, inputs: Iterator[BlockInput], encoder: PromptEncoder, ahead: int = 2):
        self.q: queue.Queue = queue.Queue(maxsize=ahead)
        self.stop = threading.Event()
        self.done = False
        self.thread = threading.Thread(target=self._work, args=(inputs, encoder), daemon=True,
                                       name="instmix-segment")
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, inputs, encoder) -> None:
        try:
            for inp in inputs:
                if not self._put((inp, segment_documents(inp.docs, encoder))):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the scheduler's thread
            self._put(e)

    def get(self, wait: bool):
        """The next ``(BlockInput, segmented)``; None when none is ready (``wait`` False)
        or when there are no more."""
        if self.done:
            return None
        try:
            item = self.q.get(block=wait)
        except queue.Empty:
            return None
        if item is self._END:
            self.done = True
            return None
        if isinstance(item, BaseException):
            self.done = True
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class Scheduler:
    """Runs blocks against one engine; see the module docstring."""

    def __init__(self, settings: Settings, encoder: PromptEncoder, engine: Engine):
        self.settings = settings
        self.encoder = encoder
        self.engine = engine
        synth = settings.synthesizer
        self.limit = synth.prompt_limit
        self.text_prompts = synth.engine == "openai" and synth.prompt_format == "text"
        self.guard = FailureGuard(settings.max_failure_rate)
        self.engine_seconds = 0.0

    def _request(self, plan: Planned) -> Request:
        text = ""
        if self.text_prompts:
            text = build_prompt(plan.text.text, [d.demo for d in plan.demos])
            n = len(plan.demos)
            if text.count(BOS_MARK) != n + 1 or text.count(EOS_MARK) != n:
                text = ""  # a marker inside raw text: send ids, where it stays text
        return Request(plan.text.id, plan.prompt_ids, text)

    def run(self, inputs: Iterator[BlockInput]) -> Iterator[Part | BlockEnd]:
        """Yield every part that had to be generated and every block's end."""
        barrier = self.settings.schedule == "barrier"
        prefetch = Prefetch(inputs, self.encoder, ahead=1 if barrier else 2)
        try:
            if barrier:
                yield from self._run_barrier(prefetch)
            else:
                yield from self._run_continuous(prefetch)
        finally:
            prefetch.close()

    def _admit(self, prefetch: Prefetch, wait: bool, barrier: bool = False):
        got = prefetch.get(wait)
        if got is None:
            return None
        inp, segmented = got
        state = BlockState(inp, self.settings, self.encoder, segmented, barrier=barrier)
        return state, state.start()

    def _run_continuous(self, prefetch: Prefetch) -> Iterator[Part | BlockEnd]:
        cap = max(1, self.engine.capacity)
        kv = self.engine.kv_tokens
        kv = None if kv is None else int(kv * KV_SHARE)
        room = self.settings.synthesizer.max_new_tokens
        held = 0  # KV tokens the prompts in flight may take, answers included
        nexts: deque[tuple[BlockState, int, Planned]] = deque()  # chains going on
        firsts: deque[tuple[BlockState, int, Planned]] = deque()  # new blocks' round 0
        flight: dict[str, tuple[BlockState, int, Planned]] = {}
        live: dict[int, BlockState] = {}
        while True:
            while not prefetch.done and len(nexts) + len(firsts) < cap:
                got = self._admit(prefetch, wait=not (flight or nexts or firsts))
                if got is None:
                    break
                state, slots = got
                if state.complete:
                    yield state.end()
                    continue
                live[state.block] = state
                firsts.extend((state, 0, p) for p in state.plan(slots))
            if not (flight or nexts or firsts):
                if prefetch.done:
                    return
                continue
            batch = []
            while len(flight) + len(batch) < cap and (nexts or firsts):
                at = -1 if nexts else 0  # the newest continuation: its prefix is freshest
                queue_ = nexts or firsts
                plan = queue_[at][2]
                cost = len(plan.prompt_ids) + room
                if kv is not None and flight and held + cost > kv:
                    break  # more would only wait, or preempt, inside the engine
                state, _, plan = queue_.pop() if at else queue_.popleft()
                item = (state, state.round_of(plan), plan)
                if len(plan.prompt_ids) > self.limit:
                    yield from self._finish(item, too_long(self._request(plan), self.limit),
                                            nexts, live)
                    continue
                flight[plan.text.id] = item
                held += cost
                batch.append(self._request(plan))
            t = time.perf_counter()
            if batch:
                self.engine.submit(batch)
            results = self.engine.poll() if flight else []
            self.engine_seconds += time.perf_counter() - t
            for res in results:
                item = flight.pop(res.id, None)
                if item is not None:
                    held -= len(item[2].prompt_ids) + room
                    yield from self._finish(item, res, nexts, live)

    def _finish(self, item, res, nexts: deque, live: dict) -> Iterator[Part | BlockEnd]:
        state, r, plan = item
        self.guard.add(res.error)
        parts, slots = state.finish(r, plan, res)
        yield from parts
        if slots:
            nexts.extend((state, 0, p) for p in state.plan(slots))
        if state.complete and live.pop(state.block, None) is not None:
            yield state.end()

    def _run_barrier(self, prefetch: Prefetch) -> Iterator[Part | BlockEnd]:
        bs = self.settings.synthesizer.batch_size
        while (got := self._admit(prefetch, wait=True, barrier=True)) is not None:
            state, slots = got
            while slots:
                plans = sorted(state.plan(slots), key=lambda p: (-len(p.prompt_ids),
                                                                 p.position))
                slots = []
                for k in range(0, len(plans), bs):
                    todo = {}
                    for plan in plans[k:k + bs]:
                        item = (state, state.round_of(plan), plan)
                        if len(plan.prompt_ids) > self.limit:
                            res = too_long(self._request(plan), self.limit)
                            parts, more = self._finish_one(item, res)
                            yield from parts
                            slots += more
                        else:
                            todo[plan.text.id] = item
                    t = time.perf_counter()
                    self.engine.submit([self._request(p) for _, _, p in todo.values()])
                    while todo:
                        for res in self.engine.poll():
                            if (item := todo.pop(res.id, None)) is not None:
                                parts, more = self._finish_one(item, res)
                                yield from parts
                                slots += more
                    self.engine_seconds += time.perf_counter() - t
            yield state.end()

    def _finish_one(self, item, res):
        state, r, plan = item
        self.guard.add(res.error)
        return state.finish(r, plan, res)
