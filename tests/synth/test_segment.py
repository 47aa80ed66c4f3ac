"""Length budgets in the synthesizer's tokens: splitting long texts, non-English, code."""

from instmix.synth.segment import segment_documents, split_text


def _fits(encoder, piece):
    return 1 + len(encoder.context_ids([piece])[0]) <= encoder.limit


def _squash(s):
    return "".join(s.split())


def test_text_that_fits_is_one_unchanged_text(encoder):
    text = "  A short text with spaces around.  \n"
    texts, ids, split = segment_documents([("src/a:1", text)], encoder)
    assert [(t.id, t.source_id, t.text) for t in texts] == [("src/a:1#0", "src/a:1", text)]
    assert split == 0
    assert ids["src/a:1#0"] == encoder.context_ids([text])[0]


def test_text_alone_too_long_is_split_into_fitting_segments(encoder):
    paras = [f"Paragraph {i} says that the river reaches the sea near town {i}. " * 3
             for i in range(12)]
    text = "\n\n".join(p.strip() for p in paras)
    assert not _fits(encoder, text)
    texts, ids, split = segment_documents([("s/doc:1", text)], encoder)
    assert split == 1 and len(texts) > 2
    assert [t.id for t in texts] == [f"s/doc:1#{k}" for k in range(len(texts))]
    for t in texts:
        assert _fits(encoder, t.text)
        assert ids[t.id] == encoder.context_ids([t.text])[0]
        # cut at paragraph breaks: every piece is whole paragraphs
        assert t.text.startswith("Paragraph") and t.text.endswith(".")
    assert _squash("".join(t.text for t in texts)) == _squash(text)


def test_non_english_is_counted_in_tokens_not_words(encoder):
    # 1 "word" by whitespace, so words x 1.5 would say it fits easily
    text = "猫はよく眠る。犬は庭で遊ぶ。鳥は空を飛ぶ。" * 12
    assert len(text.split()) * 1.5 < encoder.limit
    assert not _fits(encoder, text)
    pieces = split_text(text, encoder)
    assert len(pieces) > 1
    for piece, ids in pieces:
        assert ids == encoder.context_ids([piece])[0] and _fits(encoder, piece)
        assert piece.endswith("。")  # cut after a sentence end, not inside a character run
    assert "".join(p for p, _ in pieces) == text


def test_code_is_cut_at_line_ends(encoder):
    lines = [f"def f{i}(x, y={i}):\n    return {{'k{i}': [x * {i}, y ** 2, None]}}"
             for i in range(30)]
    text = "\n".join(lines)
    pieces = split_text(text, encoder)
    assert len(pieces) > 1
    pos = 0
    for piece, _ in pieces:
        assert _fits(encoder, piece)
        at = text.index(piece, pos)
        end = at + len(piece)
        assert end == len(text) or text[end] == "\n"
        pos = end


def test_text_without_any_break_gets_hard_token_cuts(encoder):
    text = "x" * 5000
    pieces = split_text(text, encoder)
    assert len(pieces) > 1
    assert all(_fits(encoder, p) for p, _ in pieces)
    assert "".join(p for p, _ in pieces) == text
