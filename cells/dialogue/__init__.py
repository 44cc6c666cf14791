"""The dialogue layer: neutral spoken-English reading (parsing, spoken, intents, semantic), what any
agent says (saying), and sentence chunking. No vertical lives here (the clinic is cells.agents.reception).

`SentenceChunker` turns any provider's text deltas into speakable chunks for TTS.
"""

from cells.dialogue.chunker import SentenceChunker, chunk_stream

__all__ = ["SentenceChunker", "chunk_stream"]
