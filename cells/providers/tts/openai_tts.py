"""OpenAI speech (`/v1/audio/speech`) as a streaming `TtsProvider`.

`response_format="pcm"` is raw 24 kHz mono s16le, streamed as it is synthesised, so the first chunk can
play before the sentence is done; no container to parse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from cells.providers.base import AudioChunk
from cells.providers.openai_common import SDK_ERRORS, make_client, map_error, resolve_api_key


class OpenAITts:
    sample_rate = 24000  # fixed by the API for "pcm"

    def __init__(self, *, model: str = "gpt-4o-mini-tts", voice: str = "alloy", base_url: str | None = None,
                 api_key: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 api_key_required: bool = True, instructions: str | None = None, speed: float | None = None,
                 timeout_s: float = 10.0, connect_timeout_s: float = 3.0, max_retries: int = 1,
                 chunk_ms: int = 40, name: str = "openai_tts") -> None:
        self.name = name
        self.model = model
        self.voice = voice
        self.base_url = base_url
        self._instructions = instructions
        self._speed = speed
        self._chunk_bytes = 2 * self.sample_rate * chunk_ms // 1000
        key = resolve_api_key(api_key, api_key_env, required=api_key_required, provider=name)
        self._client = make_client(base_url=base_url, api_key=key, timeout_s=timeout_s,
                                   connect_timeout_s=connect_timeout_s, max_retries=max_retries)

    def __repr__(self) -> str:
        return f"OpenAITts(name={self.name!r}, model={self.model!r}, voice={self.voice!r})"

    async def synthesize(self, text: str, voice_id: str | None = None) -> AsyncIterator[AudioChunk]:
        kwargs: dict[str, object] = {"model": self.model, "voice": voice_id or self.voice, "input": text,
                                     "response_format": "pcm"}
        if self._instructions:
            kwargs["instructions"] = self._instructions
        if self._speed is not None:
            kwargs["speed"] = self._speed
        carry = b""  # network chunks need not end on a sample boundary
        try:
            async with self._client.audio.speech.with_streaming_response.create(**kwargs) as response:  # type: ignore[arg-type]
                async for data in response.iter_bytes(self._chunk_bytes):
                    data = carry + data
                    usable = len(data) - len(data) % 2
                    carry = data[usable:]
                    if usable:
                        yield AudioChunk(np.frombuffer(data[:usable], dtype="<i2").astype(np.int16),
                                         self.sample_rate)
        except SDK_ERRORS as exc:
            raise map_error(exc, self.name) from exc

    async def aclose(self) -> None:
        await self._client.close()
