"""Packing a stream of documents into fixed-length sequences, restorable at sequence
starts (used by :class:`~instmix.serve.streaming.StreamingMixture`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from .state import IGNORE

if TYPE_CHECKING:
    from .streaming import StreamingMixture
    from .streams import Stream

END = object()  # returned by next_sequence past the stream's end


class Packer:
    """Packs the pipeline's documents into sequences; restorable at sequence starts."""

    def __init__(self, mix: StreamingMixture, pipe: Stream, pos: int):
        self.mix, self.pipe, self.pos = mix, pipe, pos
        self.cur = None  # (source, tokens, mask) of the document being packed
        self.cur_state = None  # pipeline snapshot from just before ``cur`` was drawn
        self.offset = 0

    def snapshot(self) -> dict:
        """The state at this sequence start. Snapshots are fresh dicts that nothing here
        changes afterwards, so consecutive ones may share ``pipeline`` (copied once where
        a state leaves the loader: ``DataLoader.state_dict``)."""
        if self.cur is None:
            return {"pipeline": self.pipe.snapshot(), "offset": 0, "has_doc": False}
        return {"pipeline": self.cur_state, "offset": self.offset, "has_doc": True}

    def restore(self, snap: Mapping) -> None:
        self.pipe.restore(snap["pipeline"])
        self.cur = None
        if snap["has_doc"]:
            self.cur_state = copy.deepcopy(snap["pipeline"])
            self.cur = self.pipe.next_doc()
            self.offset = snap["offset"]

    def next_sequence(self, materialise: bool):
        """The next sequence as an item dict, None when skipped, ``END`` past the end."""
        L = self.mix.seq_len
        ids = labels = None
        if materialise:
            buf = np.empty((2, L), dtype=np.int64)
            ids, labels = buf[0], buf[1]
        lens = []
        filled = 0
        while filled < L:
            if self.cur is None:
                self.cur_state = self.pipe.snapshot()
                self.cur, self.offset = self.pipe.next_doc(), 0
                if self.cur is None:  # end of stream: pad or drop the partial sequence
                    if filled == 0 or self.mix.drop_last:
                        return END
                    if materialise:
                        ids[filled:] = self.mix.info.eos_token_id
                        labels[filled:] = IGNORE
                    lens.append(L - filled)
                    break
            _, tokens, mask = self.cur
            n = min(L - filled, len(tokens) - self.offset)
            if materialise:
                ids[filled:filled + n] = tokens[self.offset:self.offset + n]
                labels[filled:filled + n] = ids[filled:filled + n]
                if mask is not None:
                    labels[filled:filled + n][~mask[self.offset:self.offset + n]] = IGNORE
            lens.append(n)
            filled += n
            self.offset += n
            if self.offset == len(tokens):
                self.cur, self.offset = None, 0
        self.pos += 1
        if not materialise:
            return None
        return {"input_ids": ids, "labels": labels, "doc_lens": lens, "index": self.pos - 1}


def stack(items: list[dict], seq_len: int) -> dict[str, torch.Tensor]:
    """Items as one batch (``doc_lens`` padded to the widest row); none: an empty batch."""
    n = len(items)
    if not n:
        empty = torch.zeros((0, seq_len), dtype=torch.int64)
        return {"input_ids": empty, "labels": empty.clone(),
                "doc_lens": torch.zeros((0, 1), dtype=torch.int64),
                "index": torch.zeros(0, dtype=torch.int64)}
    doc_lens = np.zeros((n, max(len(it["doc_lens"]) for it in items)), dtype=np.int64)
    for i, it in enumerate(items):
        doc_lens[i, :len(it["doc_lens"])] = it["doc_lens"]
    return {"input_ids": torch.from_numpy(np.stack([it["input_ids"] for it in items])),
            "labels": torch.from_numpy(np.stack([it["labels"] for it in items])),
            "doc_lens": torch.from_numpy(doc_lens),
            "index": torch.tensor([it["index"] for it in items], dtype=torch.int64)}
