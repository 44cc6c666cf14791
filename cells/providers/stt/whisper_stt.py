"""Embedded streaming STT on Whisper (tiny.en by default, int8, CTranslate2): the whole turn is decoded at
its end.

Whisper is not a streaming model: the provider buffers the caller's audio and decodes it when the frame
stream carries an `EndOfTurn` (the call loop's endpointer said the caller stopped) or ends. Decoding runs
on the process's shared engine (whisper_engine.py), off the event loop, a bounded number at a time.
The agent's vocabulary and the turn's hint (what the agent just asked for) become the decoder's prompt
(whisper_prompt.py); turns without speech-like energy, or that the model itself doubts, give an empty
final rather than invented words (whisper_gate.py). No partials are emitted.

A turn the agent expects digits from but that decoded with words is decoded again with only digits
allowed (whisper_slots.py) (and, with `hold_words`, a name, yes/no, day or time turn that does not read
as one with only that slot's words: whisper_vocab.py); the constrained text is taken when the model is
fairly sure of it, so that a caller who said something else ("sorry, what?") is still heard as they spoke.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from cells.providers.base import EndOfTurn, Frame, ProviderConfigError, Transcript
from cells.providers.stt import whisper_gate
from cells.providers.stt.context import Domain, domain_from
from cells.providers.stt.whisper_engine import (
    FULL_WINDOW_S,
    SAMPLE_RATE,
    Decoded,
    WhisperEngine,
    shared_engine,
)
from cells.providers.stt.whisper_gate import GateConfig
from cells.providers.stt.whisper_models import resolve_model
from cells.providers.stt.whisper_prompt import domain_prompt, turn_prompt
from cells.providers.stt.whisper_slots import fits_slot, suppress_tokens
from cells.providers.stt.whisper_vocab import VocabSlot, vocab_slot, vocab_suppress

MAX_PIECE_S = FULL_WINDOW_S - 2  # a turn longer than the encoder window is decoded in pieces
MAX_DIGITS_PER_S = 4.0  # of speech: a number read out quickly; more is a decoder loop


class WhisperStt:
    """SttProvider. Options: `model` ("tiny.en", "base" or a CTranslate2 Whisper model directory),
    `compute_type`, `threads` (cores per decode), `workers` (decodes at once per process; default
    cores // threads), `beam_size`, `margin_s` / `min_window_s` (encoder window: the turn's length +
    margin, at least the minimum), `pad_floor` (pad the window at the spectrogram's floor, as in
    training, rather than 0 as faster-whisper does), `constrain` (a second, slot-constrained decode of
    a digits turn that came out with words), `hold_words` (off by default: a second decode of a name,
    yes/no, date or time turn that did not read as one, held to that slot's words, whisper_vocab.py;
    it costs real speech more than it gains, see there; needs `constrain`),
    `slot_logprob` / `slot_margin` (how sure a constrained decode must be to be taken: at least this,
    and no more than the margin below the first), `domain`, `gate` (GateConfig fields)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, domain: Domain | None = None, *, model: str = "tiny.en", compute_type: str = "int8",
                 threads: int | None = None, workers: int | None = None, beam_size: int = 1,
                 margin_s: float = 6.0, min_window_s: int = 8, pad_floor: bool = True,
                 constrain: bool = True, hold_words: bool = False, slot_logprob: float = -1.0,
                 slot_margin: float = 0.2, gate: GateConfig | None = None) -> None:
        if beam_size < 1 or margin_s < 0 or not 1 <= min_window_s <= FULL_WINDOW_S:
            raise ProviderConfigError(
                f"whisper: beam_size >= 1, margin_s >= 0 and 1 <= min_window_s <= {FULL_WINDOW_S} "
                f"(got {beam_size}, {margin_s}, {min_window_s})", provider="whisper")
        self.domain = domain
        self.model, self.compute_type = model, compute_type
        self.source = resolve_model(model)  # a missing model fails here, not in the first call
        self.threads, self.workers = threads, workers
        self.decode_options: dict[str, Any] = {"beam_size": beam_size, "margin_s": margin_s,
                                               "min_window_s": min_window_s, "pad_floor": pad_floor}
        self.gate = gate or GateConfig()
        self.constrain, self.slot_logprob, self.slot_margin = constrain, slot_logprob, slot_margin
        self.hold_words = hold_words
        self._domain_text = domain_prompt(domain)
        self._examples = domain.examples if domain is not None else {}
        self._vocab_slots: dict[str | None, VocabSlot | None] = {}
        self._engine: WhisperEngine | None = None

    @classmethod
    def from_options(cls, domain: Domain | dict[str, Any] | None = None,
                     gate: GateConfig | dict[str, Any] | None = None, **options: Any) -> WhisperStt:
        """Registry factory: `domain` and `gate` may come from configuration as plain mappings."""
        if isinstance(gate, dict):
            try:
                gate = GateConfig(**gate)
            except TypeError as exc:
                raise ProviderConfigError(f"bad whisper gate {gate!r}: {exc}", provider="whisper") from exc
        return cls(domain_from(domain, "whisper"), gate=gate, **options)

    @property
    def engine(self) -> WhisperEngine:
        """The process's shared engine, loaded on first use (blocking; streams use `loaded`)."""
        if self._engine is None:
            self._engine = shared_engine(self.source, self.compute_type, self.threads, self.workers)
        return self._engine

    async def loaded(self) -> WhisperEngine:
        """The engine, loaded off the event loop (a load takes a second or more; calls must not stall)."""
        if self._engine is None:
            await asyncio.get_running_loop().run_in_executor(None, lambda: self.engine)
        assert self._engine is not None
        return self._engine

    async def warm_up(self) -> None:
        """Loads the model and runs one decode, so that a call's first turn pays neither."""
        engine = await self.loaded()
        await engine.submit(np.zeros(SAMPLE_RATE, dtype=np.float32), None, **self.decode_options)

    async def transcribe(self, pcm: np.ndarray, hint: str | None = None) -> str:
        """The text of one whole turn (int16 at 16 kHz); "" when it holds no speech."""
        if whisper_gate.speech_ms(pcm, SAMPLE_RATE, self.gate) < self.gate.min_speech_ms:
            return ""
        audio = pcm.astype(np.float32) / 32768.0
        prompt = turn_prompt(self._domain_text, hint, self._examples)
        texts = []
        step = MAX_PIECE_S * SAMPLE_RATE
        for start in range(0, len(audio), step):
            speech = whisper_gate.speech_ms(pcm[start:start + step], SAMPLE_RATE, self.gate)
            decoded = await self._decode(audio[start:start + step], prompt, hint, speech)
            if whisper_gate.keep(decoded, speech, self.gate):
                texts.append(decoded.text)
        return " ".join(texts).strip()

    async def _decode(self, audio: np.ndarray, prompt: str | None, hint: str | None,
                      speech_ms: float) -> Decoded:
        """One piece; again with only the slot's tokens allowed when the first text does not fit the slot."""
        engine = await self.loaded()
        decoded = await engine.submit(audio, prompt, **self.decode_options)
        if not self.constrain or not decoded.text.strip():
            return decoded
        if (slot := self._vocab_slot(hint)) is not None:
            if slot.fits(decoded.text):
                return decoded
            held = await engine.submit(audio, prompt, suppress=vocab_suppress(engine.tokenizer, slot),
                                       **self.decode_options)
            return held if slot.takes(held.text, decoded.text) and self._likely(held, decoded) else decoded
        suppress = suppress_tokens(engine.tokenizer, hint)
        if suppress is None or fits_slot(decoded.text, hint):
            return decoded
        constrained = await engine.submit(audio, prompt, suppress=suppress, **self.decode_options)
        return constrained if self._takes(constrained, decoded, speech_ms) else decoded

    def _vocab_slot(self, hint: str | None) -> VocabSlot | None:
        if not self.hold_words:
            return None
        if hint not in self._vocab_slots:
            self._vocab_slots[hint] = vocab_slot(hint, self.domain)
        return self._vocab_slots[hint]

    def _likely(self, constrained: Decoded, first: Decoded) -> bool:
        """The model is about as sure of the constrained text as of what it first heard."""
        return constrained.avg_logprob >= max(self.slot_logprob, first.avg_logprob - self.slot_margin)

    def _takes(self, constrained: Decoded, first: Decoded, speech_ms: float) -> bool:
        """Whether the constrained decode replaces the first: it must hold digits, no more than the speech
        could say (a forced decode of one word loops: "Marvin" -> "5 5 5 5"), and the model must be about
        as sure of it as of the words it first heard ("right" -> "8" is far less likely than "Right.")."""
        digits = sum(c.isdigit() for c in constrained.text)
        if not digits or digits > 1 + MAX_DIGITS_PER_S * speech_ms / 1000:
            return False
        return self._likely(constrained, first)

    async def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        """One final per `EndOfTurn` and one at the end of `frames` if audio is pending.

        Raises ValueError on a frame that is not a 1-D int16 array (nothing is silently converted: a
        float frame at the wrong scale would decode as noise)."""
        pending: list[np.ndarray] = []
        position = 0  # samples of the stream so far
        turn_start = 0
        async for item in frames:
            if isinstance(item, EndOfTurn):
                yield await self._final(pending, turn_start, position, item.hint)
                pending, turn_start = [], position
                continue
            pcm = _checked(item)
            pending.append(pcm)
            position += len(pcm)
        if pending:
            yield await self._final(pending, turn_start, position, None)

    async def _final(self, pending: list[np.ndarray], start: int, end: int, hint: str | None) -> Transcript:
        pcm = np.concatenate(pending) if pending else np.zeros(0, dtype=np.int16)
        text = await self.transcribe(pcm, hint) if len(pcm) else ""
        return Transcript(text, True, 1000.0 * start / SAMPLE_RATE, 1000.0 * end / SAMPLE_RATE)


def _checked(item: object) -> np.ndarray:
    if not isinstance(item, np.ndarray) or item.dtype != np.int16 or item.ndim != 1:
        got = (f"{item.dtype} array of shape {item.shape}" if isinstance(item, np.ndarray)
               else type(item).__name__)
        raise ValueError(f"whisper: frames must be 1-D int16 numpy arrays at {SAMPLE_RATE} Hz "
                         f"(or EndOfTurn), got {got}")
    return item
