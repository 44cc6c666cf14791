"""Speechmatics real-time STT over `speechmatics-python`'s WebSocket client.

The SDK pulls audio through an async `read(n)`; ours takes int16 frames from the call's frame iterator.
Speechmatics finalises on its own schedule (`max_delay`), so a turn's final is assembled here: the
`AddTranscript` texts since the last turn end. At an `EndOfTurn` we send `ForceEndOfUtterance`, which makes
the server finalise what it holds (~250 ms) and answer `EndOfUtterance`; if that does not come within
`finalize_timeout_s`, the final is the finals so far plus the latest partial, so a slow server delays
the reply by at most that much and never stalls it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import websockets
from speechmatics.client import WebsocketClient
from speechmatics.exceptions import TranscriptionError
from speechmatics.models import AudioSettings, ConnectionSettings, ServerMessageType, TranscriptionConfig

from cells.providers.base import (
    EndOfTurn,
    Frame,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Transcript,
)

log = logging.getLogger(__name__)

# Error message types that a retry with the same settings cannot fix.
_FATAL_ERRORS = {"not_authorised", "invalid_model", "invalid_config", "not_allowed", "invalid_audio_type",
                 "invalid_message", "protocol_error"}


class _FrameReader:
    """The file-like audio source the SDK reads from; EndOfTurn markers become a callback."""

    def __init__(self, frames: AsyncIterator[Frame], on_turn_end: Callable[[], Awaitable[None]]) -> None:
        self._frames = frames.__aiter__()
        self._on_turn_end = on_turn_end
        self._pending = b""
        self.error: BaseException | None = None
        self.bytes_since_turn = 0

    async def read(self, n: int) -> bytes:
        while not self._pending:
            try:
                item = await self._frames.__anext__()
            except StopAsyncIteration:
                return b""  # the SDK answers with EndOfStream
            except BaseException as exc:  # the caller's source failed: not the vendor's fault
                self.error = exc
                raise
            if isinstance(item, EndOfTurn):
                # All audio read so far has been sent: the SDK sends each chunk before reading the next.
                await self._on_turn_end()
                self.bytes_since_turn = 0
                continue
            self._pending = np.asarray(item).astype("<i2", copy=False).tobytes()
        out, self._pending = self._pending[:n], self._pending[n:]
        self.bytes_since_turn += len(out)
        return out


class SpeechmaticsRtStt:
    """`SttProvider` over the Speechmatics real-time API (16 kHz pcm_s16le)."""

    sample_rate = 16000

    def __init__(self, *, url: str = "wss://eu2.rt.speechmatics.com/v2", api_key: str | None = None,
                 api_key_env: str | None = "SPEECHMATICS_API_KEY", language: str = "en",
                 enable_partials: bool = True, max_delay: float = 0.7, operating_point: str | None = None,
                 force_end_of_utterance: bool = True, finalize_timeout_s: float = 1.0,
                 connect_timeout_s: float = 5.0, ack_timeout_s: float = 5.0, max_unacked: int = 50,
                 name: str = "speechmatics") -> None:
        self._api_key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        if not self._api_key:
            raise ProviderConfigError(f"{name}: no API key in the options or ${api_key_env}", provider=name)
        self.name = name
        self.url = url
        self.language = language
        self._partials = enable_partials
        self._max_delay = max_delay
        self._operating_point = operating_point
        self._force_eou = force_end_of_utterance
        self._finalize_timeout_s = finalize_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._ack_timeout_s = ack_timeout_s
        self._max_unacked = max_unacked

    def __repr__(self) -> str:
        return f"SpeechmaticsRtStt(name={self.name!r}, url={self.url!r}, language={self.language!r})"

    def _client(self) -> WebsocketClient:
        settings = ConnectionSettings(
            url=self.url, auth_token=self._api_key, generate_temp_token=False,
            # websockets refuses an SSL context on ws:// (a local or on-prem server)
            ssl_context=None if self.url.startswith("ws://") else ssl.create_default_context(),
            message_buffer_size=self._max_unacked, semaphore_timeout_seconds=self._ack_timeout_s)
        return WebsocketClient(settings)

    def _config(self) -> TranscriptionConfig:
        kwargs: dict[str, Any] = {"language": self.language, "enable_partials": self._partials,
                                  "max_delay": self._max_delay}
        if self._operating_point:
            kwargs["operating_point"] = self._operating_point
        return TranscriptionConfig(**kwargs)

    def _map(self, exc: BaseException, error_type: str | None) -> ProviderError:
        n = self.name
        if isinstance(exc, websockets.exceptions.InvalidStatus):
            status = exc.response.status_code
            if status in (401, 403):
                return ProviderError(f"{n}: rejected with {status} (check the API key)", provider=n,
                                     retryable=False)
            return ProviderUnavailable(f"{n}: handshake failed with {status}", provider=n)
        if isinstance(exc, TranscriptionError):
            if error_type in _FATAL_ERRORS:
                return ProviderError(f"{n}: {error_type}: {exc}", provider=n, retryable=False)
            return ProviderUnavailable(f"{n}: {error_type or 'error'}: {exc}", provider=n)
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(f"{n}: server stopped acknowledging audio", provider=n)
        if isinstance(exc, OSError | websockets.exceptions.WebSocketException):
            return ProviderUnavailable(f"{n}: connection failed: {exc}", provider=n)
        return ProviderError(f"{n}: {type(exc).__name__}: {exc}", provider=n)

    async def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        client = self._client()
        error_type: list[str] = []
        for kind, msg_type in (("started", ServerMessageType.RecognitionStarted),
                               ("partial", ServerMessageType.AddPartialTranscript),
                               ("final", ServerMessageType.AddTranscript),
                               ("eou", ServerMessageType.EndOfUtterance)):
            client.add_event_handler(msg_type, lambda m, k=kind: events.put_nowait((k, m)))
        client.add_event_handler(ServerMessageType.Error, lambda m: error_type.append(m.get("type", "")))

        async def turn_end() -> None:
            if self._force_eou:
                await client.send_message("ForceEndOfUtterance")
            events.put_nowait(("turn_end", None))

        reader = _FrameReader(frames, turn_end)
        audio = AudioSettings(encoding="pcm_s16le", sample_rate=self.sample_rate, chunk_size=3200)
        run = asyncio.create_task(client.run(reader, self._config(), audio))
        run.add_done_callback(lambda t: events.put_nowait(("done", t)))

        turn = _OpenTurn()
        awaiting: list[float] = []  # deadlines of turn ends waiting for EndOfUtterance
        started_by = time.monotonic() + self._connect_timeout_s
        started = False

        try:
            while True:
                deadline = started_by if not started else (awaiting[0] if awaiting else None)
                try:
                    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                    kind, payload = await asyncio.wait_for(events.get(), timeout)
                except TimeoutError:
                    if not started:
                        raise ProviderTimeout(f"{self.name}: no RecognitionStarted within "
                                              f"{self._connect_timeout_s} s", provider=self.name) from None
                    log.warning("%s: no EndOfUtterance in time; finalising from partials", self.name)
                    awaiting.pop(0)
                    yield turn.close()
                    continue
                if kind == "started":
                    started = True
                elif kind in ("partial", "final"):
                    if (shown := turn.add(kind, payload)) is not None:
                        yield shown
                elif kind == "turn_end":
                    if self._force_eou:
                        awaiting.append(time.monotonic() + self._finalize_timeout_s)
                    else:
                        yield turn.close()
                elif kind == "eou" and awaiting:
                    awaiting.pop(0)
                    yield turn.close()
                elif kind == "done":
                    task: asyncio.Task[None] = payload
                    exc = task.exception() if not task.cancelled() else None
                    if exc is not None:
                        if exc is reader.error:
                            raise exc
                        raise self._map(exc, error_type[-1] if error_type else None) from exc
                    if not started:
                        raise ProviderUnavailable(f"{self.name}: session ended before it started",
                                                  provider=self.name)
                    if awaiting or turn.has_text or reader.bytes_since_turn:
                        yield turn.close()
                    return
        finally:
            await _stop(client, run)


class _OpenTurn:
    """The open turn's texts: finals so far and the latest partial, with the span they cover (ms)."""

    def __init__(self) -> None:
        self.finals: list[str] = []
        self.partial = ""
        self.shown = ""  # the last partial text emitted, so a final that confirms it is not repeated
        self.t0: float | None = None
        self.t1 = 0.0

    @property
    def has_text(self) -> bool:
        return bool(self.finals or self.partial)

    def _text(self) -> str:
        return " ".join([*self.finals, self.partial] if self.partial else self.finals).strip()

    def add(self, kind: str, payload: dict[str, Any]) -> Transcript | None:
        """Takes a partial or final message; the partial to emit when the text so far changed."""
        meta = payload.get("metadata", {})
        text = str(meta.get("transcript", "")).strip()
        if self.t0 is None and text:
            self.t0 = 1000.0 * float(meta.get("start_time", 0.0))
        self.t1 = max(self.t1, 1000.0 * float(meta.get("end_time", 0.0)))
        if kind == "final":
            self.partial = ""
            if text:
                self.finals.append(text)
        else:
            self.partial = text
        so_far = self._text()
        if not so_far or so_far == self.shown:
            return None
        self.shown = so_far
        return Transcript(so_far, False, self.t0 if self.t0 is not None else self.t1, self.t1,
                          _confidence(payload))

    def close(self) -> Transcript:
        out = Transcript(self._text(), True, self.t0 if self.t0 is not None else self.t1, self.t1)
        self.finals, self.partial, self.t0, self.shown = [], "", None, ""
        return out


async def _stop(client: Any, run: asyncio.Task[None]) -> None:
    """Ends the SDK's session task, if still running, without waiting on a stalled server."""
    if not run.done():
        client.stop()
        # Drop the socket rather than wait for a close handshake a stalled server never answers.
        transport = getattr(client.websocket, "transport", None)
        if transport is not None:
            transport.abort()  # the SDK then ends its own tasks; cancelling would orphan them
            await asyncio.wait([run], timeout=1.0)
        if not run.done():
            run.cancel()
            await asyncio.wait([run], timeout=1.0)
    if run.done() and not run.cancelled():
        run.exception()  # retrieved: the outcome was already reported or is moot


def _confidence(message: dict[str, Any]) -> float | None:
    values = [alt.get("confidence") for r in message.get("results", ())
              for alt in r.get("alternatives", ())[:1]]
    values = [v for v in values if isinstance(v, int | float)]
    return sum(values) / len(values) if values else None
