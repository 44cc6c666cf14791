"""A live call: carrier media in, turn-taking, barge-in, agent replies out.

The carrier is behind a `Transport` (cells.call.transport). Inbound audio goes through its inbound
path (Twilio's: the fused Rust path, PCM at the STT rate and VAD events) into the STT feed; the
endpointer ends the caller's turn on the audio clock. A reply runs as one task (dialogue -> TTS ->
playout) that a barge-in cancels; the history then keeps only what the caller heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import media_core
from cells.call.barge_in import content_words, interrupts, voiced
from cells.call.caller_text import CallerText
from cells.call.config import CallConfig, CallState
from cells.call.confirmation import ConfirmationGate
from cells.call.endpointing import Endpointer
from cells.call.guard import CallGuard
from cells.call.history import last_question, resumable_history
from cells.call.playout import Playout
from cells.call.rejoin import TurnRejoin
from cells.call.reply import Chunker, Reply, Speaker, ToolBox
from cells.call.timeline import TurnTiming
from cells.call.transport import Transport
from cells.call.turn_model import checker_for
from cells.call.vad_model import neural_vad_for
from cells.contract.call_redaction import CallRedactor
from cells.providers.base import FrameFeed, LlmProvider, Message, SttProvider, ToolCall, TtsProvider

log = logging.getLogger(__name__)


class CallSession:
    def __init__(
        self,
        config: CallConfig,
        *,
        stt: SttProvider,
        llm: LlmProvider,
        tts: TtsProvider,
        tools: ToolBox,
        chunker_factory: Callable[[], Chunker],
        transport: Transport,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        on_control: Callable[[str, ToolCall], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        redactor: CallRedactor | None = None,
    ) -> None:
        self.config = config
        self.caller_text = CallerText(redactor)  # card numbers masked before anything sees them
        self.redactor = self.caller_text.redactor
        self.stt, self.llm, self.tts, self.tools = stt, llm, tts, tools
        self.chunker_factory = chunker_factory
        self.transport = transport
        self.clock = clock
        self._on_event = on_event
        self._on_control = on_control
        self.state = CallState(last_activity=clock())
        self._stopped = asyncio.Event()  # set once call_ended is emitted
        self._stopping: asyncio.Task[Any] | None = None
        self.history: list[Message] = []
        if config.system_prompt:
            self.history.append(Message("system", config.system_prompt))
        self.turns: list[TurnTiming] = []
        self.endpointer = Endpointer(config.endpointing, checker_for(config.endpointing.use_model))
        self.rejoin = TurnRejoin()  # a caller going on after the endpoint keeps the turn
        self.gate = ConfirmationGate()
        self.guard = CallGuard()  # input and output guardrails around the brain (cells.call.guard)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._reply: asyncio.Task[None] | None = None
        self._turn_start = 0
        self._interruptible = True
        self._discard_final = False
        self._held: tuple[str, TurnTiming] | None = None  # said over a greeting it could not cut
        self.call_sid = ""
        self.stream_sid = ""
        self._pending: TurnTiming | None = None
        self._stt_open = False
        self._closing = False  # a goodbye is under way: no new turns, no interruptions
        # ~400 ms before the VAD's start event (it fires 64 ms into speech; soft onsets begin earlier).
        self._preroll: deque[Any] = deque(maxlen=20)
        self._probs: Sequence[float] = ()  # the VAD's latest speech probabilities
        self._speech_start_wall: float | None = None
        self._speech_end_wall: float | None = None
        self._said_upto = 0  # history index up to which assistant words were reported (agent_said)
        self._turns_reported = 0
        self.resumed = False
        self.hooks: Any = None  # e.g. cells.call.recording_consent: a question after the disclosure

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, stream_sid: str, call_sid: str, *,
                    history: Sequence[Message] | None = None, elapsed_s: float = 0.0) -> None:
        """Starts the call loop. With `history` (a call resumed after its stream dropped) the
        conversation continues from those messages: no disclosure, a short apology and the agent's
        last question instead. `elapsed_s`: how long the call has been going already (a resumed
        call), so that its timeline and its maximum length count from the call's start."""
        self.call_sid, self.stream_sid = call_sid, stream_sid
        if history is not None:
            self.resumed = True
            self.history = resumable_history(history)
            if self.config.system_prompt and not any(m.role == "system" for m in self.history):
                self.history.insert(0, Message("system", self.config.system_prompt))
            self._said_upto = len(self.history)  # said on the earlier stream, reported there
            self.caller_text.resumed(self.history)
        self.inbound = self.transport.inbound_path(self.stt.sample_rate, self.config.vad_min_silence_ms,
                                                   neural_vad_for(self.config.neural_vad))
        self.outbound = self.transport.outbound_path(self.tts.sample_rate)
        self.playout = Playout(self.transport, clock=self.clock)
        self.speaker = Speaker(self.tts, self.outbound, self.playout, self.config.voice_id)
        self.feed = FrameFeed()
        self.started_at = self.clock() - max(0.0, elapsed_s)
        for coro in (self.playout.run(), self._stt_loop(), self._watchdog()):
            self._tasks.append(asyncio.create_task(coro))
        self.emit("call_started", {"call_sid": call_sid, "stream_sid": stream_sid, "resumed": self.resumed})
        if self.resumed:
            self._start_reply(self._resume())
            return
        self._interruptible = self.config.disclosure_interruptible
        self._start_reply(self._say_disclosure())

    async def _say_disclosure(self) -> None:
        await self.speaker.say(self.config.disclosure)
        self.history.append(Message("assistant", self.config.disclosure))
        if self.hooks is not None and (ask := self.hooks.after_disclosure()):
            self._held = None  # said before the question: not its answer
            await self._say_own(ask)

    async def _resume(self) -> None:
        self._turn_start = len(self.history)
        last = self.history[-1] if self.history else None
        if last is not None and last.role in ("user", "tool"):
            # The agent owed the caller an answer when the line dropped: give it now.
            await self.speaker.say(self.config.resume_text)
            self.history.append(Message("assistant", self.config.resume_text))
            timing = TurnTiming(len(self.turns))
            reply = Reply(self.llm, self.tools, self.speaker, self.chunker_factory, self.history, timing,
                          self.clock, self._control, self.emit, self.gate, guard=self.guard,
                          scrub=self.redactor.payload)
            await reply.run()
            return
        text = f"{self.config.resume_text} {last_question(self.history)}".strip()
        await self.speaker.say(text)
        self.history.append(Message("assistant", text))

    async def stop(self, disposition: str = "caller_hung_up") -> None:
        """Ends the call: caller hang-up, carrier `stop`, or our own goodbye. A second caller (the
        worker closing the stream while the agent's goodbye is still stopping) returns only once the
        call has ended, so that what it records after comes after `call_ended`."""
        if self.state.ended:
            if asyncio.current_task() is not self._stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), timeout=6.0)
            return
        self._stopping = asyncio.current_task()
        self.state.ended = True
        if self.state.disposition == "in_progress":
            self.state.disposition = disposition
        if hasattr(self, "feed"):
            self.feed.close()
        me = asyncio.current_task()
        tasks = [t for t in [*self._tasks, self._reply, *self._background] if t and t is not me]
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=5.0) if tasks else (set(), set())
        if pending:  # a provider that ignores cancellation must not keep the call record open
            log.warning("call %s: %d tasks still running at hang-up: %s", self.call_sid, len(pending),
                        [t.get_coro() for t in pending])
        self._flush_said()
        self._report_turns()
        self.emit("call_ended", {"disposition": self.state.disposition, "turns": len(self.turns)})
        self._stopped.set()

    async def hang_up(self, text: str | None, disposition: str) -> None:
        self._closing = True
        self._interruptible = False
        if self.state.disposition == "in_progress":
            self.state.disposition = disposition  # before closing: the carrier's close races us
        if text:
            await self.speaker.say(text)
            self.history.append(Message("assistant", text))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.playout.wait_heard(), timeout=15.0)
        await self.transport.close(disposition)
        self._spawn(self.stop(disposition))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Fire-and-forget work that must not be garbage-collected while it runs."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        # Event data holds what the caller said and keyed in: its fields' names only, never their values.
        log.info("call %s: %s", self.call_sid, kind)
        log.debug("call %s: %s %s", self.call_sid, kind, sorted(data))
        if self._on_event is not None:
            self._on_event(kind, data)

    # -- carrier events ------------------------------------------------------------------------
    def on_media(self, raw: str | bytes) -> None:
        try:
            frame = self.inbound.push_message(raw)
        except ValueError as exc:  # media_core.MediaError is one
            self.state.bad_messages += 1
            log.warning("call %s: dropped a malformed media message: %s", self.call_sid, exc)
            return
        if frame is None or frame.track not in ("inbound", ""):
            return
        self.state.stream_ms += 1000.0 * len(frame.pcm) / self.inbound.stt_rate
        self.endpointer.on_audio(frame.pcm, self.inbound.stt_rate, frame.probabilities)  # for the turn model
        for ev in frame.events:
            self._on_vad(ev)
        self._feed_stt(frame.pcm)
        # Silero scores 32 ms chunks: a 20 ms message may complete none, and then the last one holds.
        self._probs = frame.probabilities or self._probs
        self._check_barge_in(voiced(frame.speaking, self._probs))
        if self.endpointer.poll(self.state.stream_ms):
            self._end_turn()

    def _feed_stt(self, pcm: Any) -> None:
        """The recogniser hears each turn from a little before the VAD's start to its end, not the
        line noise in between: long noise stretches skew its channel adaptation and invite
        insertions, and decoding them wastes CPU."""
        if self.state.ended:
            return
        if self._stt_open:
            self.feed.push(pcm)
            return
        self._preroll.append(pcm)
        if self.endpointer.in_turn:
            self._stt_open = True
            for chunk in self._preroll:
                self.feed.push(chunk)
            self._preroll.clear()

    def _on_vad(self, ev: media_core.VadEvent) -> None:
        now = self.clock()
        self.state.last_activity = now
        back = (self.state.stream_ms - ev.time_ms) / 1000.0  # the event is about audio already past
        if ev.kind == "start":
            if not self.endpointer.in_turn:  # a pause inside a turn keeps the turn's first start
                self._speech_start_wall = now - back
                if self.rejoin.caller_resumed(self, ev.time_ms, self._speech_start_wall):
                    self.playout.clear()
                    self.outbound.clear()
                    self._spawn(self.transport.send_clear())
            self.state.speech_started_ms = ev.time_ms
            self.endpointer.on_speech_start(ev.time_ms)
        else:
            self.endpointer.on_speech_end(ev.time_ms)
            self._speech_end_wall = now - back

    def _check_barge_in(self, speaking: bool) -> None:
        if not (speaking and self._agent_busy() and self._interruptible):
            return
        started = self.state.speech_started_ms
        if started is not None and interrupts(self.state.stream_ms - started, self.endpointer.partial,
                                              min_ms=self.config.barge_in_min_ms,
                                              sure_ms=self.config.barge_in_sure_ms,
                                              min_words=self.config.barge_in_min_words):
            self.barge_in()

    def _agent_busy(self) -> bool:
        return self.playout.speaking or (self._reply is not None and not self._reply.done())

    def barge_in(self) -> None:
        heard = self.playout.clear()
        self.outbound.clear()
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        for i in range(self._turn_start, len(self.history)):
            if self.history[i].role == "assistant":
                self.history[i] = dataclasses.replace(self.history[i], content="")
        if heard:
            self.history.append(Message("assistant", heard))
        if self.turns:
            self.turns[-1].interrupted = True
            self.turns[-1].agent_text = heard
        self._spawn(self.transport.send_clear())
        self.emit("barge_in", {"heard": heard})
        self._flush_said(interrupted=True)

    def on_mark(self, name: str) -> None:
        self.playout.on_mark(name)
        if not self.playout.speaking:
            self.state.last_activity = self.clock()
            self._interruptible = True
            self._said_if_heard()

    # -- what the caller heard (agent_said) ------------------------------------------------------
    def _said_if_heard(self) -> None:
        """The agent's turn is over (its reply finished and the caller heard all of it)."""
        if self.state.ended or self.playout.speaking or (self._reply is not None and not self._reply.done()):
            return
        self._flush_said()
        self._report_turns()
        self.playout.reset_turn()  # a later barge-in trims only what comes after this
        if self._held is not None and not self._closing:
            held, self._held = self._held, None
            self._begin_turn(*held)

    def _report_turns(self) -> None:
        """One `turn` event (stage timings) per caller turn, once its reply is over."""
        for timing in self.turns[self._turns_reported:]:
            self.emit("turn", timing.as_event(self.started_at))
        self._turns_reported = len(self.turns)

    def _span_ms(self, timing: TurnTiming) -> dict[str, int]:
        """When the caller spoke this turn, in milliseconds since the call started (if known)."""
        if not hasattr(self, "started_at") or timing.speech_start is None or timing.speech_end is None:
            return {}
        start = max(0, round(1000 * (timing.speech_start - self.started_at)))
        return {"start_ms": start, "end_ms": max(start, round(1000 * (timing.speech_end - self.started_at)))}

    def _flush_said(self, interrupted: bool = False) -> None:
        """One `agent_said` for the assistant words committed since the last one, as heard (a
        barge-in has already trimmed the history to what played)."""
        texts = [m.content.strip() for m in self.history[self._said_upto:]
                 if m.role == "assistant" and m.content.strip()]
        self._said_upto = len(self.history)
        if not texts or not hasattr(self, "started_at"):
            return
        now = self.clock()
        first = getattr(self.playout, "_first_sent_at", None) if hasattr(self, "playout") else None
        start = first if first is not None and first <= now else now
        self.emit("agent_said", {"text": " ".join(texts), "interrupted": interrupted,
                                 "start_ms": round(1000 * (start - self.started_at)),
                                 "end_ms": round(1000 * (now - self.started_at))})

    def on_dtmf(self, digit: str) -> None:
        if self._closing:
            return
        self.state.dtmf_at = self.clock()
        self.state.last_activity = self.state.dtmf_at
        if self._agent_busy() and self._interruptible:
            self.barge_in()
        if digit == "#":
            self._flush_dtmf()
        else:
            self.state.dtmf += digit

    def _flush_dtmf(self) -> None:
        digits, self.state.dtmf = self.state.dtmf, ""
        if digits:
            self._begin_turn(self._caller_said(f"keypad {' '.join(digits)}"), TurnTiming(len(self.turns)))

    def _caller_said(self, text: str) -> str:
        return self.caller_text.said(text, self.history, self.turns)

    # -- turns ---------------------------------------------------------------------------------
    def _end_turn(self) -> None:
        timing = TurnTiming(len(self.turns), speech_start=self._speech_start_wall,
                            speech_end=self._speech_end_wall)
        self._speech_start_wall = None
        timing.mark("turn_end", self.clock())
        self.endpointer.reset()
        self.rejoin.turn_ended(self.state.stream_ms)
        self.state.speech_started_ms = None
        # Speech over the agent that did not interrupt it is ignored unless its transcript has words.
        self._discard_final = self._agent_busy()
        self._pending = timing
        self.feed.end_of_turn(self._stt_hint())
        self._stt_open = False
        if not self._discard_final:
            # From here the caller waits: a recogniser or dialogue that hangs gets an apology.
            self._spawn(self._reply_deadline(timing))

    def _stt_hint(self) -> str | None:
        """What the dialogue expects the caller to have said (e.g. "digits"), for the recogniser's bias."""
        expectation = getattr(self.llm, "expectation", None)
        if expectation is None:
            return None
        try:
            hint = expectation(self.history)
        except Exception as exc:  # only a bias: a failure must not cost the turn
            log.debug("call %s: no STT hint: %s", self.call_sid, exc)
            return None
        return hint if isinstance(hint, str) else None

    async def _stt_loop(self) -> None:
        try:
            await self._transcripts()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dead recogniser must not leave the caller talking to no one
            log.warning("call %s: speech recognition failed: %s", self.call_sid, exc)
            self.emit("provider_error", {"stage": "stt", "error": str(exc)})
            if self._reply is not None and not self._reply.done():
                self._reply.cancel()
            self._start_reply(self._apologise())

    async def _transcripts(self) -> None:
        async for t in self.stt.stream(self.feed):
            if not t.is_final:
                self.endpointer.on_partial(t.text)
                continue
            timing = self._pending or TurnTiming(len(self.turns))
            self._pending = None
            timing.mark("stt_final", self.clock())
            discard, self._discard_final = self._discard_final, False
            text = self.rejoin.on_final(t.text)  # None: the first part of a turn the caller went on with
            if text is None:
                continue
            text = self._caller_said(text)
            if (discard and content_words(text) < self.config.barge_in_min_words) or not text.strip():
                self.emit("transcript", {"text": text, "ignored": True})
                continue
            self._begin_turn(text, timing)

    def _begin_turn(self, text: str, timing: TurnTiming) -> None:
        if self._closing:
            return
        if self._agent_busy():
            if not self._interruptible:
                self.emit("transcript", {"text": text, "ignored": True, "reason": "agent not interruptible"})
                if text.startswith("keypad") or content_words(text) >= self.config.barge_in_min_words:
                    # Callers talk over a greeting they may not cut ("Hi, I need to book ..."): the
                    # request is answered once the agent has finished, not lost.
                    self._held = (text, timing)
                return
            self.barge_in()
        self._flush_said()  # what the agent said before this caller turn
        self._report_turns()
        timing.caller_text = text
        self.turns.append(timing)
        self.state.reprompts = 0
        self.emit("transcript", {"text": text, "turn": timing.index, **self._span_ms(timing)})
        self.history.append(Message("user", text))
        self._turn_start = len(self.history)
        self.playout.reset_turn()
        self.playout.on_first_frame = lambda at: timing.mark("first_frame_sent", at)
        if self.hooks is not None and (own := self.hooks.caller_turn(text)) is not None:
            self._start_reply(self._say_own(own))  # the hook's question took this turn
            return
        reply = Reply(self.llm, self.tools, self.speaker, self.chunker_factory, self.history, timing,
                      self.clock, self._control, self.emit, self.gate, guard=self.guard,
                      scrub=self.redactor.payload)
        self._start_reply(reply.run())

    async def _reply_deadline(self, timing: TurnTiming) -> None:
        """A provider that hangs (no error, no answer) must not leave the caller in silence."""
        await asyncio.sleep(self.config.first_audio_deadline_s)
        if timing.first_frame_sent is not None or timing.interrupted or self._closing or self.state.ended:
            return
        if self.turns and self.turns[-1] is not timing and timing.stt_final is not None:
            return  # a later turn superseded this one
        log.warning("call %s: no reply audio %.1f s after the turn; apologising", self.call_sid,
                    self.config.first_audio_deadline_s)
        self.emit("provider_timeout", {"turn": timing.index})
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        self._start_reply(self._apologise())

    def _start_reply(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failing provider must not leave dead air
                log.exception("call %s: reply failed", self.call_sid)
                self.emit("provider_error", {"error": str(exc)})
                await self._apologise()

        self._reply = asyncio.create_task(guarded())
        # A reply cancelled before it started would leave its coroutine never awaited.
        close = getattr(coro, "close", None)
        self._reply.add_done_callback(lambda t: close() if t.cancelled() and close else None)
        # A reply whose audio was all heard before it finished has no mark left to report it.
        self._reply.add_done_callback(lambda t: None if t.cancelled() else self._said_if_heard())

    async def _say_own(self, text: str) -> None:
        """Words of the call loop's own (re-prompts): in the history, as their own turn, so that a
        barge-in over them trims only them."""
        self._turn_start = len(self.history)
        self.playout.reset_turn()
        await self.speaker.say(text)
        self.history.append(Message("assistant", text))

    async def _apologise(self) -> None:
        self._interruptible = False
        try:
            await asyncio.wait_for(self.speaker.say(self.config.apology_text), timeout=5.0)
            self.history.append(Message("assistant", self.config.apology_text))
        except Exception:
            log.exception("call %s: could not even apologise", self.call_sid)
        if self.config.transfer_number:
            await self._control(ToolCall("apology", "transfer_to_human", {}))
        else:
            await self.hang_up(None, "provider_failure")

    async def _control(self, call: ToolCall) -> dict[str, Any]:
        """transfer_to_human and end_call: done by the call loop after the current audio plays."""
        self._spawn(self._after_playout(call))
        return {"ok": True, "status": "scheduled"}

    async def _after_playout(self, call: ToolCall) -> None:
        if self._reply is not None and self._reply is not asyncio.current_task():
            await asyncio.wait({self._reply})  # unlike `await`, never raises the reply's own outcome
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.playout.wait_heard(), timeout=15.0)
        if call.name == "transfer_to_human" and not self.config.transfer_number:
            await self.hang_up(self.config.no_transfer_text, "transfer_unavailable")
            return
        disposition = "transferred" if call.name == "transfer_to_human" else "completed"
        if self._on_control is not None:
            before = self.state.disposition
            if before == "in_progress":
                # Decided before the carrier acts: redirecting the call ends its stream, and Twilio's
                # `stop` can arrive (and stop this session) before the REST request returns.
                self.state.disposition = disposition
            try:
                await self._on_control(call.name, call)
            except Exception as exc:  # the carrier refused: tell the caller rather than go silent
                self.state.disposition = before
                log.warning("call %s: %s failed: %s", self.call_sid, call.name, exc)
                self.emit("control_failed", {"action": call.name, "error": str(exc)})
                if call.name == "transfer_to_human":
                    await self.hang_up(self.config.no_transfer_text, "transfer_failed")
                    return
        await self.hang_up(None, disposition)

    # -- timers --------------------------------------------------------------------------------
    async def _watchdog(self) -> None:
        while not self.state.ended:
            await asyncio.sleep(0.2)
            now = self.clock()
            if now - self.started_at > self.config.max_call_s:
                if self._reply is not None and not self._reply.done():
                    self._reply.cancel()
                self.playout.clear()
                self.outbound.clear()
                await self.hang_up(self.config.max_call_text, "max_duration")
                return
            if self.state.dtmf and now - self.state.dtmf_at > self.config.dtmf_idle_s:
                self._flush_dtmf()
            for name in self.playout.overdue_marks(now):  # an echo that never came: played by now
                self.on_mark(name)
            if self._agent_busy() or self.endpointer.in_turn:
                self.state.last_activity = now
                continue
            if now - self.state.last_activity < self.config.reprompt_after_s:
                continue
            if self.state.reprompts >= self.config.reprompts_before_goodbye:
                await self.hang_up(self.config.silence_goodbye_text, "silence")
                return
            self.state.reprompts += 1
            self.state.last_activity = now
            self._start_reply(self._say_own(self.config.reprompt_text))
