"""vLLM offline inference on token-id prompts, greedy, prefix caching on.

Continuous: :meth:`VllmEngine.submit` hands each prompt to the engine
(``LLM.llm_engine.add_request``) and :meth:`VllmEngine.poll` runs the engine's step loop
(``llm_engine.step()``) until some requests finish, so new prompts join the running batch
at every step instead of waiting for the slowest sequence of a ``generate`` call. The
runner keeps ``max_num_seqs`` plus an eighth prompts in flight, enough to refill every
slot without a long waiting queue (which would let the prefix cache evict a chain's last
prompt before its next one is admitted).

Each output's ``prompt_token_ids`` is checked against its request; outputs are decoded
here in one batch (``detokenize=False`` spares vLLM the work); ``num_cached_tokens`` is
kept as the result's ``cached_tokens``. ``finish_reason`` ``abort`` or ``error`` makes the
prompt failed (not an entry without pairs). A prompt vLLM refuses at ``add_request`` fails
alone; an exception from ``step()`` (``EngineDeadError`` ...) means the engine is gone:
:class:`~instmix.synth.engines.base.EngineUnavailable`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from instmix.errors import InstmixError

from .base import Engine, EngineUnavailable, Request, Result

FAILED_FINISH = ("abort", "error")


class VllmEngine(Engine):
    name = "vllm"

    def __init__(self, cfg, tokenizer):
        super().__init__(cfg, tokenizer)
        try:
            from vllm import LLM, SamplingParams  # lazy: optional extra, needs a CUDA GPU
        except ImportError:
            raise InstmixError("engine 'vllm' needs vLLM: pip install 'instmix[vllm]'") from None
        # vLLM takes a tokenizer folder; a bare tokenizer.json: let it use the model's
        tokenizer = cfg.tokenizer if os.path.isdir(cfg.tokenizer) else cfg.model
        kwargs = dict(model=cfg.model, tokenizer=tokenizer, max_model_len=cfg.max_model_len,
                      enable_prefix_caching=True, dtype=cfg.dtype,
                      gpu_memory_utilization=cfg.gpu_memory_utilization,
                      tensor_parallel_size=cfg.tensor_parallel_size, seed=0)
        kwargs.update(cfg.engine_args)
        self.llm = LLM(**kwargs)
        self.params = SamplingParams(temperature=0.0, max_tokens=cfg.max_new_tokens,
                                     detokenize=False)
        self.flight: dict[str, list[int]] = {}
        self.refused: list[Result] = []

    @property
    def capacity(self) -> int:
        try:
            seqs = int(self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs)
        except (AttributeError, TypeError, ValueError):
            return self.cfg.batch_size
        return seqs + seqs // 8

    @property
    def kv_tokens(self) -> int | None:
        try:
            cache = self.llm.llm_engine.vllm_config.cache_config
            return int(cache.num_gpu_blocks) * int(cache.block_size)
        except (AttributeError, TypeError, ValueError):
            return None

    def submit(self, requests: Sequence[Request]) -> None:
        engine = self.llm.llm_engine
        for r in requests:
            ids = list(r.prompt_ids)
            try:
                engine.add_request(r.id, {"prompt_token_ids": ids}, self.params)
            except (ValueError, TypeError) as e:  # this prompt only (too long, bad ids)
                self.refused.append(Result(r.id, error=f"{type(e).__name__}: {e}"[:500]))
                continue
            self.flight[r.id] = ids

    def poll(self) -> list[Result]:
        if self.refused:
            out, self.refused = self.refused, []
            return out
        engine = self.llm.llm_engine
        while self.flight:
            try:
                done = [o for o in engine.step() if o.finished]
                if not done and not engine.has_unfinished_requests():
                    lost, self.flight = list(self.flight), {}
                    return [Result(i, error="vLLM dropped this request") for i in lost]
            except Exception as e:  # EngineDeadError and the like: the engine is gone
                raise EngineUnavailable(f"vLLM engine failed: {type(e).__name__}: {e}"
                                        ) from None
            if done:
                return self._results(done)
        return []

    def _results(self, outputs) -> list[Result]:
        ids = [list(o.outputs[0].token_ids) for o in outputs]
        texts = self.tokenizer.decode_batch(ids)
        results = []
        for out, toks, text in zip(outputs, ids, texts):
            prompt = self.flight.pop(out.request_id, None)
            if prompt is None:
                continue
            comp = out.outputs[0]
            cached = getattr(out, "num_cached_tokens", None)
            if out.prompt_token_ids is not None and list(out.prompt_token_ids) != prompt:
                results.append(Result(out.request_id, error="vLLM output does not match its "
                                      "prompt"))
            elif comp.finish_reason in FAILED_FINISH:
                results.append(Result(out.request_id, error=f"vLLM finish_reason "
                                      f"{comp.finish_reason}", cached_tokens=cached))
            else:
                results.append(Result(out.request_id, text, len(toks), comp.finish_reason,
                                      cached_tokens=cached))
        return results

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in requests]
        outputs = self.llm.generate(prompts, self.params, use_tqdm=False)
        if len(outputs) != len(requests):
            raise InstmixError(f"vLLM returned {len(outputs)} outputs for {len(requests)} "
                               "prompts")
        results = []
        for req, prompt, out in zip(requests, prompts, outputs):
            if out.prompt_token_ids is not None and list(out.prompt_token_ids) != \
                    prompt["prompt_token_ids"]:
                raise InstmixError(f"vLLM output {out.request_id} does not match prompt "
                                   f"{req.id}")
            comp = out.outputs[0]
            ids = list(comp.token_ids)
            if comp.finish_reason in FAILED_FINISH:
                results.append(Result(req.id, error=f"vLLM finish_reason {comp.finish_reason}"))
                continue
            results.append(Result(req.id, self.tokenizer.decode(ids), len(ids),
                                  comp.finish_reason,
                                  cached_tokens=getattr(out, "num_cached_tokens", None)))
        return results
