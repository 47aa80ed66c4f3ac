"""``instmix augment`` configuration: YAML (or a dict) -> validated, frozen dataclasses.

Relative paths resolve against the config file's folder. See ``docs/synthesis.md`` for
every key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from instmix.config import SourceConfig, parse_sources, read_config
from instmix.config.validate import check_keys, choice, number, resolve_path, string
from instmix.errors import ConfigError

ENGINES = ("vllm", "openai", "transformers")
PROMPT_FORMATS = ("tokens", "text")
DEFAULT_BATCH = {"vllm": 1024, "openai": 256, "transformers": 8}
MIN_TEXT_TOKENS = 32  # a prompt must leave at least this many tokens for the text

# keys that only some engines read (a custom "module:Class" engine may read any)
ENGINE_KEYS = {
    "device": ("transformers",),
    "threads": ("transformers",),
    "gpu_memory_utilization": ("vllm",),
    "tensor_parallel_size": ("vllm",),
    "engine_args": ("vllm",),
    "base_url": ("openai",),
    "api_key_env": ("openai",),
    "concurrency": ("openai",),
    "retries": ("openai",),
    "timeout": ("openai",),
    "prompt_format": ("openai",),
}


@dataclass(frozen=True)
class SynthesizerConfig:
    """Which model generates the pairs, and how."""

    engine: str = "vllm"
    model: str = ""
    tokenizer: str = ""
    bos_token: str | None = None
    eos_token: str | None = None
    max_model_len: int = 4096
    max_new_tokens: int = 400
    batch_size: int = 0
    dtype: str = "auto"
    device: str = "auto"
    threads: int | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = None
    concurrency: int = 256
    retries: int = 5
    timeout: float = 600.0
    prompt_format: str = "tokens"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prompt_limit(self) -> int:
        """The longest prompt that leaves room for ``max_new_tokens``."""
        return self.max_model_len - self.max_new_tokens

    def to_dict(self) -> dict:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in fields(self)}

    @classmethod
    def parse(cls, where: str, value: Any, base_dir: Path) -> SynthesizerConfig:
        key = "synthesizer"
        if not isinstance(value, Mapping):
            raise ConfigError(where, key, "expected a mapping")
        check_keys(where, key + ".", value, {f.name for f in fields(cls)})
        engine = value.get("engine", "vllm")
        if not (isinstance(engine, str) and ":" in engine):
            engine = choice(where, key + ".engine", engine, ENGINES)
        for name, engines in ENGINE_KEYS.items():
            if name in value and ":" not in engine and engine not in engines:
                raise ConfigError(where, f"{key}.{name}",
                                  f"only read by engine {' or '.join(engines)}, not {engine}")
        if "model" not in value:
            raise ConfigError(where, key + ".model", "missing")
        local = engine != "openai"
        model = string(where, key + ".model", value["model"])
        if local and ":" not in engine:
            model = resolve_path(base_dir, model)
        tok = value.get("tokenizer")
        if tok is None:
            if not local:
                raise ConfigError(where, key + ".tokenizer", "missing (the openai engine "
                                  "needs the synthesizer's tokenizer to count tokens)")
            tok = model
        tok = resolve_path(base_dir, string(where, key + ".tokenizer", tok))

        def num(name, default, **kw):
            return number(where, f"{key}.{name}", value.get(name, default), **kw)

        threads = value.get("threads")
        cfg = cls(
            engine=engine, model=model, tokenizer=tok,
            bos_token=_opt_str(where, key + ".bos_token", value.get("bos_token")),
            eos_token=_opt_str(where, key + ".eos_token", value.get("eos_token")),
            max_model_len=num("max_model_len", 4096, minimum=1, integer=True),
            max_new_tokens=num("max_new_tokens", 400, minimum=1, integer=True),
            batch_size=num("batch_size", DEFAULT_BATCH.get(engine, 8), minimum=1, integer=True),
            dtype=string(where, key + ".dtype", value.get("dtype", "auto")),
            device=string(where, key + ".device", value.get("device", "auto")),
            threads=None if threads is None else num("threads", threads, minimum=1,
                                                     integer=True),
            gpu_memory_utilization=num("gpu_memory_utilization", 0.9, minimum=0, strict=True),
            tensor_parallel_size=num("tensor_parallel_size", 1, minimum=1, integer=True),
            engine_args=_mapping(where, key + ".engine_args", value.get("engine_args", {})),
            base_url=string(where, key + ".base_url",
                             value.get("base_url", "http://127.0.0.1:8000/v1")).rstrip("/"),
            api_key_env=_opt_str(where, key + ".api_key_env", value.get("api_key_env")),
            concurrency=num("concurrency", 256, minimum=1, integer=True),
            retries=num("retries", 5, minimum=0, integer=True),
            timeout=num("timeout", 600.0, minimum=0, strict=True),
            prompt_format=choice(where, key + ".prompt_format",
                                  value.get("prompt_format", "tokens"), PROMPT_FORMATS),
            options=_mapping(where, key + ".options", value.get("options", {})),
        )
        check_speculative(where, cfg.engine_args.get("speculative_config"))
        if cfg.gpu_memory_utilization > 1:
            raise ConfigError(where, key + ".gpu_memory_utilization", "must be at most 1")
        if cfg.prompt_limit < MIN_TEXT_TOKENS:
            raise ConfigError(where, key + ".max_new_tokens",
                              f"max_model_len ({cfg.max_model_len}) - max_new_tokens "
                              f"({cfg.max_new_tokens}) leaves {cfg.prompt_limit} tokens for "
                              f"the prompt; need at least {MIN_TEXT_TOKENS}")
        return cfg


@dataclass(frozen=True)
class RayConfig:
    """Run blocks on a Ray cluster: ``address`` ``local`` starts one on this machine."""

    address: str = "local"
    replicas: int = 1
    gpus_per_replica: float = 1.0
    cpus_per_replica: float = 1.0
    num_cpus: int | None = None

    @classmethod
    def parse(cls, where: str, value: Any) -> RayConfig | None:
        if value is None or value is False:
            return None
        if value is True:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(where, "ray", "expected a mapping (or true)")
        check_keys(where, "ray.", value, {f.name for f in fields(cls)})
        num_cpus = value.get("num_cpus")
        return cls(
            address=string(where, "ray.address", value.get("address", "local")),
            replicas=number(where, "ray.replicas", value.get("replicas", 1), minimum=1,
                             integer=True),
            gpus_per_replica=number(where, "ray.gpus_per_replica",
                                     value.get("gpus_per_replica", 1), minimum=0),
            cpus_per_replica=number(where, "ray.cpus_per_replica",
                                     value.get("cpus_per_replica", 1), minimum=0),
            num_cpus=None if num_cpus is None else number(where, "ray.num_cpus", num_cpus,
                                                           minimum=1, integer=True),
        )


@dataclass(frozen=True)
class AugmentConfig:
    """Everything ``instmix augment`` needs. Build with :func:`load_augment_config`."""

    synthesizer: SynthesizerConfig
    sources: tuple[SourceConfig, ...]
    output: str
    rounds: int = 2
    block_size: int = 1024
    checkpoint_every: int = 2048
    skip_bad_records: bool = False
    max_failure_rate: float = 0.1
    ray: RayConfig | None = None
    where: str = "<dict>"


_TOP_KEYS = {f.name for f in fields(AugmentConfig)} - {"where"}


def load_augment_config(source: str | os.PathLike | Mapping, *, base_dir: str | None = None
                        ) -> AugmentConfig:
    """Parse a YAML file path or a mapping into an :class:`AugmentConfig`."""
    data, where, base = read_config(source, base_dir)
    check_keys(where, "", data, _TOP_KEYS)
    for required in ("synthesizer", "sources", "output"):
        if required not in data:
            raise ConfigError(where, required, "missing")
    sources = parse_sources(where, data, base)
    for i, src in enumerate(sources):
        if src.kind == "augmented":
            raise ConfigError(where, f"sources[{i}].kind",
                              "augment reads raw text; 'augmented' is its output")
    skip = data.get("skip_bad_records", False)
    if not isinstance(skip, bool):
        raise ConfigError(where, "skip_bad_records", "expected true or false")
    synth = SynthesizerConfig.parse(where, data["synthesizer"], base)
    ray = RayConfig.parse(where, data.get("ray"))
    if ray is not None and synth.engine == "vllm" and \
            ray.gpus_per_replica < synth.tensor_parallel_size:
        raise ConfigError(where, "ray.gpus_per_replica",
                          f"{ray.gpus_per_replica:g} is less than synthesizer."
                          f"tensor_parallel_size ({synth.tensor_parallel_size}); give each "
                          "replica at least one GPU per tensor-parallel rank")
    rate = number(where, "max_failure_rate", data.get("max_failure_rate", 0.1), minimum=0)
    if not rate <= 1:
        raise ConfigError(where, "max_failure_rate", "must be at most 1 (a share of prompts)")
    return AugmentConfig(
        synthesizer=synth,
        sources=sources,
        output=resolve_path(base, string(where, "output", data["output"])),
        rounds=number(where, "rounds", data.get("rounds", 2), minimum=1, integer=True),
        block_size=number(where, "block_size", data.get("block_size", 1024), minimum=1,
                           integer=True),
        checkpoint_every=number(where, "checkpoint_every", data.get("checkpoint_every", 2048),
                                 minimum=1, integer=True),
        skip_bad_records=skip,
        max_failure_rate=rate,
        ray=ray,
        where=where,
    )


NGRAM_METHODS = ("ngram", "ngram_gpu")


def check_speculative(where: str, spec: Any) -> None:
    """``engine_args.speculative_config`` for n-gram (prompt-lookup) speculation: a method,
    ``num_speculative_tokens`` K >= 1 and ``prompt_lookup_min <= prompt_lookup_max``.
    Other methods go to vLLM unchecked."""
    key = "synthesizer.engine_args.speculative_config"
    if spec is None:
        return
    if not isinstance(spec, Mapping) or not isinstance(spec.get("method"), str):
        raise ConfigError(where, key, "expected a mapping with a method (e.g. {method: "
                          "ngram, num_speculative_tokens: 4, prompt_lookup_max: 4})")
    if spec["method"] not in NGRAM_METHODS:
        return
    k = number(where, key + ".num_speculative_tokens", spec.get("num_speculative_tokens"),
                minimum=1, integer=True)
    hi = number(where, key + ".prompt_lookup_max", spec.get("prompt_lookup_max", k),
                 minimum=1, integer=True)
    lo = number(where, key + ".prompt_lookup_min", spec.get("prompt_lookup_min", 1),
                 minimum=1, integer=True)
    if lo > hi:
        raise ConfigError(where, key + ".prompt_lookup_min",
                          f"{lo} is more than prompt_lookup_max ({hi})")


def _opt_str(where: str, key: str, value: Any) -> str | None:
    return None if value is None else string(where, key, value)


def _mapping(where: str, key: str, value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(where, key, "expected a mapping")
    return dict(value)
