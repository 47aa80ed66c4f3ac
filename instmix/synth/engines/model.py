"""A model of a continuous-batching GPU server: a test double of the GPU, for tests and
benchmarks (the scheduler under test is the real one).

A deterministic discrete-event model of vLLM V1's engine, step by step:

- at most ``max_num_seqs`` running sequences and ``max_num_batched_tokens`` tokens per
  step; running sequences first (one decode token each, or their next prefill chunk), then
  waiting ones, first come first served (chunked prefill);
- a KV cache of ``num_kv_blocks`` blocks of ``block_size`` tokens; a sequence holds the
  blocks of its computed tokens; when a running one needs a block and none is free, the
  last admitted is preempted (blocks freed, recomputed later);
- an LRU prefix cache over the free blocks: a finished sequence's full blocks keep their
  hash (a chain over the block's tokens and its parent's), are freed tail first, and are
  evicted oldest first when a block is needed; a new prompt reuses the cached blocks of
  its longest cached prefix (never its last token);
- a step costs ``step_s + prefill_s_per_token * prefill tokens + decode_s_per_seq *
  decoding sequences + kv_read_s_per_token * their context tokens`` simulated seconds.

Defaults: vLLM's defaults for an A100-80GB (the GPU of the published speed figure):
``max_num_seqs`` 256, ``max_num_batched_tokens`` 8192 (V1's ``LLM`` defaults for GPUs
other than H100/H200; those get 1024 and 16384), ``block_size`` 16; 26,000 KV blocks
(416k tokens: 0.9 x 80 GB minus 14.5 GB of bf16 weights and ~3 GB of activations, at
128 KiB per token for Mistral-7B's 32 layers x 8 KV heads x 128 dims x 2 (K, V) x 2
bytes). Costs: ~9 ms to read the weights per step (14.5 GB at ~1.6 TB/s), ~0.09 ms per
prefill token (14.5 GFLOP at ~50% of 312 TFLOP/s), rough figures for time estimates only.

Answers are scripted from the prompt alone (so outputs are deterministic): pairs in the
synthesizer's format whose questions and answers copy spans of the text, about
``output_min``-``output_max`` tokens, and a ``cap_share`` of answers running to
``max_new_tokens`` (finish ``length``). Options (``synthesizer.options``) override every
parameter; ``die_at_step`` makes the engine die (like ``EngineDeadError``) at that step,
``fail_on`` fails the prompts whose text holds that string (finish ``error``);
``real_s_per_step`` sleeps that long at every step (tests that need time to pass).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, fields

from instmix.errors import ConfigError

from .base import Engine, EngineUnavailable, Request, Result


@dataclass(frozen=True)
class ModelParams:
    max_num_seqs: int = 1024
    max_num_batched_tokens: int = 16384
    block_size: int = 16
    num_kv_blocks: int = 51_000
    step_s: float = 0.003
    prefill_s_per_token: float = 3e-5
    decode_s_per_seq: float = 1e-5
    kv_read_s_per_token: float = 2.7e-8
    output_min: int = 150
    output_max: int = 350
    cap_share: float = 0.15
    die_at_step: int = 0
    fail_on: str = ""
    real_s_per_step: float = 0.0

    @classmethod
    def of(cls, options) -> ModelParams:
        known = {f.name: f for f in fields(cls)}
        kw = {}
        for k, v in options.items():
            if k not in known:
                raise ConfigError("engine model", f"synthesizer.options.{k}",
                                  f"unknown (known: {', '.join(known)})")
            kw[k] = type(getattr(cls, k))(v)
        return cls(**kw)


class _Seq:
    __slots__ = ("req", "prompt", "out", "finish", "error", "hashes", "blocks", "computed",
                 "made", "cached", "order")

    def __init__(self, req, prompt, out, finish, error, hashes, order):
        self.req, self.prompt, self.out = req, prompt, out
        self.finish, self.error, self.hashes = finish, error, hashes
        self.blocks: list[int] = []
        self.computed = 0  # prompt tokens whose KV is computed
        self.made = 0  # output tokens generated
        self.cached = 0
        self.order = order


class EngineModel(Engine):
    name = "model"

    def __init__(self, cfg, tokenizer):
        super().__init__(cfg, tokenizer)
        self.p = ModelParams.of(cfg.options)
        self.waiting: deque[_Seq] = deque()
        self.running: list[_Seq] = []
        self.free: OrderedDict[int, None] = OrderedDict((b, None)
                                                         for b in range(self.p.num_kv_blocks))
        self.ref = [0] * self.p.num_kv_blocks
        self.hash_of: dict[int, int] = {}
        self.block_of: dict[int, int] = {}
        self.done: list[Result] = []
        self.texts: dict[str, str] = {}
        self.counter = 0
        self.stats = {"steps": 0, "busy_slot_steps": 0, "seconds": 0.0, "prompts": 0,
                      "prompt_tokens": 0, "cached_tokens": 0, "prefill_tokens": 0,
                      "generated_tokens": 0, "preemptions": 0}

    @property
    def capacity(self) -> int:
        return self.p.max_num_seqs + self.p.max_num_seqs // 8

    @property
    def kv_tokens(self) -> int:
        return self.p.num_kv_blocks * self.p.block_size

    @property
    def occupancy(self) -> float:
        s = self.stats
        return s["busy_slot_steps"] / (s["steps"] * self.p.max_num_seqs) if s["steps"] else 0.0

    # ---------------------------------------------------------------- answers ----------

    def script(self, prompt: Sequence[int]) -> tuple[list[int], str, str]:
        """Output ids, their text and the finish reason for a prompt (its last text)."""
        bos = self.tokenizer.bos_id
        last = max(i for i, t in enumerate(prompt) if t == bos)
        context = self.tokenizer.decode(prompt[last + 1:])
        seed = hashlib.sha256(context.encode()).digest()
        rng = random.Random(seed)
        cap = self.cfg.max_new_tokens
        want = cap + 1 if rng.random() < self.p.cap_share else \
            rng.randint(self.p.output_min, self.p.output_max)
        words = context.replace("<CON>", " ").replace("</CON>", " ").split() or ["text"]
        pieces, n, full = [], 0, False
        while not full:
            batch = []
            for _ in range(4):
                a = rng.randrange(len(words))
                b = rng.randrange(len(words))
                q = " ".join(words[a:a + rng.randint(3, 8)])
                ans = " ".join(words[b:b + rng.randint(4, 24)])
                batch.append(f"<QUE> What does the text say about {q}? <ANS> {ans} </END>")
            for piece, k in zip(batch, self.tokenizer.count(batch)):
                if pieces and n + k + 1 > want:
                    full = True
                    break
                pieces.append(piece)
                n += k + 1
        ids = self.tokenizer.encode_batch(["\n\n".join(pieces)])[0]
        if len(ids) >= cap:
            ids = ids[:cap]
            return ids, self.tokenizer.decode(ids), "length"
        return ids + [self.tokenizer.eos_id], "\n\n".join(pieces), "stop"

    def _hashes(self, tokens: Sequence[int]) -> list[int]:
        bs, out, h = self.p.block_size, [], 0
        for i in range(len(tokens) // bs):
            h = hash((h, tuple(tokens[i * bs:(i + 1) * bs])))
            out.append(h)
        return out

    # ---------------------------------------------------------------- engine API -------

    def submit(self, requests: Sequence[Request]) -> None:
        for r in requests:
            prompt = list(r.prompt_ids)
            out, text, finish = self.script(prompt)
            error = None
            if self.p.fail_on and self.p.fail_on in self.tokenizer.decode(prompt):
                error, finish = "engine model: finish_reason error", "error"
            self.counter += 1
            self.waiting.append(_Seq(r, prompt, out, finish, error, self._hashes(prompt + out),
                                     self.counter))
            self.stats["prompts"] += 1
            self.stats["prompt_tokens"] += len(prompt)
            self.texts[r.id] = text

    def poll(self) -> list[Result]:
        while not self.done and (self.running or self.waiting):
            self.step()
        out, self.done = self.done, []
        return out

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        self.submit(requests)
        got: list[Result] = []
        while len(got) < len(requests):
            got += self.poll()
        return got

    # ---------------------------------------------------------------- the model --------

    def _alloc(self) -> int | None:
        if not self.free:
            return None
        b, _ = self.free.popitem(last=False)
        h = self.hash_of.pop(b, None)
        if h is not None and self.block_of.get(h) == b:
            del self.block_of[h]
        self.ref[b] = 1
        return b

    def _release(self, seq: _Seq, keep_hashes: bool) -> None:
        bs = self.p.block_size
        full = (seq.computed + seq.made) // bs
        for i, b in enumerate(seq.blocks):
            if keep_hashes and i < full and i < len(seq.hashes):
                h = seq.hashes[i]
                if h not in self.block_of:
                    self.block_of[h] = b
                    self.hash_of[b] = h
        for b in reversed(seq.blocks):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self.free[b] = None
        seq.blocks = []

    def _grow(self, seq: _Seq, tokens: int) -> bool:
        """Blocks for ``tokens`` computed tokens; False when the cache is full."""
        need = -(-tokens // self.p.block_size) - len(seq.blocks)
        if need > len(self.free):
            return False
        for _ in range(need):
            seq.blocks.append(self._alloc())
        return True

    def _preempt(self) -> None:
        victim = self.running.pop()
        self._release(victim, keep_hashes=False)
        victim.computed = victim.made = victim.cached = 0
        self.waiting.appendleft(victim)
        self.stats["preemptions"] += 1

    def step(self) -> None:
        p, st = self.p, self.stats
        if p.die_at_step and st["steps"] + 1 >= p.die_at_step:
            raise EngineUnavailable(f"engine model died at step {st['steps'] + 1} "
                                    "(EngineDeadError)")
        if p.real_s_per_step:
            time.sleep(p.real_s_per_step)
        budget = p.max_num_batched_tokens
        prefill = decoding = context = 0
        plan: list[tuple[_Seq, int]] = []
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            left = len(seq.prompt) - seq.computed
            n = min(left, budget) if left else 1
            while not self._grow(seq, seq.computed + seq.made + n):
                if self.running[-1] is seq:
                    self._preempt()
                    seq = None
                    break
                self._preempt()
            if seq is None:
                break
            plan.append((seq, n))
            budget -= n
            i += 1
        while self.waiting and len(self.running) < p.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            hits = []
            for h in seq.hashes[:(len(seq.prompt) - 1) // p.block_size]:
                b = self.block_of.get(h)
                if b is None:
                    break
                hits.append(b)
            cached = len(hits) * p.block_size
            n = min(len(seq.prompt) - cached, budget)
            need = -(-(cached + n) // p.block_size) - len(hits)
            free_hits = sum(1 for b in hits if self.ref[b] == 0)
            if need > len(self.free) - free_hits:
                break
            self.waiting.popleft()
            for b in hits:
                if self.ref[b] == 0:
                    del self.free[b]
                self.ref[b] += 1
            seq.blocks = hits
            seq.computed = seq.cached = cached
            self._grow(seq, cached + n)
            self.running.append(seq)
            plan.append((seq, n))
            budget -= n
        if not plan:
            raise RuntimeError("engine model: a prompt cannot fit the KV cache")
        finished = []
        for seq, n in plan:
            if seq.computed < len(seq.prompt):
                seq.computed += n
                prefill += n
                if seq.computed < len(seq.prompt):
                    continue
                seq.made = 1  # the step that ends the prefill samples a token
            else:
                seq.made += 1
                decoding += 1
                context += seq.computed + seq.made
            if seq.made >= len(seq.out):
                finished.append(seq)
        st["steps"] += 1
        st["busy_slot_steps"] += len(plan)
        st["prefill_tokens"] += prefill
        st["seconds"] += (p.step_s + p.prefill_s_per_token * prefill +
                          p.decode_s_per_seq * decoding + p.kv_read_s_per_token * context)
        for seq in finished:
            self.running.remove(seq)
            self._release(seq, keep_hashes=True)
            st["cached_tokens"] += seq.cached
            st["generated_tokens"] += len(seq.out)
            text = self.texts.pop(seq.req.id)
            if seq.error:
                self.done.append(Result(seq.req.id, error=seq.error, cached_tokens=seq.cached))
            else:
                self.done.append(Result(seq.req.id, text, len(seq.out), seq.finish,
                                        cached_tokens=seq.cached))
