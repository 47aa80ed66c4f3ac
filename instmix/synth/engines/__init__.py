"""Generation engines: ``vllm``, ``openai``, ``transformers``, or ``package.module:Class``."""

from .base import Engine, Request, Result, create_engine, run_batches

__all__ = ["Engine", "Request", "Result", "create_engine", "run_batches"]
