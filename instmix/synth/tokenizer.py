"""The synthesizer's tokenizer: budgets are counted in its tokens, prompts built from its ids.

Loaded from a ``tokenizer.json`` (or a folder holding one) with Hugging Face ``tokenizers``;
BOS/EOS are found as for the build tokenizer (``tokenizer_config.json``, then well-known
names such as ``<s>``/``</s>``).
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

from instmix.config import TokenizerSpec
from instmix.errors import ConfigError
from instmix.tokenize.facts import load_tokenizer_info


class SynthTokenizer:
    """Encode without automatic special tokens; special-token strings in text stay text."""

    def __init__(self, path: str, *, bos_token: str | None = None, eos_token: str | None = None,
                 where: str = "<dict>"):

        try:
            info = load_tokenizer_info(TokenizerSpec(path=path, bos_token=bos_token,
                                                     eos_token=eos_token), where=where)
        except ConfigError as e:  # name the synthesizer's key, not the build's
            key = e.key.replace("tokenizer.path", "tokenizer")
            raise ConfigError(where, "synthesizer." + key, str(e).split(": ", 2)[-1]) from None
        if info.bos_token_id is None:
            raise ConfigError(where, "synthesizer.tokenizer",
                              f"{info.path} defines no BOS token; name it with bos_token")
        self.path = info.path
        self.sha256 = info.sha256
        self.bos_id = int(info.bos_token_id)
        self.eos_id = int(info.eos_token_id)
        self._tok = Tokenizer.from_file(info.path)
        self._tok.encode_special_tokens = True

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [e.ids for e in self._tok.encode_batch_fast(list(texts),
                                                           add_special_tokens=False)]

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and their ``(start, end)`` character offsets in ``text``."""
        enc = self._tok.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encode_batch(texts)]

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        """Many id lists -> texts in one call; special tokens are left out."""
        if not batch:
            return []
        return self._tok.decode_batch([[int(i) for i in ids] for ids in batch],
                                      skip_special_tokens=True)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Ids -> text; by default special tokens (BOS/EOS) are left out."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
