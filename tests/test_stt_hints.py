"""What the agent expects next reaches the recogniser: the policy names it, the call loop puts it on the
turn's EndOfTurn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from call_harness import Phone, speech_frames, stream, wait_for
from reception_harness import FakeCall

from cells.call.session import CallConfig, CallSession
from cells.dialogue.chunker import SentenceChunker
from cells.providers.base import EndOfTurn, Frame, Message, Transcript
from loadtest.calls.instant import InstantLlm, InstantStt, InstantTts, NoTools


def test_the_policy_names_what_it_asked_for() -> None:
    call = FakeCall()
    assert call.policy.expectation(call.messages) is None  # after the greeting anything goes
    call.say("I'd like to book a cleaning")
    assert call.policy.expectation(call.messages) == "date"
    call.say("next wednesday at ten in the morning")
    assert "name" in call.replies[-1].lower()
    assert call.policy.expectation(call.messages) == "name"
    call.say("Sarah Johnson")
    assert "number" in call.replies[-1].lower()
    assert call.policy.expectation(call.messages) == "digits"
    call.say("five five five zero one nine two")
    assert call.policy.expectation(call.messages) == "yes_no"


class HintRecordingStt(InstantStt):
    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__(lines)
        self.hints: list[str | None] = []

    async def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        async def recorded() -> AsyncIterator[Frame]:
            async for frame in frames:
                if isinstance(frame, EndOfTurn):
                    self.hints.append(frame.hint)
                yield frame

        async for t in super().stream(recorded()):
            yield t


class ExpectingLlm(InstantLlm):
    """Asks for a phone number after the first caller turn, and says so."""

    def expectation(self, messages: Sequence[Message]) -> str | None:
        turns = sum(m.role == "user" for m in messages)
        return "digits" if turns == 1 else None


class BrokenExpectationLlm(InstantLlm):
    def expectation(self, messages: Sequence[Message]) -> str | None:
        raise RuntimeError("replay failed")


def _two_turns(llm: InstantLlm) -> list[str | None]:
    stt = HintRecordingStt(["I'd like to book", "five five five"])

    async def run() -> None:
        phone = Phone()
        session = CallSession(CallConfig(disclosure="Hi."), stt=stt, llm=llm, tts=InstantTts(),
                              tools=NoTools(), chunker_factory=SentenceChunker, transport=phone)
        phone.session = session
        await session.start("MZtest", "CAtest")
        seq = await wait_for(lambda: phone.count("mark") >= 1 and not session.playout.speaking, 5, session)
        seq = await stream(session, speech_frames("I would like to book a cleaning."), seq)
        seq = await wait_for(lambda: session.turns and not session._agent_busy(), 8, session, seq)
        seq = await stream(session, speech_frames("five five five one two."), seq)
        await wait_for(lambda: len(session.turns) == 2 and not session._agent_busy(), 8, session, seq)
        await session.stop()

    asyncio.run(run())
    return stt.hints


def test_the_call_loop_passes_the_expectation_with_each_turn_end() -> None:
    assert _two_turns(ExpectingLlm()) == [None, "digits"]


def test_a_failing_expectation_costs_nothing_but_the_hint() -> None:
    assert _two_turns(BrokenExpectationLlm()) == [None, None]
