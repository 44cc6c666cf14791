"""Fallback wrappers: a primary provider and configured secondaries behind one interface, so a provider
that fails or hangs mid-call never leaves the caller in silence.

Each wrapper tries providers in order. A provider fails when it raises, or when it misses a deadline:
the first token (LLM) or first audio (TTS) within `first_*_timeout_s`, later items within
`idle_timeout_s`, a final transcript within `final_timeout_s` of each end of turn (STT). On failure the
next provider takes over mid-stream:
- LLM: text already streamed stays said; the next provider gets it as a partial assistant turn plus a
  note to continue without repeating. When every provider failed, the reply is the configured apology
  and a `transfer_to_human` tool call.
- STT: audio not yet covered by a final is replayed into the next provider, then the live audio follows.
- TTS: the next provider speaks the whole sentence again (the pipeline sends TTS a sentence at a time).
  The primary alone receives the `voice_id`, which is specific to a vendor.
STT and TTS raise `ProviderUnavailable` when every provider failed; the pipeline then apologises and
transfers. Every attempt is reported to `observer(kind, Attempt)` for latency and provider events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cells.providers.base import (
    AudioChunk,
    EndOfTurn,
    Frame,
    FrameFeed,
    LlmProvider,
    Message,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    SttProvider,
    TextDelta,
    ToolCall,
    ToolSpec,
    Transcript,
    TtsProvider,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_APOLOGY = "I'm sorry, I'm having trouble on my side. Let me transfer you to a colleague."
CONTINUE_NOTE = ("Your previous reply was cut off after the text above. Continue it from exactly there, "
                 "without repeating anything.")


@dataclass(frozen=True, slots=True)
class Attempt:
    provider: str
    ok: bool
    elapsed_ms: float
    first_result_ms: float | None = None
    error: str | None = None


Observer = Callable[[str, Attempt], None]


class _Tracker:
    """Times one attempt and reports it."""

    def __init__(self, kind: str, name: str, observer: Observer | None) -> None:
        self.kind, self.name, self.observer = kind, name, observer
        self.start = time.monotonic()
        self.first: float | None = None

    def got_result(self) -> None:
        if self.first is None:
            self.first = time.monotonic()

    def done(self, error: BaseException | None = None) -> None:
        now = time.monotonic()
        attempt = Attempt(self.name, error is None, 1000 * (now - self.start),
                          None if self.first is None else 1000 * (self.first - self.start),
                          None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            log.warning("%s provider %s failed, falling back: %s", self.kind, self.name, attempt.error)
        if self.observer is not None:
            self.observer(self.kind, attempt)


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), 1.0)


async def _next_within(it: AsyncIterator[T], timeout: float, name: str, what: str) -> T:
    try:
        return await asyncio.wait_for(it.__anext__(), timeout)
    except TimeoutError:
        raise ProviderTimeout(f"{name}: no {what} within {timeout:.2f} s", provider=name) from None


def build_chain(kind: str, chain: Sequence[dict[str, Any]],
                context: Mapping[str, Any] | None = None) -> list[tuple[str, Any]]:
    """Providers from config items {"provider", "options", optional "name"}, through the registry;
    `context` (the per-call objects) goes to each of them."""
    from cells.providers.registry import ProviderConfig, build  # late: the registry imports adapters

    out = []
    for i, spec in enumerate(chain):
        item = {k: v for k, v in spec.items() if k in ("provider", "options")}
        out.append((str(spec.get("name") or f"{spec.get('provider')}#{i}"),
                    build(kind, ProviderConfig(defaults={kind: item}), context=context)))
    return out


def _check(providers: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    if not providers:
        raise ProviderConfigError("a fallback chain needs at least one provider")
    return list(providers)


class FallbackLlm:
    """An LlmProvider (LLM or brain) that falls back along a chain. It vouches for its own confirmation
    step only when every provider in the chain does: whichever of them answers a turn, the call loop's
    confirmation gate must run unless that one asks for the caller's yes itself."""

    def __init__(self, providers: Sequence[tuple[str, LlmProvider]], *, first_token_timeout_s: float = 2.0,
                 idle_timeout_s: float = 5.0, apology: str | None = DEFAULT_APOLOGY,
                 transfer_tool: str | None = "transfer_to_human", continue_note: str = CONTINUE_NOTE,
                 observer: Observer | None = None) -> None:
        self.providers = _check(providers)
        self.first_token_timeout_s = first_token_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.apology = apology
        self.transfer_tool = transfer_tool
        self.continue_note = continue_note
        self.observer = observer
        self.last_served: str | None = None  # None after a reply that only apologised

    @classmethod
    def from_options(cls, *, chain: Sequence[dict[str, Any]], context: Mapping[str, Any] | None = None,
                     **options: Any) -> FallbackLlm:
        return cls(build_chain("llm", chain, context), **options)

    @classmethod
    def from_brain_options(cls, *, chain: Sequence[dict[str, Any]],
                           context: Mapping[str, Any] | None = None, **options: Any) -> FallbackLlm:
        """For the "brain" kind: a chain of brains (a rule-based policy, a language model)."""
        return cls(build_chain("brain", chain, context), **options)

    @property
    def confirms_mutations(self) -> bool:
        return all(provider.confirms_mutations is True for _, provider in self.providers)

    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        said: list[str] = []
        for name, provider in self.providers:
            history = list(messages)
            if said:
                history += [Message("assistant", "".join(said)), Message("system", self.continue_note)]
            tracker = _Tracker("llm", name, self.observer)
            gen = provider.complete(history, tools)
            try:
                while True:
                    timeout = self.first_token_timeout_s if tracker.first is None else self.idle_timeout_s
                    try:
                        item = await _next_within(gen, timeout, name, "tokens")
                    except StopAsyncIteration:
                        break
                    tracker.got_result()
                    if isinstance(item, TextDelta):
                        said.append(item.text)
                    yield item
            except Exception as exc:  # any failure of this provider, whatever its type: try the next
                tracker.done(exc)
                continue
            finally:
                await _aclose(gen)
            tracker.done()
            self.last_served = name
            return
        self.last_served = None
        if self.apology is None and self.transfer_tool is None:
            raise ProviderUnavailable("every LLM provider failed")
        if self.apology:
            yield TextDelta((" " if said else "") + self.apology)
        if self.transfer_tool:
            yield ToolCall(f"fallback_{uuid.uuid4().hex[:12]}", self.transfer_tool,
                           {"reason": "llm_unavailable"})


class FallbackTts:
    def __init__(self, providers: Sequence[tuple[str, TtsProvider]], *, first_audio_timeout_s: float = 2.0,
                 idle_timeout_s: float = 3.0, observer: Observer | None = None) -> None:
        self.providers = _check(providers)
        self.sample_rate = self.providers[0][1].sample_rate  # chunks carry their own rate
        self.first_audio_timeout_s = first_audio_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.observer = observer
        self.last_served: str | None = None

    @classmethod
    def from_options(cls, *, chain: Sequence[dict[str, Any]], context: Mapping[str, Any] | None = None,
                     **options: Any) -> FallbackTts:
        return cls(build_chain("tts", chain, context), **options)

    async def synthesize(self, text: str, voice_id: str | None = None) -> AsyncIterator[AudioChunk]:
        for index, (name, provider) in enumerate(self.providers):
            tracker = _Tracker("tts", name, self.observer)
            gen = provider.synthesize(text, voice_id if index == 0 else None)
            try:
                while True:
                    timeout = self.first_audio_timeout_s if tracker.first is None else self.idle_timeout_s
                    try:
                        chunk = await _next_within(gen, timeout, name, "audio")
                    except StopAsyncIteration:
                        break
                    tracker.got_result()
                    yield chunk
            except Exception as exc:
                tracker.done(exc)
                continue
            finally:
                await _aclose(gen)
            tracker.done()
            self.last_served = name
            return
        self.last_served = None
        raise ProviderUnavailable("every TTS provider failed")


class FallbackStt:
    """Replays the audio of the turn in progress into the next provider when one fails."""

    def __init__(self, providers: Sequence[tuple[str, SttProvider]], *, final_timeout_s: float = 3.0,
                 observer: Observer | None = None) -> None:
        self.providers = _check(providers)
        rates = {p.sample_rate for _, p in self.providers}
        if len(rates) != 1:
            raise ProviderConfigError(f"STT fallback providers disagree on the sample rate: {sorted(rates)}")
        self.sample_rate = rates.pop()
        self.final_timeout_s = final_timeout_s
        self.observer = observer
        self.last_served: str | None = None

    @classmethod
    def from_options(cls, *, chain: Sequence[dict[str, Any]], context: Mapping[str, Any] | None = None,
                     **options: Any) -> FallbackStt:
        return cls(build_chain("stt", chain, context), **options)

    async def warm_up(self) -> None:
        """Warms the primary; a secondary starts when it is first needed (it serves only on failure)."""
        warm = getattr(self.providers[0][1], "warm_up", None)
        if warm is not None:
            await warm()

    async def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        state = _SttState()

        async def pump() -> None:
            async for item in frames:
                state.replay.append(item)
                if isinstance(item, EndOfTurn):
                    state.feed.end_of_turn(item.hint)
                    state.deadlines.append(time.monotonic() + self.final_timeout_s)
                else:
                    state.feed.push(item)
            state.upstream_done = True
            state.deadlines.append(time.monotonic() + self.final_timeout_s)  # the closing final
            state.feed.close()

        pump_task = asyncio.create_task(pump())
        try:
            for name, provider in self.providers:
                state.restart(self.final_timeout_s)
                base_ms = 1000.0 * state.dropped_samples / self.sample_rate
                tracker = _Tracker("stt", name, self.observer)
                gen = provider.stream(state.feed)
                try:
                    async for t in self._guarded(gen, state, pump_task, name):
                        tracker.got_result()
                        if t.is_final:
                            state.finalised()
                        yield Transcript(t.text, t.is_final, t.start_ms + base_ms, t.end_ms + base_ms,
                                         t.confidence)
                except Exception as exc:
                    if pump_task.done() and not pump_task.cancelled() and pump_task.exception() is not None:
                        raise pump_task.exception() from None  # type: ignore[misc]  # the source failed
                    tracker.done(exc)
                    continue
                finally:
                    await _aclose(gen)
                tracker.done()
                self.last_served = name
                return
            self.last_served = None
            raise ProviderUnavailable("every STT provider failed")
        finally:
            pump_task.cancel()
            await asyncio.wait([pump_task], timeout=1.0)

    async def _guarded(self, gen: AsyncIterator[Transcript], state: _SttState, pump: asyncio.Task[None],
                       name: str) -> AsyncIterator[Transcript]:
        nxt: asyncio.Future[Transcript] | None = None
        try:
            while True:
                if nxt is None:
                    nxt = asyncio.ensure_future(gen.__anext__())
                # Poll briefly when no final is due, so a deadline set meanwhile is noticed in time.
                wait = (state.deadlines[0] - time.monotonic()) if state.deadlines else 0.1
                done, _ = await asyncio.wait({nxt}, timeout=max(0.0, min(wait, 0.1)))
                if pump.done() and not pump.cancelled() and pump.exception() is not None:
                    raise ProviderError("frame source failed")
                if nxt in done:
                    try:
                        item = nxt.result()
                    except StopAsyncIteration:
                        if not state.upstream_done:
                            raise ProviderError(f"{name}: stream ended while audio still flows",
                                                provider=name) from None
                        return
                    nxt = None
                    yield item
                elif state.deadlines and time.monotonic() >= state.deadlines[0]:
                    raise ProviderTimeout(f"{name}: no final within {self.final_timeout_s} s", provider=name)
        finally:
            if nxt is not None and not nxt.done():
                nxt.cancel()
                await asyncio.wait([nxt], timeout=1.0)


class _SttState:
    """Audio not yet covered by a final (to replay), and when the current provider owes a final."""

    def __init__(self) -> None:
        self.replay: list[Frame] = []
        self.dropped_samples = 0  # stream time before replay[0]
        self.deadlines: list[float] = []
        self.upstream_done = False
        self.feed = FrameFeed()

    def restart(self, final_timeout_s: float) -> None:
        """A fresh feed holding the replay; every final still owed gets a fresh deadline."""
        self.feed.close()
        self.feed = FrameFeed()
        due = time.monotonic() + final_timeout_s
        self.deadlines = []
        for item in self.replay:
            if isinstance(item, EndOfTurn):
                self.feed.end_of_turn(item.hint)
                self.deadlines.append(due)
            else:
                self.feed.push(item)
        if self.upstream_done:
            self.deadlines.append(due)
            self.feed.close()

    def finalised(self) -> None:
        """A final covers the replay up to its first end of turn (or all of it at the end)."""
        cut = next((i for i, f in enumerate(self.replay) if isinstance(f, EndOfTurn)), len(self.replay) - 1)
        self.dropped_samples += sum(len(f) for f in self.replay[:cut + 1] if not isinstance(f, EndOfTurn))
        del self.replay[:cut + 1]
        if self.deadlines:
            self.deadlines.pop(0)
