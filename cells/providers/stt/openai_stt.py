"""OpenAI transcription (`/v1/audio/transcriptions`) as an `SttProvider`.

This endpoint is not streaming: the adapter buffers a turn's audio, and at `EndOfTurn` uploads it as a WAV
and emits one final. Latency cost: nothing is recognised while the caller speaks (no partials, so no
early barge-in or early intent), and the whole upload plus a full recognition pass sits on the
voice-to-voice path after the end of the turn (typically 0.3-1.5 s for a short turn, growing with turn
length). Prefer a streaming STT (Speechmatics) for live calls; this one suits fallback and batch use.
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import numpy as np

from cells.providers.base import EndOfTurn, Frame, Transcript
from cells.providers.openai_common import SDK_ERRORS, make_client, map_error, resolve_api_key


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return buf.getvalue()


class OpenAIStt:
    """`SttProvider`: one `audio.transcriptions.create` per turn; finals only."""

    sample_rate = 16000

    def __init__(self, *, model: str = "gpt-4o-mini-transcribe", base_url: str | None = None,
                 api_key: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 api_key_required: bool = True, language: str | None = "en", prompt: str | None = None,
                 timeout_s: float = 10.0, connect_timeout_s: float = 3.0, max_retries: int = 1,
                 min_audio_ms: float = 100.0, name: str = "openai_stt") -> None:
        self.name = name
        self.model = model
        self.base_url = base_url
        self.language = language
        self._prompt = prompt  # domain words (names, products) that bias recognition
        self._min_samples = int(self.sample_rate * min_audio_ms / 1000)
        key = resolve_api_key(api_key, api_key_env, required=api_key_required, provider=name)
        self._client = make_client(base_url=base_url, api_key=key, timeout_s=timeout_s,
                                   connect_timeout_s=connect_timeout_s, max_retries=max_retries)

    def __repr__(self) -> str:
        return f"OpenAIStt(name={self.name!r}, model={self.model!r}, base_url={self.base_url!r})"

    async def _transcribe(self, pcm: np.ndarray) -> str:
        kwargs: dict[str, object] = {"model": self.model,
                                     "file": ("turn.wav", wav_bytes(pcm, self.sample_rate), "audio/wav"),
                                     "response_format": "json"}
        if self.language:
            kwargs["language"] = self.language
        if self._prompt:
            kwargs["prompt"] = self._prompt
        try:
            result = await self._client.audio.transcriptions.create(**kwargs)  # type: ignore[call-overload]
        except SDK_ERRORS as exc:
            raise map_error(exc, self.name) from exc
        return str(getattr(result, "text", "")).strip()

    async def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        turn: list[np.ndarray] = []
        start_ms = 0.0  # stream time of the open turn's first sample
        elapsed = 0  # samples seen in the whole stream

        async def close_turn() -> Transcript:
            nonlocal turn, start_ms
            pcm = np.concatenate(turn) if turn else np.zeros(0, dtype=np.int16)
            # Too little audio to hold a word: skip the round trip (a cough, a click).
            text = await self._transcribe(pcm) if len(pcm) >= self._min_samples else ""
            end_ms = 1000.0 * elapsed / self.sample_rate
            out = Transcript(text, True, start_ms, end_ms)
            turn, start_ms = [], end_ms
            return out

        async for item in frames:
            if isinstance(item, EndOfTurn):
                yield await close_turn()
                continue
            pcm = np.asarray(item, dtype=np.int16)
            turn.append(pcm)
            elapsed += len(pcm)
        if turn:
            yield await close_turn()

    async def aclose(self) -> None:
        await self._client.close()
