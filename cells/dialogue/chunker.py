"""Streaming sentence chunker: LLM text deltas in, speakable chunks out as soon as they are complete.

TTS can start on the first sentence while the rest is still being generated. The first chunk may
also end at a comma once it is long enough, because time to first audio matters most for it.
A period is not a boundary inside a number ("3.5"), after a title ("Dr. Patel") or after
"e.g."/"i.e."; after "a.m."/"p.m."/"etc." it is one only when a capitalised word follows.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator

_TITLES = {"dr", "mr", "mrs", "ms", "prof", "st", "mt", "jr", "sr", "no", "vs", "ave", "approx", "dept",
           "fig"}
_NEVER_END = {"e.g", "i.e", "cf", "incl"}
_MAY_END = {"a.m", "p.m", "etc", "u.s", "inc", "ltd", "co"}
_CLOSERS = "\"')]\u201d\u2019"


class SentenceChunker:
    def __init__(self, first_clause_words: int = 8, max_words: int = 40) -> None:
        self.first_clause_words = first_clause_words
        self.max_words = max_words
        self._buf = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        """Adds text; returns the chunks completed by it (possibly none)."""
        self._buf += delta
        out: list[str] = []
        while (cut := self._boundary()) is not None:
            chunk, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if chunk:
                out.append(chunk)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        """The remainder at the end of the reply."""
        chunk, self._buf = self._buf.strip(), ""
        if chunk:
            self._emitted += 1
            return [chunk]
        return []

    def _boundary(self) -> int | None:
        buf = self._buf
        for m in re.finditer(r"[.!?]+|\n\s*\n", buf):
            end = m.end()
            while end < len(buf) and buf[end] in _CLOSERS:
                end += 1
            if end >= len(buf):
                return None  # the next character decides; wait for it
            if not buf[end].isspace():
                continue
            if m.group().startswith(".") and not self._period_ends(buf, m.start(), end):
                continue
            return end
        words = buf.split()
        if self._emitted == 0:
            for m in re.finditer(r"[,;:](?=\s)", buf):
                if len(buf[:m.start()].split()) >= self.first_clause_words:
                    return m.end()
        if len(words) > self.max_words:  # no punctuation for too long: cut at a word boundary
            return len(buf) - len(buf.rstrip().rsplit(" ", 1)[-1]) - 1
        return None

    @staticmethod
    def _period_ends(buf: str, dot: int, after: int) -> bool:
        word = re.search(r"(\S+)$", buf[:dot])
        token = word.group(1).lower().lstrip("(\"'") if word else ""
        if token in _TITLES or token in _NEVER_END:
            return False
        if len(token) == 1 and token.isalpha():
            return False  # an initial: "John F. Kennedy"
        if token in _MAY_END:
            nxt = buf[after:].lstrip()
            return bool(nxt) and nxt[0].isupper()  # with nothing after yet, wait (or flush decides)
        return True


async def chunk_stream(deltas: AsyncIterable[str], first_clause_words: int = 8) -> AsyncIterator[str]:
    """Async form: yields chunks while deltas keep arriving, then the remainder."""
    chunker = SentenceChunker(first_clause_words)
    async for delta in deltas:
        for chunk in chunker.push(delta):
            yield chunk
    for chunk in chunker.flush():
        yield chunk
