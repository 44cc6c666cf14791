"""PlayHT streaming TTS over the `pyht` SDK (its asyncio client, HTTP streaming protocol).

How pyht 0.1.x reaches PlayHT over HTTP: it POSTs the user id and key to `<api_url>/sdk-auth`, which
answers with "inference coordinates" (per voice engine, a signed `http_streaming_url` and a
`websocket_url`), then POSTs each request to that streaming URL and reads audio as it arrives. Both hops
follow `api_url`, so pointing it at a local server that speaks the same format is enough for tests and
on-prem setups. We ask for `raw` output: headerless 16-bit little-endian mono PCM at `sample_rate`.

pyht has no timeouts of its own on this path (aiohttp's 5-minute default), so the adapter bounds the wait
for the first chunk and between chunks.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
from pyht.async_client import AsyncClient
from pyht.client import Format, TTSOptions
from pyht.inference_coordinates import InferenceCoordinatesOptions

from cells.providers.base import (
    AudioChunk,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)


class PlayHtTts:
    """`TtsProvider` over `pyht.AsyncClient.tts(..., protocol="http")` (or "ws")."""

    def __init__(self, *, voice: str, voice_engine: str = "Play3.0-mini", protocol: str = "http",
                 sample_rate: int = 24000, speed: float = 1.0, api_url: str = "https://api.play.ht/api/v4",
                 user_id: str | None = None, user_id_env: str | None = "PLAYHT_USER_ID",
                 api_key: str | None = None, api_key_env: str | None = "PLAYHT_API_KEY",
                 first_audio_timeout_s: float = 4.0, chunk_timeout_s: float = 4.0,
                 name: str = "playht") -> None:
        self._user_id = user_id or (os.environ.get(user_id_env) if user_id_env else None)
        self._api_key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        if not self._user_id or not self._api_key:
            raise ProviderConfigError(f"{name}: needs a user id and an API key (options or "
                                      f"${user_id_env} / ${api_key_env})", provider=name)
        if protocol not in ("http", "ws"):
            raise ProviderConfigError(f"{name}: protocol must be 'http' or 'ws'", provider=name)
        self.name = name
        self.voice = voice
        self.voice_engine = voice_engine
        self.protocol = protocol
        self.sample_rate = sample_rate
        self.api_url = api_url
        self._speed = speed
        self._first_timeout_s = first_audio_timeout_s
        self._chunk_timeout_s = chunk_timeout_s
        self._client: AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"PlayHtTts(name={self.name!r}, engine={self.voice_engine!r}, api_url={self.api_url!r})"

    def _get_client(self) -> AsyncClient:
        # pyht's client binds to the loop it was made in; make it lazily, in the loop that uses it.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            advanced = AsyncClient.AdvancedOptions(
                auto_refresh_lease=False,  # the lease is for gRPC only; HTTP/WS use inference coordinates
                disable_lease_disk_cache=True,
                inference_coordinates_options=InferenceCoordinatesOptions(api_url=self.api_url))
            assert self._user_id and self._api_key
            self._client = AsyncClient(self._user_id, self._api_key, auto_connect=False, advanced=advanced)
            self._client_loop = loop
        return self._client

    def _map(self, exc: BaseException) -> ProviderError:
        n = self.name
        status: Any = None
        if isinstance(exc, aiohttp.ClientResponseError):
            status = exc.status
        elif len(exc.args) > 1 and isinstance(exc.args[1], int):  # pyht: Exception("HTTP 500: ...", 500)
            status = exc.args[1]
        if status in (401, 403):
            return ProviderError(f"{n}: rejected with {status} (check user id and key)", provider=n,
                                 retryable=False)
        if status is not None and status >= 400:
            kind = ProviderUnavailable if status in (408, 429) or status >= 500 else ProviderError
            return kind(f"{n}: HTTP {status}", provider=n)
        if isinstance(exc, ValueError):  # pyht validates engine/protocol combinations
            return ProviderConfigError(f"{n}: {exc}", provider=n)
        # pyht turns transport errors into IndexError (it reads e.args[1]); the cause is in the context.
        cause = exc.__context__ if isinstance(exc, IndexError) and exc.__context__ else exc
        return ProviderUnavailable(f"{n}: {type(cause).__name__}: {cause}", provider=n)

    async def synthesize(self, text: str, voice_id: str | None = None) -> AsyncIterator[AudioChunk]:
        options = TTSOptions(voice=voice_id or self.voice, format=Format.FORMAT_RAW,
                             sample_rate=self.sample_rate, speed=self._speed)
        stream = None
        carry = b""
        got_audio = False
        try:
            stream = self._get_client().tts(text, options, voice_engine=self.voice_engine,
                                            protocol=self.protocol).__aiter__()
            while True:
                timeout = self._chunk_timeout_s if got_audio else self._first_timeout_s
                try:
                    data = await asyncio.wait_for(stream.__anext__(), timeout)
                except StopAsyncIteration:
                    break
                data = carry + bytes(data)
                usable = len(data) - len(data) % 2
                carry = data[usable:]
                if usable:
                    got_audio = True
                    yield AudioChunk(np.frombuffer(data[:usable], dtype="<i2").astype(np.int16),
                                     self.sample_rate)
        except TimeoutError as exc:
            what = "between chunks" if got_audio else "for the first audio"
            raise ProviderTimeout(f"{self.name}: no audio within the deadline {what}",
                                  provider=self.name) from exc
        except ProviderError:
            raise
        except Exception as exc:  # pyht raises bare Exception for HTTP errors
            raise self._map(exc) from exc
        finally:
            if stream is not None and hasattr(stream, "aclose"):
                await stream.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
