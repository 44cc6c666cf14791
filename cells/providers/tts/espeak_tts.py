"""Embedded TtsProvider over eSpeak NG (`cells.speech.espeak`), streaming the library's ~60 ms chunks.

The engine's iterator blocks on a helper thread; each chunk is fetched on a worker thread so the event loop
never waits on synthesis. Closing the async generator (barge-in) closes the engine's iterator, which
aborts the synthesis in the C library.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Iterator, Mapping

import numpy as np

from cells.providers.base import AudioChunk, ProviderConfigError, ProviderError
from cells.speech.espeak import EspeakEngine, EspeakError, VoiceNotFoundError

# Product voice ids -> eSpeak NG voice names. Unknown ids that look like eSpeak names pass through.
VOICES: Mapping[str, str] = {
    "default": "en-us",
    "en-us-female": "en-us+f3",
    "en-us-male": "en-us+m3",
    "en-gb-female": "en-gb+f3",
    "en-gb-male": "en-gb+m3",
}


_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="espeak-tts")


def _next(it: Iterator[np.ndarray]) -> np.ndarray | None:
    # StopIteration cannot cross an executor future, so the end is reported as None.
    return next(it, None)


def _close_after(pending: concurrent.futures.Future[object] | None, it: Iterator[np.ndarray]) -> None:
    # A generator cannot be closed while another thread is inside next(); wait for that call first.
    if pending is not None:
        concurrent.futures.wait([pending])
    it.close()  # type: ignore[attr-defined]


class EspeakTts:
    """TtsProvider: `synthesize(text, voice_id)` streams AudioChunks at the library's rate (22050 Hz)."""

    def __init__(self, voice: str = "default", rate_wpm: int = 170, pitch: int = 50,
                 voices: Mapping[str, str] | None = None) -> None:
        try:
            self._engine = EspeakEngine()
        except EspeakError as exc:
            raise ProviderConfigError(f"eSpeak NG is unavailable: {exc}", provider="espeak") from exc
        self.sample_rate: int = self._engine.sample_rate
        self.voices = {**VOICES, **(voices or {})}
        self.default_voice = voice
        self.rate_wpm = rate_wpm
        self.pitch = pitch

    def resolve_voice(self, voice_id: str | None) -> str:
        voice_id = voice_id or self.default_voice
        return self.voices.get(voice_id, voice_id)

    async def synthesize(self, text: str, voice_id: str | None = None) -> AsyncIterator[AudioChunk]:
        voice = self.resolve_voice(voice_id)
        chunks = self._engine.iter_synthesize(text, voice=voice, rate_wpm=self.rate_wpm, pitch=self.pitch)
        pending: concurrent.futures.Future[np.ndarray | None] | None = None
        try:
            while True:
                pending = _EXECUTOR.submit(_next, chunks)
                try:
                    pcm = await asyncio.wrap_future(pending)
                except VoiceNotFoundError as exc:
                    raise ProviderConfigError(f"unknown voice {voice_id!r} ({voice!r})",
                                              provider="espeak") from exc
                except EspeakError as exc:
                    raise ProviderError(str(exc), provider="espeak") from exc
                if pcm is None:
                    return
                yield AudioChunk(pcm, self.sample_rate)
        finally:
            # Aborts synthesis and waits for eSpeak's helper thread, off the event loop; shielded so that a
            # second cancellation cannot leave the C library running a synthesis nobody reads.
            closer = _EXECUTOR.submit(_close_after, pending, chunks)
            await asyncio.shield(asyncio.wrap_future(closer))
