"""Embedded streaming STT on Whisper (tiny.en by default, int8, CTranslate2): the whole turn is decoded at
its end.

Whisper is not a streaming model: the provider buffers the caller's audio and decodes it when the frame
stream carries an `EndOfTurn` (the call loop's endpointer said the caller stopped) or ends. Decoding runs
on the process's shared engine (whisper_engine.py), off the event loop, a bounded number at a time.
The agent's vocabulary and the turn's hint (what the agent just asked for) become the decoder's prompt
(whisper_prompt.py); turns without speech-like energy, or that the model itself doubts, give an empty
final rather than invented words (whisper_gate.py). No partials are emitted.
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
    WhisperEngine,
    resolve_model_dir,
    shared_engine,
)
from cells.providers.stt.whisper_gate import GateConfig
from cells.providers.stt.whisper_prompt import domain_prompt, turn_prompt

MAX_PIECE_S = FULL_WINDOW_S - 2  # a turn longer than the encoder window is decoded in pieces


class WhisperStt:
    """SttProvider. Options: `model` ("tiny.en" or a CTranslate2 Whisper model directory), `compute_type`,
    `threads` (cores per decode), `workers` (decodes at once per process; default cores // threads),
    `beam_size`, `margin_s` / `min_window_s` (encoder window: the turn's length + margin, at least the
    minimum), `pad_floor` (pad the window at the spectrogram's floor, as in training, rather than 0 as
    faster-whisper does), `domain`, `gate` (GateConfig fields)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, domain: Domain | None = None, *, model: str = "tiny.en", compute_type: str = "int8",
                 threads: int | None = None, workers: int | None = None, beam_size: int = 1,
                 margin_s: float = 6.0, min_window_s: int = 8, pad_floor: bool = True,
                 gate: GateConfig | None = None) -> None:
        if beam_size < 1 or margin_s < 0 or not 1 <= min_window_s <= FULL_WINDOW_S:
            raise ProviderConfigError(
                f"whisper: beam_size >= 1, margin_s >= 0 and 1 <= min_window_s <= {FULL_WINDOW_S} "
                f"(got {beam_size}, {margin_s}, {min_window_s})", provider="whisper")
        self.domain = domain
        self.model, self.compute_type = model, compute_type
        self.model_dir = resolve_model_dir(model)  # a missing model fails here, not in the first call
        self.threads, self.workers = threads, workers
        self.decode_options: dict[str, Any] = {"beam_size": beam_size, "margin_s": margin_s,
                                               "min_window_s": min_window_s, "pad_floor": pad_floor}
        self.gate = gate or GateConfig()
        self._domain_text = domain_prompt(domain)
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
            self._engine = shared_engine(self.model_dir, self.compute_type, self.threads, self.workers)
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
        prompt = turn_prompt(self._domain_text, hint)
        texts = []
        step = MAX_PIECE_S * SAMPLE_RATE
        for start in range(0, len(audio), step):
            piece = audio[start:start + step]
            decoded = await (await self.loaded()).submit(piece, prompt, **self.decode_options)
            speech = whisper_gate.speech_ms(pcm[start:start + step], SAMPLE_RATE, self.gate)
            if whisper_gate.keep(decoded, speech, self.gate):
                texts.append(decoded.text)
        return " ".join(texts).strip()

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
