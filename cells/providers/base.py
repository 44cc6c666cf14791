"""Provider interfaces: what the call pipeline needs from STT, LLM, TTS, voice cloning and telephony.

Only adapters (modules under `cells.providers.<kind>`) import a vendor SDK; everything else depends on
these protocols and dataclasses. Streaming is the default: STT, LLM and TTS all return async iterators so
that no stage waits for a whole utterance, reply or file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

# --- errors -------------------------------------------------------------------------------------------


class ProviderError(RuntimeError):
    """A provider failed; a fallback wrapper may retry with another provider of the same kind."""

    def __init__(self, message: str, *, provider: str = "", retryable: bool = True) -> None:
        super().__init__(message)
        self.provider = provider
        self.retryable = retryable


class ProviderTimeout(ProviderError):
    """The provider did not answer in time (connect, first result, or between results)."""


class ProviderUnavailable(ProviderError):
    """The provider cannot serve now (down, rate-limited, quota exhausted)."""


class ProviderConfigError(ProviderError, ValueError):
    """The configuration names an unknown provider or gives it bad options; retrying will not help."""

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message, provider=provider, retryable=False)


class ConsentError(ProviderError, PermissionError):
    """Voice cloning was asked for without a valid consent record."""

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message, provider=provider, retryable=False)


# --- data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono int16 PCM."""

    pcm: np.ndarray
    sample_rate: int

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.pcm) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Transcript:
    """A recognition result. Partials replace each other; a final closes the turn (its text may be empty).

    Times are milliseconds from the start of the stream's audio.
    """

    text: str
    is_final: bool
    start_ms: float
    end_ms: float
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class EndOfTurn:
    """In-band marker in an STT frame stream: the turn ended here (VAD or DTMF); finalise it.

    It travels in the same iterator as the audio, so the provider finalises exactly after the frames that
    preceded it, whatever the scheduling. `hint` is what the agent expects this turn to be (one of
    cells.providers.stt.context.HINTS, e.g. "digits" after asking for a phone number); recognisers that
    can use it bias towards it, others ignore it.
    """

    hint: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the LLM may call; `parameters` is a JSON schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Grounding:
    """Passages a brain retrieved for this reply (the agent's knowledge): what its text may state as fact.
    Yielded before the text; the call loop's claims check (cells.call.claims) accepts an outcome a
    passage states, and a pipeline that does not know the item ignores it."""

    passages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Consent:
    """Evidence that the speaker agreed to have their voice cloned. Cloners refuse without it."""

    speaker_name: str
    granted_at: datetime
    method: Literal["recorded_statement", "signed_form", "click_through"]
    evidence_uri: str  # where the statement or form is kept (object store key, document id)
    tenant_id: str
    scope: str = "tts"  # what the voice may be used for
    revoked: bool = False

    def check(self) -> None:
        if self.revoked:
            raise ConsentError(f"consent of {self.speaker_name!r} was revoked")
        if not self.speaker_name.strip() or not self.evidence_uri.strip() or not self.tenant_id.strip():
            raise ConsentError("consent needs a speaker name, a tenant and evidence")


# --- interfaces ---------------------------------------------------------------------------------------

Frame = np.ndarray | EndOfTurn


@runtime_checkable
class SttProvider(Protocol):
    sample_rate: int  # the rate `stream` expects its int16 frames at

    def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        """Partials as they change, one final per `EndOfTurn` and one at the end of `frames`."""
        ...


@runtime_checkable
class LlmProvider(Protocol):
    """The dialogue interface: a language model, or a rule-based brain that speaks the same protocol.

    `confirms_mutations` is True only for a provider that itself reads a mutating tool call back and
    waits for the caller's yes before emitting it, in code (a rule-based policy); every language model
    says False, and wrappers say True only when everything they wrap does. When it is False the call
    loop's confirmation gate holds each mutating call until the caller agrees.
    """

    confirms_mutations: bool

    def complete(self, messages: Sequence[Message],
                 tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        """Closing the returned generator cancels the request (barge-in)."""
        ...


@runtime_checkable
class TtsProvider(Protocol):
    sample_rate: int

    def synthesize(self, text: str, voice_id: str | None = None) -> AsyncIterator[AudioChunk]:
        """Audio as it is produced; closing the returned generator stops synthesis (barge-in)."""
        ...


@runtime_checkable
class VoiceCloner(Protocol):
    async def clone(self, samples: Sequence[AudioChunk], consent: Consent) -> str:
        """Returns a voice_id usable with the matching TtsProvider. Raises ConsentError without consent."""
        ...


@runtime_checkable
class TelephonyProvider(Protocol):
    async def answer(self, call_id: str) -> None: ...
    async def dial(self, to_number: str, from_number: str, *, call_id: str | None = None) -> str:
        """Places an outbound call; returns the call id."""
        ...
    async def send_audio(self, call_id: str, chunk: AudioChunk) -> None: ...
    async def transfer(self, call_id: str, to_number: str) -> None: ...
    async def hangup(self, call_id: str) -> None: ...
    async def dtmf(self, call_id: str, digits: str) -> None: ...


# --- helpers ------------------------------------------------------------------------------------------


class FrameFeed:
    """An STT frame source the call loop pushes into: `push(pcm)`, `end_of_turn()`, `close()`.

    Iterating it yields the frames and EndOfTurn markers in push order, so `stt.stream(feed)` finalises
    exactly where the call loop said the turn ended.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._closed = False

    def push(self, pcm: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError("push on a closed FrameFeed")
        self._queue.put_nowait(pcm)

    def end_of_turn(self, hint: str | None = None) -> None:
        if not self._closed:
            self._queue.put_nowait(EndOfTurn(hint))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def __aiter__(self) -> FrameFeed:
        return self

    async def __anext__(self) -> Frame:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stay exhausted for any later reader
            raise StopAsyncIteration
        return item
