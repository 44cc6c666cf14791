"""Blocks -> chunks: neighbouring paragraphs of one section are merged up to a size; an FAQ pair or a
table row is always a chunk of its own and never split, so a retrieved chunk answers on its own.

A chunk's embedded text starts with its section path: "Prices > Whitening: ..." keeps the heading that
says what the numbers are about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cells.knowledge.extract import Block

MAX_WORDS: Final = 110
"""MiniLM reads 256 word pieces at most (the rest is truncated); ~110 words with a heading stays under."""
_SENTENCE: Final = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    seq: int
    text: str
    section: str
    kind: str

    @property
    def embed_text(self) -> str:
        return f"{self.section}: {self.text}" if self.section else self.text


def _words(text: str) -> int:
    return len(text.split())


def _split_long(text: str, max_words: int) -> list[str]:
    """A paragraph over the limit, cut at sentence ends (a sentence over it, at word boundaries)."""
    parts: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE.split(text):
        words = sentence.split()
        while len(words) > max_words:
            parts.append(" ".join(words[:max_words]))
            words = words[max_words:]
        sentence = " ".join(words)
        if current and _words(" ".join([*current, sentence])) > max_words:
            parts.append(" ".join(current))
            current = []
        if sentence:
            current.append(sentence)
    if current:
        parts.append(" ".join(current))
    return parts


def chunk_blocks(blocks: Iterable[Block], max_words: int = MAX_WORDS) -> list[Chunk]:
    out: list[tuple[str, str, str]] = []  # (text, section, kind)
    pending: list[str] = []
    pending_section = ""

    def flush() -> None:
        if pending:
            out.append((" ".join(pending), pending_section, "text"))
            pending.clear()

    for block in blocks:
        if block.kind != "text":
            flush()
            out.append((block.text, block.section, block.kind))
            continue
        if block.section != pending_section:
            flush()
            pending_section = block.section
        for piece in _split_long(block.text, max_words):
            if pending and _words(" ".join([*pending, piece])) > max_words:
                flush()
            pending.append(piece)
    flush()
    return [Chunk(i, text, section, kind) for i, (text, section, kind) in enumerate(out)]
