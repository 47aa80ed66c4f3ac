"""Instruction synthesis: raw text -> instruction-response pairs -> augmented documents.

- :func:`build_prompt` / :func:`parse_pairs`: the synthesizer's prompt and output formats.
- ``instmix augment``: M-round chained synthesis with checkpoints (:mod:`.runner`).
- ``kind: augmented``: augment output rendered with the template bank (:mod:`.kind`).
"""

from .parse import parse_pairs
from .prompt import build_prompt

__all__ = ["build_prompt", "parse_pairs"]
