"""The engine interface: batch ``generate`` or continuous ``submit``/``poll``.

An engine turns token-id prompts into generated text, greedily, one :class:`Result` per
request matched by id; a result with ``error`` set marks that prompt failed (the engine is
alive, the prompt is at fault). :class:`EngineUnavailable` means the engine itself is dead
or unreachable: the run stops and nothing is recorded for the prompts in flight.

Continuous engines (vLLM, OpenAI, the engine model) take prompts with :meth:`Engine.submit`
and return each result from :meth:`Engine.poll` as soon as it is done, so the runner keeps
``capacity`` prompts in flight. A batch engine implements only :meth:`Engine.generate`; the
default ``submit``/``poll`` run everything submitted as one batch, and a batch that raises
is split in halves until the prompt(s) at fault are alone (:func:`generate_isolated`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from instmix.errors import ConfigError, InstmixError

log = logging.getLogger(__name__)

BUILTIN = {
    "vllm": "instmix.synth.engines.vllm:VllmEngine",
    "openai": "instmix.synth.engines.openai:OpenAIEngine",
    "transformers": "instmix.synth.engines.transformers:TransformersEngine",
}


class EngineUnavailable(InstmixError):
    """The engine is dead or unreachable: stop the run, record nothing as failed."""


@dataclass(frozen=True, slots=True)
class Request:
    """One prompt: ``prompt_ids`` start with exactly one BOS; ``prompt`` is the same
    prompt as text (for servers that take text)."""

    id: str
    prompt_ids: Sequence[int]
    prompt: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """``cached_tokens``: prompt tokens the engine's prefix cache served (None: unknown)."""

    id: str
    text: str = ""
    output_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    cached_tokens: int | None = None


class Engine:
    """Base class. ``cfg`` is the :class:`~instmix.synth.config.SynthesizerConfig`,
    ``tokenizer`` the :class:`~instmix.synth.tokenizer.SynthTokenizer`."""

    name = "engine"

    def __init__(self, cfg, tokenizer):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self._queued: list[Request] = []

    @property
    def capacity(self) -> int:
        """How many prompts the runner keeps in flight."""
        return self.cfg.batch_size

    @property
    def kv_tokens(self) -> int | None:
        """Tokens the engine's KV cache holds (None: unknown or no limit). The runner keeps
        the prompts in flight, each counted with room for its whole answer, within it."""
        return None

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        raise NotImplementedError

    def submit(self, requests: Sequence[Request]) -> None:
        self._queued.extend(requests)

    def poll(self) -> list[Result]:
        """Results of submitted prompts, at least one while any is in flight."""
        batch, self._queued = self._queued, []
        return list(generate_isolated(self, batch).values()) if batch else []

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


def generate_isolated(engine: Engine, requests: Sequence[Request]) -> dict[str, Result]:
    """``engine.generate(requests)``; a batch that raises is split in halves, recursively,
    so a bad prompt costs about ``2 log2(n)`` calls and only itself fails.
    :class:`EngineUnavailable` (and anything not an ``Exception``) passes through."""
    try:
        return collect(engine.generate(requests), requests)
    except EngineUnavailable:
        raise
    except Exception as e:
        if len(requests) == 1:
            return {requests[0].id: Result(requests[0].id,
                                           error=f"{type(e).__name__}: {e}"[:500])}
        log.warning("batch of %d prompts failed (%s); splitting it in halves",
                    len(requests), e)
        half = len(requests) // 2
        return {**generate_isolated(engine, requests[:half]),
                **generate_isolated(engine, requests[half:])}


def run_batches(engine: Engine, batches: Sequence[Sequence[Request]], limit: int
                ) -> dict[str, Result]:
    """Run ``batches`` one after the other; every request gets a result. Prompts longer
    than ``limit`` fail without reaching the engine."""
    results: dict[str, Result] = {}
    for batch in batches:
        ok = []
        for r in batch:
            if len(r.prompt_ids) > limit:
                results[r.id] = too_long(r, limit)
            else:
                ok.append(r)
        if ok:
            results.update(generate_isolated(engine, ok))
    return results


def too_long(r: Request, limit: int) -> Result:
    return Result(r.id, error=f"prompt of {len(r.prompt_ids)} tokens exceeds the limit of "
                  f"{limit}")


def collect(results: Sequence[Result], requests: Sequence[Request]) -> dict[str, Result]:
    """Results by request id; a request without one gets a failed result."""
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
