"""vLLM offline inference: ``LLM.generate`` on token-id prompts, greedy, prefix caching on.

vLLM (>= 0.8) rejects a whole ``generate`` call when one prompt is too long, so prompts
are checked here first (and :func:`~instmix.synth.engines.base.run_batches` isolates any
other failure). ``generate`` returns outputs in the order of its inputs; each output's
``prompt_token_ids`` is checked against its request before the result takes the
request's id. Outputs are decoded here (``detokenize=False`` spares vLLM the work).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from instmix.errors import InstmixError

from .base import Engine, Request, Result


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
            results.append(Result(req.id, self.tokenizer.decode(ids), len(ids),
                                  comp.finish_reason))
        return results
