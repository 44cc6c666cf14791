"""The dialogue layer: neutral spoken-English reading (parsing, spoken, answers), what any agent says
(saying), and sentence chunking. No vertical lives here (the clinic, with its booking reader, is
cells.agents.reception).

`SentenceChunker` turns any provider's text deltas into speakable chunks for TTS.
"""

from cells.dialogue.chunker import SentenceChunker, chunk_stream

__all__ = ["SentenceChunker", "chunk_stream"]
