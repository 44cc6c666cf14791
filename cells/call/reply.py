"""One agent reply: dialogue (LLM or local policy) -> sentence chunks -> TTS -> paced playout.

Each sentence goes to TTS as soon as the chunker releases it, and each TTS chunk goes to the
outbound path as soon as it arrives, so the caller hears the first words while the rest is
still being produced. Tool calls run between dialogue rounds; their results go back into the
history in the OpenAI message convention (assistant with tool_calls, then one tool message per
call), which both the local policy and real LLMs read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, Protocol

from cells.call.claims import HONEST_LINES as _HONEST_LINES
from cells.call.claims import check_sentence
from cells.call.confirmation import ConfirmationGate
from cells.call.guard import OFF_TOPIC, CallGuard, is_language_model
from cells.call.handoff import with_summary
from cells.call.playout import Playout
from cells.call.timeline import TurnTiming
from cells.call.transport import OutboundPath
from cells.providers.base import Grounding, LlmProvider, Message, TextDelta, ToolCall, ToolSpec, TtsProvider

log = logging.getLogger(__name__)

# Tools the call loop carries out itself instead of a tool adapter.
CALL_CONTROL_TOOLS = frozenset({"transfer_to_human", "end_call"})


class ToolBox(Protocol):
    # True when the dialogue provider asks for and checks the caller's yes itself (a rule-based
    # policy); otherwise the call loop's confirmation gate does it.
    confirms_mutations: bool

    def specs(self) -> Sequence[ToolSpec]: ...
    def is_mutating(self, name: str) -> bool: ...
    async def call(self, name: str, arguments: dict[str, Any], *,
                   confirmed: bool = False) -> dict[str, Any]: ...


class Chunker(Protocol):
    def push(self, text: str) -> list[str]: ...
    def flush(self) -> list[str]: ...


class Speaker:
    """Speaks text through TTS into the playout, one segment per sentence."""

    def __init__(self, tts: TtsProvider, outbound: OutboundPath, playout: Playout,
                 voice_id: str | None) -> None:
        self.tts = tts
        self.outbound = outbound
        self.playout = playout
        self.voice_id = voice_id

    async def say(self, text: str, timing: TurnTiming | None = None,
                  clock: Callable[[], float] | None = None) -> None:
        if not text.strip():
            return
        segment = self.playout.begin_segment(text)
        try:
            async with aclosing(self.tts.synthesize(text, self.voice_id)) as chunks:
                async for chunk in chunks:
                    if timing is not None and clock is not None:
                        timing.mark("first_tts_audio", clock())
                    self.playout.add_frames(segment, self.outbound.push(chunk.pcm))
            self.playout.add_frames(segment, self.outbound.flush())
        finally:
            # A segment left open would keep the agent "speaking" for ever; end it with whatever
            # audio it got, even when TTS failed or the reply was cancelled.
            self.playout.end_segment(segment)


class Reply:
    """Runs dialogue rounds until the agent has nothing more to say or do."""

    def __init__(
        self,
        llm: LlmProvider,
        tools: ToolBox,
        speaker: Speaker,
        chunker_factory: Callable[[], Chunker],
        history: list[Message],
        timing: TurnTiming,
        clock: Callable[[], float],
        on_control: Callable[[ToolCall], Awaitable[dict[str, Any]]],
        emit: Callable[[str, dict[str, Any]], None],
        gate: ConfirmationGate,
        max_rounds: int = 4,
        guard: CallGuard | None = None,
        scrub: Callable[[Any], Any] | None = None,
    ) -> None:
        self.llm = llm
        # What the brain says or passes to a tool, masked (card numbers) before anyone hears or keeps it.
        self.scrub: Callable[[Any], Any] = scrub or (lambda value: value)
        self.tools = tools
        self.speaker = speaker
        self.chunker_factory = chunker_factory
        self.history = history
        self.timing = timing
        self.clock = clock
        self.on_control = on_control
        self.emit = emit
        self.gate = gate
        self.max_rounds = max_rounds
        self.guard = guard  # cells.call.guard: screens the caller's turn, checks a model's sentences
        # A language model's words are checked against what it was given; a rule-based brain's are its own.
        self._model_speaks = guard is not None and is_language_model(llm)

    async def run(self) -> None:
        if self.guard is not None and await self.guard.screen(self):
            return  # the guard answered an attack or abuse itself; the brain never saw the turn
        if self.gate.held is not None:
            caller = self.history[-1].content if self.history else ""
            again = await self.gate.resolve(caller, self.history, self._confirmed_call)
            if again is not None:
                await self._say_own(again)
                return
        for _ in range(self.max_rounds):
            text, calls = await self._round()
            self.history.append(Message("assistant", text, tool_calls=tuple(calls)))
            self.timing.agent_text = (self.timing.agent_text + " " + text).strip()
            if not calls:
                return
            readback = None
            answered = 0
            try:
                for call in calls:
                    if self.tools.is_mutating(call.name) and not self.tools.confirms_mutations:
                        invalid = self._invalid(call)
                        if invalid is not None:  # the model hears the error; the caller hears no read-back
                            result = invalid
                        elif readback is None:
                            result, readback = self.gate.hold(call)
                            self.emit("tool_held", {"name": call.name})
                        else:  # one confirmation at a time, or the first would be lost
                            result = {"ok": False, "status": "one_change_at_a_time"}
                    else:
                        result = await self._run_tool(call)
                    self.history.append(Message("tool", json.dumps(result), tool_call_id=call.id))
                    answered += 1
            except asyncio.CancelledError:
                # Every tool call in the history needs its answer, or OpenAI-style APIs refuse
                # the next request.
                for call in calls[answered:]:
                    interrupted = {"ok": False, "status": "interrupted"}
                    self.history.append(Message("tool", json.dumps(interrupted), tool_call_id=call.id))
                raise
            if readback is not None:
                await self._say_own(readback)
                return

    def _invalid(self, call: ToolCall) -> dict[str, Any] | None:
        """The error result of a change whose arguments the tool would refuse (when the tool box can
        tell without running it: `validate`), so that no one confirms what cannot run."""
        validate = getattr(self.tools, "validate", None)
        return validate(call.name, call.arguments) if callable(validate) else None

    async def _say_own(self, text: str) -> None:
        """Words of the call loop's own (read-backs), spoken and kept in the history."""
        await self.speaker.say(text, self.timing, self.clock)
        self.history.append(Message("assistant", text))
        self.timing.agent_text = (self.timing.agent_text + " " + text).strip()

    async def _confirmed_call(self, call: ToolCall) -> dict[str, Any]:
        self.emit("tool_call", {"name": call.name, "arguments": call.arguments, "confirmed": True})
        try:
            result = await self.tools.call(call.name, call.arguments, confirmed=True)
        except Exception as exc:  # the held call is in the history already: it needs its (failed) answer
            log.warning("tool %s failed: %s: %s", call.name, type(exc).__name__, exc)
            result = {"ok": False, "error": "tool_failed"}
        self.emit("tool_result", {"name": call.name, "result": result})
        return result

    async def _round(self) -> tuple[str, list[ToolCall]]:
        chunker = self.chunker_factory()
        spoken: list[str] = []
        calls: list[ToolCall] = []
        grounding: list[str] = []  # the knowledge passages the brain answered from, this round
        stream = self.llm.complete(list(self.history), self.tools.specs())
        async with aclosing(stream) as items:
            async for item in items:
                if isinstance(item, TextDelta):
                    self.timing.mark("first_token", self.clock())
                    for sentence in chunker.push(item.text):
                        await self._speak_checked(sentence, spoken, grounding)
                elif isinstance(item, ToolCall):
                    calls.append(ToolCall(item.id, item.name, self.scrub(item.arguments)))
                elif isinstance(item, Grounding):
                    grounding.extend(item.passages)
        for sentence in chunker.flush():
            await self._speak_checked(sentence, spoken, grounding)
        return " ".join(spoken), calls

    async def _speak_checked(self, sentence: str, spoken: list[str], grounding: Sequence[str] = ()) -> None:
        """Speaks a sentence unless it claims an outcome no tool result backs and no knowledge passage
        states (claims.py); then the honest line is said once instead and the rest of the round is
        dropped."""
        if spoken and (spoken[-1] in _HONEST_LINES or spoken[-1] == OFF_TOPIC):
            return
        sentence = self.scrub(sentence)
        honest = check_sentence(sentence, self.history, self.tools.is_mutating, grounding)
        if honest is not None:
            self.emit("claim_replaced", {"said": sentence, "instead": honest})
            sentence = honest
        elif self._model_speaks and self.guard is not None:
            instead, why = self.guard.check_output(sentence, self.history, grounding, len(spoken))
            if instead is not None:
                self.emit("output_guarded", {"said": sentence, "instead": instead, "reason": why})
                if not instead:
                    return
                sentence = instead
        spoken.append(sentence)
        await self.speaker.say(sentence, self.timing, self.clock)

    async def _run_tool(self, call: ToolCall) -> dict[str, Any]:
        self.emit("tool_call", {"name": call.name, "arguments": call.arguments})
        if call.name in CALL_CONTROL_TOOLS:
            if call.name == "transfer_to_human":  # the person who answers hears who and why first
                call = with_summary(call, self.history)
                self.emit("transfer_requested", {"summary": call.arguments["summary"]})
            return await self.on_control(call)
        blocked = self.guard.blocks(call.name, self.tools.is_mutating(call.name)) if self.guard else None
        if blocked is not None:
            self.emit("tool_result", {"name": call.name, "result": blocked})
            return blocked
        try:
            result = await self.tools.call(call.name, call.arguments, confirmed=self.tools.confirms_mutations)
        except Exception as exc:  # a failing tool must not end the call; the dialogue hears that it failed
            # Not the exception's text: it becomes a call event the tenant reads, and may hold server paths.
            log.warning("tool %s failed: %s: %s", call.name, type(exc).__name__, exc)
            result = {"ok": False, "error": "tool_failed"}
        self.emit("tool_result", {"name": call.name, "result": result})
        return result
