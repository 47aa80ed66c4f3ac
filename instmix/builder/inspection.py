"""Decoding documents of a build back to text (``instmix inspect``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from tokenizers import Tokenizer

from instmix.format.manifest import Manifest
from instmix.format.reader import open_tokens, read_index
from instmix.io import fs


def decoded_documents(m: Manifest, limit: int, source: str | None = None) -> Iterator[dict]:
    """The first ``limit`` documents (of ``source``), decoded; a build at a URL is read by
    ranged requests."""
    so = m.storage_options
    tok = Tokenizer.from_str(fs.read_bytes(m.path(m.tokenizer["path"]), so).decode("utf-8"))
    shown = 0
    for shard in m.shards:
        if shown >= limit:
            return
        path = m.path(shard["path"])
        tokens = open_tokens(path, m.dtype, so, length=shard["tokens"])
        idx = read_index(path, so)
        for a, b, doc_id, src in zip(idx.start, idx.end, idx.ids, idx.src):
            if source is not None and src != source:
                continue
            text = tok.decode(tokens[a:b].tolist(), skip_special_tokens=False)
            yield {"shard": shard["path"], "start": int(a), "end": int(b), "id": doc_id,
                   "src": src, "text": text}
            shown += 1
            if shown >= limit:
                return


def removed_lines(m: Manifest, source: str | None = None) -> Iterator[str]:
    """The clean stage's listing (``removed.jsonl``), one line per removed document or
    pair: ``source id [pair N] reason -> match``."""
    index = m.data.get("removed_index")
    if index is None:
        yield "(nothing removed: the build has no dedup, decontaminate or filters)"
        return
    yield f"\nremoved ({index['records']:,} records):"
    with open(m.path(index["path"]), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if source is not None and r["source"] != source:
                continue
            what = f"{r['source']} {r['id']}" + (f" pair {r['pair']}" if "pair" in r else "")
            if "match" in r:
                jac = f" (Jaccard {r['jaccard']:.2f})" if "jaccard" in r else ""
                yield f"{what}  {r['reason']} of {r['match']['source']} {r['match']['id']}{jac}"
            elif "eval" in r:
                yield f"{what}  {r['reason']}: eval record {r['eval']}"
            else:
                yield f"{what}  {r['reason']}"
