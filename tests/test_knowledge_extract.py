"""Extraction and chunking: headings stay with their text, FAQ pairs and table rows stay whole, long
paragraphs split at sentences, and unreadable input is refused with a reason."""

from __future__ import annotations

import pytest

from cells.knowledge.chunker import MAX_WORDS, chunk_blocks
from cells.knowledge.extract import Block, ExtractError, extract


def test_markdown_keeps_the_heading_path_and_each_table_row_whole() -> None:
    md = (
        b"# Clinic\nIntro line.\n\n## Prices\n| Treatment | Price |\n|---|---|\n| Filling | $140 |\n"
        b"| Crown | $690 |\n\n### Children\nKids are seen free.\n\n## Hours\n- Mon to Fri\n- Sat mornings\n"
    )
    chunks = chunk_blocks(extract(md, "text/markdown"))
    assert [(c.kind, c.section, c.text) for c in chunks] == [
        ("text", "Clinic", "Intro line."),
        ("row", "Clinic > Prices", "Treatment: Filling; Price: $140"),
        ("row", "Clinic > Prices", "Treatment: Crown; Price: $690"),
        ("text", "Clinic > Prices > Children", "Kids are seen free."),
        ("text", "Clinic > Hours", "- Mon to Fri - Sat mornings"),
    ]
    assert chunks[1].embed_text == "Clinic > Prices: Treatment: Filling; Price: $140"
    assert [c.seq for c in chunks] == list(range(len(chunks)))


def test_html_skips_scripts_and_reads_headings_tables_and_lists() -> None:
    html = (
        b"<html><head><title>t</title><script>var secret = 1;</script><style>p{}</style></head><body>"
        b"<h1>Hotel</h1><h2>Rooms</h2><p>Sea &amp; garden views.</p>"
        b"<table><tr><th>Room</th><th>Rate</th></tr><tr><td>Twin</td><td>$175</td></tr></table>"
        b"<h2>Rules</h2><ul><li>No smoking</li><li>Quiet after 10 pm</li></ul></body></html>"
    )
    blocks = extract(html, "text/html")
    assert Block("text", "Sea & garden views.", "Hotel > Rooms") in blocks
    assert Block("row", "Room: Twin; Rate: $175", "Hotel > Rooms") in blocks
    assert any(b.section == "Hotel > Rules" and "No smoking" in b.text and "Quiet" in b.text for b in blocks)
    assert not any("secret" in b.text or "p{}" in b.text for b in blocks)


def test_csv_faq_pairs_by_header_or_two_columns_and_other_csv_as_rows() -> None:
    by_header = extract(b"id,Question,Answer\n1,Open Sunday?,No.\n", "text/csv")
    assert by_header == [Block("faq", "Q: Open Sunday? A: No.")]
    two_columns = extract(b"Open Sunday?,No.\nParking?,Free.\n", "text/csv")
    assert [b.text for b in two_columns] == ["Q: Open Sunday? A: No.", "Q: Parking? A: Free."]
    table = extract(b"room,rate,view\nTwin,175,garden\n", "text/csv")
    assert table == [Block("row", "room: Twin; rate: 175; view: garden")]
    with pytest.raises(ExtractError, match="both a question and an answer"):
        extract(b"question,answer\nOpen?,\n", "text/csv")


def test_a_long_paragraph_splits_at_sentence_ends_and_faq_pairs_never_merge() -> None:
    sentence = "The warehouse runs three shifts and every shift has two paid breaks. "
    blocks = [
        Block("text", sentence * 30, "Shifts"),
        Block("faq", "Q: a? A: b."),
        Block("faq", "Q: c? A: d."),
    ]
    chunks = chunk_blocks(blocks)
    text_chunks = [c for c in chunks if c.kind == "text"]
    assert len(text_chunks) > 1 and all(len(c.text.split()) <= MAX_WORDS for c in text_chunks)
    assert all(c.text.endswith("breaks.") for c in text_chunks)
    assert [c.text for c in chunks if c.kind == "faq"] == ["Q: a? A: b.", "Q: c? A: d."]


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"", "text/plain", "empty"),
        (b"   \n\n\t\n", "text/plain", "no text"),
        (b"\xff\xfe\x00\x01binary", "text/plain", "not UTF-8"),
        (b"ok\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f" * 3, "text/plain", "binary"),
        (b"%PDF-1.4\n%%EOF", "application/pdf", "PDF"),
        (b"plain words", "application/pdf", "not a PDF"),
        (b"{}", "application/json", "unsupported content type"),
    ],
)
def test_unreadable_input_is_refused_with_a_reason(data: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ExtractError, match=message):
        extract(data, content_type)
