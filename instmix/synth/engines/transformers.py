"""Hugging Face ``generate`` (greedy), on CPU or one GPU. Slow; for tests and small runs.

Prompts are sorted by length and left-padded with the EOS id; each row's output stops at
its first EOS.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Engine, Request, Result

_DTYPES = ("float32", "float16", "bfloat16")


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, cfg, tokenizer):
        super().__init__(cfg, tokenizer)
        import torch  # lazy: with transformers, only this engine needs them
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, cfg.dtype) if cfg.dtype in _DTYPES else "auto"
        self.model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
        self.model.to(device).eval()
        self.device = device
        self.torch = torch

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        torch = self.torch
        eos = self.tokenizer.eos_id
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids))
        results: list[Result] = []
        step = self.cfg.batch_size
        for start in range(0, len(order), step):
            rows = [requests[i] for i in order[start:start + step]]
            width = max(len(r.prompt_ids) for r in rows)
            ids = torch.full((len(rows), width), eos, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for k, r in enumerate(rows):
                n = len(r.prompt_ids)
                ids[k, width - n:] = torch.tensor(list(r.prompt_ids), dtype=torch.long)
                mask[k, width - n:] = 1
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=self.cfg.max_new_tokens, do_sample=False,
                    eos_token_id=eos, pad_token_id=eos)
            for k, r in enumerate(rows):
                new = out[k, width:].tolist()
                finish = "length"
                if eos in new:
                    new = new[:new.index(eos)]
                    finish = "stop"
                results.append(Result(r.id, self.tokenizer.decode(new), len(new) +
                                      (finish == "stop"), finish))
        return results
