"""Streaming sentence chunker: chunks as soon as complete, whatever the delta boundaries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cells.dialogue.chunker import SentenceChunker, chunk_stream


def chunks(text: str, step: int, **kw: int) -> list[str]:
    c = SentenceChunker(**kw)
    out: list[str] = []
    for i in range(0, len(text), step):
        out += c.push(text[i:i + step])
    return out + c.flush()


CASES = [
    ("Sure. What day works for you?", ["Sure.", "What day works for you?"]),
    ("Dr. Patel can see you at 9:30 a.m. on Tuesday. Is that okay?",
     ["Dr. Patel can see you at 9:30 a.m. on Tuesday.", "Is that okay?"]),
    ("See you at 2 p.m. Goodbye!", ["See you at 2 p.m.", "Goodbye!"]),
    ("It costs 3.5 dollars, e.g. for a scan. Thanks.", ["It costs 3.5 dollars, e.g. for a scan.", "Thanks."]),
    ("Wow! Really? Yes.", ["Wow!", "Really?", "Yes."]),
    ("We're at 42 Harbor St. near the library.", ["We're at 42 Harbor St. near the library."]),
    ("John F. Kennedy said \"hello.\" Then left.", ["John F. Kennedy said \"hello.\"", "Then left."]),
    ("No trailing punctuation", ["No trailing punctuation"]),
    ("Wait... okay.", ["Wait...", "okay."]),
    ("Mrs. Jones, Mr. Lee and Ms. Kay arrived. Good.", ["Mrs. Jones, Mr. Lee and Ms. Kay arrived.", "Good."]),
]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize(("text", "expected"), CASES)
def test_chunks_independent_of_delta_size(text: str, expected: list[str], step: int) -> None:
    assert chunks(text, step) == expected


def test_long_first_sentence_splits_at_a_clause() -> None:
    text = ("If you would like to come in on a Tuesday morning, we have plenty of room, and the dentist is "
            "free. Later sentence, with a comma.")
    assert chunks(text, 4, first_clause_words=8) == [
        "If you would like to come in on a Tuesday morning,",
        "we have plenty of room, and the dentist is free.",
        "Later sentence, with a comma.",
    ]


def test_short_first_clause_is_not_split() -> None:
    assert chunks("Sure, no problem. Bye.", 1) == ["Sure, no problem.", "Bye."]


def test_emits_before_the_reply_ends() -> None:
    c = SentenceChunker()
    assert c.push("Thank you for calling.") == []  # the next character decides
    assert c.push(" How") == ["Thank you for calling."]
    assert c.push(" can I help?") == []
    assert c.flush() == ["How can I help?"]
    assert c.flush() == []


def test_runaway_text_is_cut_at_a_word() -> None:
    words = " ".join(["word"] * 50)
    out = chunks(words, 5, max_words=20)
    assert all(len(c.split()) <= 21 for c in out) and " ".join(out) == words


def test_chunk_stream() -> None:
    async def deltas() -> AsyncIterator[str]:
        for piece in ["Hello", " there. ", "How are", " you?"]:
            yield piece

    async def collect() -> list[str]:
        return [c async for c in chunk_stream(deltas())]

    assert asyncio.run(collect()) == ["Hello there.", "How are you?"]
