"""Source kinds: how the records of a source become documents.

Built in: ``text`` (one field holds the document) and ``openorca`` (``"{question}
{response}"``, one space, as the Instruction Pre-Training recipe writes general
instructions). Other kinds register themselves in :mod:`instmix.sources.registry`.

Empty documents (nothing but whitespace) are skipped and counted as ``empty``; that is the
documented policy, not an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from instmix.errors import InputError
from instmix.io.readers import iter_records

if TYPE_CHECKING:
    from instmix.config import SourceConfig

@dataclass(frozen=True, slots=True)
class Part:
    """A removable part of a document, such as a synthesized pair: the strings the clean
    stage checks (decontamination, pair filters) and the context the answer is about."""

    question: str
    answer: str
    context: str


@dataclass(frozen=True, slots=True)
class Cut:
    """Characters ``[start, end)`` of a document's text that can be left out at plan time,
    without re-tokenizing (documents with cuts are tokenized piece by piece at their ends).

    ``parts = (lo, hi)``: the text of parts ``lo..hi-1`` (a pair's own text is ``(p, p+1)``,
    an entry's heading that of all its pairs); it stays while one of those parts stays.
    ``parts = None``: a separator; it stays while some kept text precedes it and some kept
    text follows it before the next separator."""

    start: int
    end: int
    parts: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class Document:
    """One training document. ``spans`` are ``(start, end)`` character ranges that carry
    loss when a source trains on responses only (``None``: every character does).
    ``tags`` are ``(key, value)`` labels counted into the build's composition report
    (e.g. ``("layout", "classic")``); a key may repeat. ``parts`` and ``cuts`` (sorted,
    disjoint) let the clean stage remove parts of a document (see :class:`Cut`)."""

    id: str
    text: str
    spans: tuple[tuple[int, int], ...] | None = None
    tags: tuple[tuple[str, str], ...] = ()
    parts: tuple[Part, ...] = ()
    cuts: tuple[Cut, ...] = ()


def kept_cuts(cuts: Sequence[tuple[int, int]], gaps: Sequence[bool],
              removed: Sequence[bool]) -> list[bool]:
    """Which cuts stay when the parts flagged in ``removed`` go. ``cuts[i]`` is the
    ``parts`` range of cut ``i`` (``(-1, -1)`` for a separator); ``gaps[i]`` says whether
    fixed text lies between cut ``i - 1`` and cut ``i`` (``gaps[len(cuts)]``: after the
    last cut)."""
    own = [lo < 0 or not all(removed[lo:hi]) for lo, hi in cuts]
    keep = list(own)
    for i, (lo, _) in enumerate(cuts):
        if lo >= 0:
            continue
        before = any(gaps[:i + 1]) or any(own[k] and cuts[k][0] >= 0 for k in range(i))
        after = gaps[i + 1]
        k = i + 1
        while not after and k < len(cuts) and cuts[k][0] >= 0:
            after = own[k] or gaps[k + 1]
            k += 1
        keep[i] = before and after
    return keep


class Kind:
    """Base class. ``per_file`` kinds turn each input file into documents independently
    (so a changed file re-tokenizes alone); others read the source's files together."""

    per_file = True
    has_parts = False  # documents carry removable parts (see Document.parts)

    def fields(self, src: SourceConfig) -> list[str] | None:
        """Record fields this kind reads (lets table formats skip other columns)."""
        return None

    def groups(self, paths: Sequence[str]) -> list[list[str]]:
        """A non-per-file kind's files as groups whose documents it makes independently,
        in its reading order, provided no document id occurs in two groups (the builder
        checks that, and reads the files together when it does not hold). Default: one."""
        return [list(paths)]

    def document(self, src: SourceConfig, path: str, label: str, pos: int, record: Mapping
                 ) -> Document | None:
        """One record -> a document, or ``None`` when it is empty."""
        raise NotImplementedError

    def documents(self, src: SourceConfig, paths: Sequence[str], label: str, *,
                  skip_bad: bool, stats: dict, select: Callable[[int], bool] | None = None
                  ) -> Iterator[Document]:
        """Yield the documents of ``paths`` (one path for per-file kinds).

        ``label`` names the file in default document ids (``label:position``). ``select``
        keeps the records whose 0-based ordinal over ``paths`` it accepts (the others are
        not parsed).
        """
        columns = self.fields(src)
        base = 0
        for path in paths:
            seen = [0]

            def keep(i: int, base=base, seen=seen) -> bool:
                seen[0] = i + 1
                return select is None or select(base + i)

            for pos, rec in iter_records(path, columns=columns, txt_unit=src.txt_unit,
                                         skip_bad=skip_bad, stats=stats, select=keep,
                                         storage_options=src.storage_options):
                try:
                    doc = self.document(src, path, label, pos, rec)
                except InputError:
                    if not skip_bad:
                        raise
                    _count(stats, "bad_field")
                    continue
                if doc is None:
                    _count(stats, "empty")
                    continue
                yield doc
            base += seen[0]


def _count(stats: dict, reason: str) -> None:
    stats[reason] = stats.get(reason, 0) + 1


def field_str(record: Mapping, name: str, path: str, pos: int) -> str:
    """The string value of ``record[name]``; a missing or non-string field is an InputError."""
    try:
        value: Any = record[name]
    except KeyError:
        keys = ", ".join(sorted(map(str, record))[:8]) or "none"
        raise InputError(path, pos, name, f"missing (record has: {keys})") from None
    if not isinstance(value, str):
        raise InputError(path, pos, name, f"expected a string, got {type(value).__name__}")
    return value


def doc_id(src: SourceConfig, record: Mapping, path: str, label: str, pos: int) -> str:
    """``record[id_field]`` when configured, else ``label:position``."""
    if src.id_field is None:
        return f"{label}:{pos}"
    value = record.get(src.id_field)
    if value is None:
        raise InputError(path, pos, src.id_field, "missing")
    return str(value)


class TextKind(Kind):
    def fields(self, src: SourceConfig) -> list[str]:
        return [src.text_field] + ([src.id_field] if src.id_field else [])

    def document(self, src: SourceConfig, path: str, label: str, pos: int, record: Mapping
                 ) -> Document | None:
        text = field_str(record, src.text_field, path, pos)
        if not text.strip():
            return None
        return Document(doc_id(src, record, path, label, pos), text)


class OpenOrcaKind(Kind):
    """``"{question} {response}"``; with ``loss: responses`` only the response trains."""

    def fields(self, src: SourceConfig) -> list[str]:
        return [src.question_field, src.response_field] + ([src.id_field] if src.id_field else [])

    def document(self, src: SourceConfig, path: str, label: str, pos: int, record: Mapping
                 ) -> Document | None:
        q = field_str(record, src.question_field, path, pos)
        r = field_str(record, src.response_field, path, pos)
        if not q.strip() or not r.strip():
            return None
        text = f"{q} {r}"
        return Document(doc_id(src, record, path, label, pos), text, ((len(q) + 1, len(text)),))


BUILTIN_KINDS: dict[str, type[Kind]] = {"text": TextKind, "openorca": OpenOrcaKind}


def batch_documents(docs: Iterable[Document], chars: int) -> Iterator[list[Document]]:
    """Documents in consecutive batches of about ``chars`` characters of text (the last
    document of a batch is the one that reaches it)."""
    batch: list[Document] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc.text)
        if size >= chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
