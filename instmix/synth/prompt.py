"""The synthesizer's prompt format, as text and as token ids.

One raw text is a *context block*: ``<s> <CON> {text} </CON>\\n\\n``. The model continues
with pairs ``<QUE> {question} <ANS> {answer} </END>`` joined by ``\\n\\n`` and ends with
``</s>``. A *demonstration* is a context block, its pairs and ``</s>``; demonstrations are
concatenated with no separator, oldest first, before the context block of the new text.

:func:`build_prompt` writes the markers ``<s>``/``</s>`` as literal text (the published
format). :class:`PromptEncoder` builds the same prompt as token ids: each marker becomes the
tokenizer's BOS/EOS id, the text between markers is encoded with no automatic special
tokens, and special-token strings inside raw text stay text. So a prompt starts with exactly
one BOS, never two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BOS_MARK = "<s>"
EOS_MARK = "</s>"
PAIR_SEP = "\n\n"

Pair = tuple[str, str]
Demo = tuple[str, Sequence[Pair]]


def context_piece(text: str) -> str:
    """The context block without its leading ``<s>``."""
    return f" <CON> {text} </CON>\n\n"


def pairs_piece(pairs: Iterable[Pair]) -> str:
    """Pairs in the output format, joined by a blank line (no trailing ``</s>``)."""
    return PAIR_SEP.join(f"<QUE> {q} <ANS> {a} </END>" for q, a in pairs)


def build_prompt(context: str, demos: Sequence[Demo] = ()) -> str:
    """The prompt for ``context`` after ``demos`` (``(context, [(q, a), ...])``, oldest
    first), as text with literal ``<s>``/``</s>`` markers."""
    parts = [BOS_MARK + context_piece(c) + pairs_piece(p) + EOS_MARK for c, p in demos]
    parts.append(BOS_MARK + context_piece(context))
    return "".join(parts)


class PromptEncoder:
    """Prompts as token ids with a :class:`~instmix.synth.tokenizer.SynthTokenizer`.

    ``limit`` is the longest prompt that leaves room for the answer:
    ``max_model_len - max_new_tokens``.
    """

    def __init__(self, tokenizer, limit: int):
        self.tok = tokenizer
        self.limit = limit
        self.overhead = 1 + len(self.tok.encode_batch([context_piece("")])[0])

    def context_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text's context block, without the BOS."""
        return self.tok.encode_batch([context_piece(t) for t in texts])

    def demo_ids(self, demos: Sequence[Demo]) -> list[list[int]]:
        """Ids of each demonstration's context block and pairs, without BOS and EOS."""
        return self.tok.encode_batch([context_piece(c) + pairs_piece(p) for c, p in demos])

    def assemble(self, demo_pieces: Sequence[Sequence[int]], context: Sequence[int]
                 ) -> list[int]:
        """``[BOS] demo [EOS] ... [BOS] context``: one BOS per block, none added."""
        bos, eos = self.tok.bos_id, self.tok.eos_id
        ids: list[int] = []
        for piece in demo_pieces:
            ids.append(bos)
            ids.extend(piece)
            ids.append(eos)
        ids.append(bos)
        ids.extend(context)
        return ids

    def prompt_ids(self, context: str, demos: Sequence[Demo] = ()) -> list[int]:
        """Token ids of :func:`build_prompt` ``(context, demos)``."""
        return self.assemble(self.demo_ids(demos) if demos else [],
                             self.context_ids([context])[0])
