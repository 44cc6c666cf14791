"""Uploaded bytes -> text blocks, per content type, keeping what belongs together.

A block is one unit the chunker may merge with neighbours (`text`) or must keep whole (`faq`: a
question with its answer; `row`: one table row with its column names). Each block carries the heading
path it sits under, so a chunk never loses the section that gives it meaning ("Prices > Whitening").
Anything that cannot be read raises `ExtractError` with a message safe to show the tenant.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final, Literal

BlockKind = Literal["text", "faq", "row"]

CONTENT_TYPES: Final = ("text/plain", "text/markdown", "text/html", "application/pdf", "text/csv")
_HEADING_MD: Final = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET: Final = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_TABLE_RULE: Final = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?$")


class ExtractError(ValueError):
    """The upload cannot be turned into text; the message says why and is safe to show."""


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str
    section: str = ""


def _clean(text: str) -> str:
    return " ".join(text.split())


def decode_text(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped); refuse bytes that are not text rather than index garbage."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExtractError("the file is not UTF-8 text (binary data or another encoding)") from None
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    if "\x00" in text or controls > max(8, len(text) // 100):
        raise ExtractError("the file holds binary data, not text")
    return text


def _section(path: list[str]) -> str:
    return " > ".join(p for p in path if p)


def _paragraphs(lines: list[str], section: str) -> list[Block]:
    """Blank-line separated paragraphs; a list item stays with the list it belongs to."""
    out: list[Block] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            current.append(_BULLET.sub("- ", line.strip(), count=1))
            continue
        if current:
            out.append(Block("text", _clean(" ".join(current)), section))
            current = []
    return out


def _table_rows(header: list[str], rows: list[list[str]], section: str) -> list[Block]:
    out = []
    for row in rows:
        cells = [_clean(c) for c in row]
        if not any(cells):
            continue
        pairs = [f"{h}: {v}" if h else v for h, v in zip(header, cells, strict=False) if v]
        out.append(Block("row", "; ".join(pairs), section))
    return out


def _split_md_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def extract_markdown(text: str) -> list[Block]:
    blocks: list[Block] = []
    path: list[str] = []
    pending: list[str] = []
    lines = text.splitlines()
    i = 0

    def flush() -> None:
        blocks.extend(_paragraphs(pending, _section(path)))
        pending.clear()

    while i < len(lines):
        line = lines[i]
        heading = _HEADING_MD.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            path[:] = [*path[: level - 1], *[""] * max(0, level - 1 - len(path)), _clean(heading.group(2))]
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1].strip()):
            flush()
            header = _split_md_row(line)
            i += 2
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_split_md_row(lines[i]))
                i += 1
            blocks.extend(_table_rows(header, rows, _section(path)))
            continue
        pending.append(line)
        i += 1
    flush()
    return blocks


def extract_plain(text: str) -> list[Block]:
    return _paragraphs(text.splitlines(), "")


class _HtmlBlocks(HTMLParser):
    _SKIP: Final = frozenset({"script", "style", "noscript", "template", "head", "svg"})
    _BREAK: Final = frozenset({"p", "div", "li", "dt", "dd", "br", "section", "article", "blockquote",
                               "pre", "ul", "ol", "dl", "header", "footer", "main", "nav"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.path: list[str] = []
        self.text: list[str] = []
        self.skip = 0
        self.heading: int | None = None
        self.table: list[list[str]] | None = None
        self.cell: list[str] | None = None

    def _flush(self) -> None:
        text = _clean(" ".join(self.text))
        self.text = []
        if text:
            self.blocks.append(Block("text", text, _section(self.path)))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = int(tag[1])
        elif tag == "table":
            self._flush()
            self.table = []
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell = []
        elif tag in self._BREAK and tag != "li" and self.cell is None:
            self._flush()
        elif tag == "li" and self.cell is None:
            self.text.append("\n- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif self.heading is not None and tag == f"h{self.heading}":
            title = _clean(" ".join(self.text))
            self.text = []
            level = self.heading
            self.path = [*self.path[: level - 1], *[""] * max(0, level - 1 - len(self.path)), title]
            self.heading = None
        elif tag in ("td", "th") and self.cell is not None and self.table:
            self.table[-1].append(_clean(" ".join(self.cell)))
            self.cell = None
        elif tag == "table" and self.table is not None:
            rows = [r for r in self.table if r]
            if rows:
                self.blocks.extend(_table_rows(rows[0], rows[1:], _section(self.path)))
            self.table = None
        elif tag in ("p", "ul", "ol", "dl", "div", "section", "article") and self.cell is None:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        (self.cell if self.cell is not None else self.text).append(data)


def extract_html(text: str) -> list[Block]:
    parser = _HtmlBlocks()
    parser.feed(text)
    parser.close()
    parser._flush()
    return parser.blocks


_QUESTION_COLS: Final = ("question", "q", "faq", "query")
_ANSWER_COLS: Final = ("answer", "a", "response", "reply")


def extract_csv(text: str) -> list[Block]:
    """FAQ pairs (a question and an answer column, by header or as the first two columns); a CSV with
    other columns becomes table rows, each with its column names."""
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise ExtractError(f"the CSV is malformed: {exc}") from None
    if not rows:
        return []
    header = [_clean(c).lower() for c in rows[0]]
    q = next((header.index(c) for c in _QUESTION_COLS if c in header), None)
    a = next((header.index(c) for c in _ANSWER_COLS if c in header), None)
    if q is not None and a is not None:
        body = rows[1:]
    elif all(len(r) == 2 for r in rows):
        q, a, body = 0, 1, rows  # two headerless columns: question, answer
    else:
        return _table_rows([_clean(c) for c in rows[0]], rows[1:], "")
    out = []
    for row in body:
        question = _clean(row[q]) if q < len(row) else ""
        answer = _clean(row[a]) if a < len(row) else ""
        if question and answer:
            out.append(Block("faq", f"Q: {question} A: {answer}", ""))
        elif question or answer:
            raise ExtractError("every FAQ row needs both a question and an answer")
    return out


def extract_pdf(data: bytes) -> list[Block]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not data.startswith(b"%PDF-"):
        raise ExtractError("the file is not a PDF (no %PDF- header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise ExtractError("the PDF is encrypted; upload an unencrypted copy")
        pages = [page.extract_text() or "" for page in reader.pages]
    except ExtractError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
            OSError) as exc:
        raise ExtractError(f"the PDF cannot be read ({type(exc).__name__})") from None
    return [b for page in pages for b in extract_plain(page)]


def extract(data: bytes, content_type: str) -> list[Block]:
    """Blocks of the upload; ExtractError if it is empty, of another type, or unreadable."""
    if not data:
        raise ExtractError("the document is empty")
    if content_type == "application/pdf":
        blocks = extract_pdf(data)
    elif content_type in CONTENT_TYPES:
        text = decode_text(data)
        if content_type == "text/markdown":
            blocks = extract_markdown(text)
        elif content_type == "text/html":
            blocks = extract_html(text)
        elif content_type == "text/csv":
            blocks = extract_csv(text)
        else:
            blocks = extract_plain(text)
    else:
        raise ExtractError(f"unsupported content type {content_type!r}; "
                           f"use one of {', '.join(CONTENT_TYPES)}")
    if not blocks:
        raise ExtractError("the document holds no text")
    return blocks
