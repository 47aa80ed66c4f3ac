"""What every trainer must agree with, read once from a build's manifest.

Exporters and config checks work from :class:`BuildFacts`, never from the raw manifest, so
the rules live in one place: ids must lie in ``[0, vocab_size)``, the token files are read
with ``dtype``, documents end with ``eos_token_id`` (and start with ``bos_token_id`` when it
is set), and a pad id is needed by trainers that pad.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from instmix.errors import InstmixError
from instmix.format.manifest import MANIFEST, load_manifest
from instmix.io import fs

# Tokens that tokenizers use for padding, most specific first. OLMo's GPT-NeoX tokenizer
# names id 1 "<|padding|>"; OLMo 2's dolma2 names id 100277 "<|pad|>".
PAD_NAMES = ("<|padding|>", "<|pad|>", "<pad>", "[PAD]", "<|finetune_right_pad_id|>")


@dataclass(frozen=True)
class ShardFile:
    """One token file of the build, with its mask file and per-source token counts."""

    rel: str
    path: str
    tokens: int
    documents: int
    sources: dict
    mask: str | None = None
    loss_tokens: int | None = None


@dataclass(frozen=True)
class SourceFacts:
    """A source as built: its planned share is ``tokens / total`` (repetitions included)."""

    name: str
    kind: str
    tokens: int
    documents: int
    target_ratio: float
    repetitions: float
    files: tuple[str, ...] = ()  # per_source layout: the source's own token files

    @property
    def mean_document_tokens(self) -> float:
        return self.tokens / self.documents if self.documents else 0.0


@dataclass(frozen=True)
class BuildFacts:
    root: str
    manifest_sha256: str
    dtype: str
    vocab_size: int
    eos_token_id: int
    bos_token_id: int | None
    pad_token_id: int
    pad_token: str | None
    eos_token: str
    tokenizer_path: str
    tokenizer_sha256: str
    layout: str
    total_tokens: int
    documents: int
    seed: int
    shards: tuple[ShardFile, ...]
    sources: tuple[SourceFacts, ...]

    @property
    def has_masks(self) -> bool:
        return bool(self.shards) and all(s.mask for s in self.shards)

    @property
    def loss_tokens(self) -> int:
        return sum(s.loss_tokens or 0 for s in self.shards) if self.has_masks else \
            self.total_tokens

    @property
    def used_sources(self) -> tuple[SourceFacts, ...]:
        """Sources that contribute tokens (a ratio of 0 leaves a source out)."""
        return tuple(s for s in self.sources if s.tokens > 0)

    def share(self, source: SourceFacts) -> float:
        return source.tokens / self.total_tokens if self.total_tokens else 0.0


def chunk_plan(facts: BuildFacts, seq_len: int, where: str) -> tuple[int, int, list[str]]:
    """Concatenate-and-chunk readers (OLMo, OLMo-core FSL) cut each file into ``seq_len``
    instances and drop its last partial one: ``(instances, dropped tokens, warnings)``.
    Raises when no file holds a whole instance."""
    instances = sum(f.tokens // seq_len for f in facts.shards)
    if instances == 0:
        largest = max(f.tokens for f in facts.shards)
        raise InstmixError(f"{where}: seq_len {seq_len} is longer than every token file of the "
                           f"build (largest: {largest:,} tokens), so the trainer would get no "
                           "instance; lower seq_len or build with a larger shard_tokens")
    dropped = facts.total_tokens - instances * seq_len
    warnings = []
    if dropped > 0.05 * facts.total_tokens:
        warnings.append(f"warning: {dropped / facts.total_tokens:.1%} of the tokens are dropped "
                        "at file ends; build with a larger shard_tokens")
    return instances, dropped, warnings


def _pad(tokenizer_json: str, eos_id: int, bos_id: int | None) -> tuple[int, str | None]:
    """The tokenizer's pad token by name; else BOS when documents start with one, else EOS.

    Padding never trains (trainers mask it), but OLMo-core also scans padded instances for
    document boundaries (EOS, or EOS followed by BOS when a BOS id is set): with BOS
    documents, EOS padding would be counted as part of the last document, BOS padding
    is not."""
    try:
        added = json.loads(fs.read_bytes(tokenizer_json)).get("added_tokens") or []
    except (OSError, ValueError, InstmixError):
        added = []
    by_name = {t.get("content"): t.get("id") for t in added if isinstance(t, dict)}
    for name in PAD_NAMES:
        if isinstance(by_name.get(name), int):
            return by_name[name], name
    return (eos_id if bos_id is None else bos_id), None


def load_facts(root: str) -> BuildFacts:
    """Read ``root/manifest.json``; raise InstmixError naming the file and field."""
    m = load_manifest(root)
    where = fs.join(m.root, MANIFEST)  # a build at a URL: its committed generation's copy
    sha = hashlib.sha256(fs.read_bytes(where)).hexdigest()
    try:
        tok = m.tokenizer
        tok_path = m.path(tok["path"])
        bos = tok.get("bos_token_id")
        pad_id, pad_name = _pad(tok_path, int(tok["eos_token_id"]), bos)
        shards = tuple(ShardFile(
            rel=s["path"], path=m.path(s["path"]), tokens=int(s["tokens"]),
            documents=int(s["documents"]), sources=dict(s.get("sources", {})),
            mask=m.path(s["mask"]) if s.get("mask") else None,
            loss_tokens=s.get("loss_tokens")) for s in m.shards)
        per_source = m.data.get("layout", "interleaved") == "per_source"
        sources = tuple(SourceFacts(
            name=s["name"], kind=s.get("kind", "text"), tokens=int(s["tokens"]),
            documents=int(s["documents"]), target_ratio=float(s["target_ratio"]),
            repetitions=float(s.get("repetitions", 0.0)),
            files=tuple(f.path for f in shards if per_source and set(f.sources) == {s["name"]}),
        ) for s in m.sources)
        facts = BuildFacts(
            root=m.root, manifest_sha256=sha, dtype=m.dtype,
            vocab_size=int(tok["vocab_size"]), eos_token_id=int(tok["eos_token_id"]),
            bos_token_id=None if tok.get("bos_token_id") is None else int(tok["bos_token_id"]),
            pad_token_id=pad_id, pad_token=pad_name, eos_token=tok.get("eos_token", ""),
            tokenizer_path=tok_path, tokenizer_sha256=tok.get("sha256", ""),
            layout=m.data.get("layout", "interleaved"), total_tokens=int(m["total_tokens"]),
            documents=int(m.data.get("documents", sum(s.documents for s in shards))),
            seed=int(m.data.get("seed", 0)), shards=shards, sources=sources)
    except KeyError as e:
        raise InstmixError(f"{where}: missing field {e.args[0]!r}") from None
    if not facts.shards or facts.total_tokens == 0:
        raise InstmixError(f"{where}: the build holds no tokens; nothing to export")
    return facts
