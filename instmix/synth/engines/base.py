"""The engine interface and batch execution with per-prompt failure isolation.

An engine turns token-id prompts into generated text, greedily. It returns one
:class:`Result` per request, matched by request id (any order); a result with ``error``
set marks that prompt failed. :func:`run_batches` sends each batch whole and, when the
engine raises for a batch, retries its prompts one by one so one bad prompt never costs
the others.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from instmix.errors import ConfigError

log = logging.getLogger(__name__)

BUILTIN = {
    "vllm": "instmix.synth.engines.vllm:VllmEngine",
    "openai": "instmix.synth.engines.openai:OpenAIEngine",
    "transformers": "instmix.synth.engines.transformers:TransformersEngine",
}


@dataclass(frozen=True, slots=True)
class Request:
    """One prompt: ``prompt_ids`` start with exactly one BOS; ``prompt`` is the same
    prompt as text (for servers that take text)."""

    id: str
    prompt_ids: Sequence[int]
    prompt: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    text: str = ""
    output_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None


class Engine:
    """Base class. ``cfg`` is the :class:`~instmix.synth.config.SynthesizerConfig`,
    ``tokenizer`` the :class:`~instmix.synth.tokenizer.SynthTokenizer`."""

    name = "engine"

    def __init__(self, cfg, tokenizer):
        self.cfg = cfg
        self.tokenizer = tokenizer

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def create_engine(cfg, tokenizer, where: str = "<dict>") -> Engine:
    """The engine named by ``cfg.engine`` (a built-in name or ``package.module:Class``)."""
    path = BUILTIN.get(cfg.engine, cfg.engine)
    module, _, cls = path.partition(":")
    try:
        engine_cls = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise ConfigError(where, "synthesizer.engine", f"cannot load {path!r}: {e}") from None
    return engine_cls(cfg, tokenizer)


@dataclass
class BatchTimes:
    """Seconds spent inside the engine and tokens it generated."""

    seconds: float = 0.0
    generated: int = 0


def run_batches(engine: Engine, batches: Sequence[Sequence[Request]], limit: int,
                times: BatchTimes | None = None) -> dict[str, Result]:
    """Run ``batches``; every request gets a result. Prompts longer than ``limit`` fail
    without reaching the engine."""
    results: dict[str, Result] = {}
    for batch in batches:
        ok = []
        for r in batch:
            if len(r.prompt_ids) > limit:
                results[r.id] = Result(r.id, error=f"prompt of {len(r.prompt_ids)} tokens "
                                       f"exceeds the limit of {limit}")
            else:
                ok.append(r)
        if not ok:
            continue
        start = time.perf_counter()
        try:
            got = _collect(engine.generate(ok), ok)
        except Exception as e:  # the whole batch failed: isolate the prompt(s) at fault
            log.warning("batch of %d prompts failed (%s); retrying them one by one",
                        len(ok), e)
            got = {}
            for r in ok:
                try:
                    got.update(_collect(engine.generate([r]), [r]))
                except Exception as e1:
                    got[r.id] = Result(r.id, error=f"{type(e1).__name__}: {e1}"[:500])
        if times is not None:
            times.seconds += time.perf_counter() - start
            times.generated += sum(res.output_tokens for res in got.values())
        results.update(got)
    return results


def _collect(results: Sequence[Result], requests: Sequence[Request]) -> dict[str, Result]:
    wanted = {r.id for r in requests}
    got = {res.id: res for res in results if res.id in wanted}
    extra = [res.id for res in results if res.id not in wanted]
    if extra:
        log.warning("engine returned %d results for unknown ids (e.g. %s); ignored",
                    len(extra), extra[0])
    for r in requests:
        if r.id not in got:
            got[r.id] = Result(r.id, error="engine returned no result for this prompt")
    return got
