"""The demo agents' knowledge files and question sets, cut and embedded as the service does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cells.knowledge.chunker import Chunk, chunk_blocks
from cells.knowledge.extract import extract

ROOT: Final = Path(__file__).resolve().parents[2]
KNOWLEDGE_DIR: Final = ROOT / "cells" / "launcher" / "demo_knowledge"
QUESTIONS_DIR: Final = Path(__file__).resolve().parent / "questions"
AGENTS: Final = ("clinic", "hotel", "job")
TYPES: Final = {".md": "text/markdown", ".html": "text/html", ".csv": "text/csv", ".txt": "text/plain",
                ".pdf": "application/pdf"}


@dataclass(frozen=True)
class Question:
    text: str
    expected: tuple[str, ...]  # empty: the knowledge does not hold the answer

    @property
    def answerable(self) -> bool:
        return bool(self.expected)

    def matches(self, chunk: Chunk) -> bool:
        return self.matches_text(chunk.embed_text)

    def matches_text(self, text: str) -> bool:
        haystack = text.lower()
        return any(e.lower() in haystack for e in self.expected)


def agent_files(agent: str) -> list[Path]:
    return sorted(p for p in KNOWLEDGE_DIR.glob(f"{agent}*") if p.suffix in TYPES)


def load_chunks(paths: list[Path]) -> list[tuple[str, Chunk]]:
    """(document title, chunk) for every chunk of the files, by the service's extractor and chunker."""
    return [(p.name, c) for p in paths for c in chunk_blocks(extract(p.read_bytes(), TYPES[p.suffix]))]


def load_questions(path: Path) -> list[Question]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        expected, sep, question = line.rpartition("|")
        if not sep or not question.strip():
            raise ValueError(f"{path}:{n}: expected 'expected | question'")
        keys = tuple(k.strip() for k in expected.split(" || ") if k.strip() and expected.strip() != "-")
        out.append(Question(question.strip(), keys))
    return out
