"""Decoding documents of a build back to text (``instmix inspect``)."""

from __future__ import annotations

from collections.abc import Iterator

from tokenizers import Tokenizer

from instmix.format.manifest import Manifest
from instmix.format.reader import open_tokens, read_index


def decoded_documents(m: Manifest, limit: int, source: str | None = None) -> Iterator[dict]:
    tok = Tokenizer.from_file(m.path(m.tokenizer["path"]))
    shown = 0
    for shard in m.shards:
        if shown >= limit:
            return
        path = m.path(shard["path"])
        tokens = open_tokens(path, m.dtype)
        idx = read_index(path)
        for a, b, doc_id, src in zip(idx.start, idx.end, idx.ids, idx.src):
            if source is not None and src != source:
                continue
            text = tok.decode(tokens[a:b].tolist(), skip_special_tokens=False)
            yield {"shard": shard["path"], "start": int(a), "end": int(b), "id": doc_id,
                   "src": src, "text": text}
            shown += 1
            if shown >= limit:
                return
