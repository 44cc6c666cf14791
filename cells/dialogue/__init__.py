"""The dialogue layer: spoken-form parsing, the Reception demo's rule-based policy, sentence chunking.

`ReceptionPolicy` is a rule-based dialogue policy (not a language model) behind the LlmProvider
interface; `SentenceChunker` turns any provider's text deltas into speakable chunks for TTS.
"""

from cells.dialogue.chunker import SentenceChunker, chunk_stream
from cells.dialogue.clinic import ClinicConfig, Service, default_clinic, stt_vocabulary
from cells.dialogue.reception_policy import ReceptionPolicy
from cells.dialogue.reception_state import DialogueState

__all__ = [
    "ClinicConfig",
    "DialogueState",
    "ReceptionPolicy",
    "SentenceChunker",
    "Service",
    "chunk_stream",
    "default_clinic",
    "stt_vocabulary",
]
