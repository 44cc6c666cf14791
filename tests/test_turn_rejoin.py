"""A caller who goes on after the endpoint, before hearing the reply, keeps their turn (cells/call/rejoin.py):
the pending reply is withdrawn and the two parts reach the dialogue as one turn; a reply that has been
heard or has run a tool is never withdrawn."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cells.call.rejoin import TurnRejoin
from cells.call.timeline import TurnTiming
from cells.providers.base import Message, ToolCall


@dataclass
class FakeSession:
    history: list[Message] = field(default_factory=lambda: [Message("system", "You are the receptionist.")])
    turns: list[TurnTiming] = field(default_factory=list)
    _pending: TurnTiming | None = None
    _reply: Any = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))


def answered(first: str, *replies: Message) -> FakeSession:
    """A session whose caller said `first` and whose reply to it is under way."""
    s = FakeSession()
    s.history += [Message("user", first), *replies]
    s.turns.append(TurnTiming(0, caller_text=first))
    return s


def test_the_rest_of_a_request_joins_a_turn_whose_transcript_is_still_decoding() -> None:
    s = FakeSession(_pending=TurnTiming(0))
    r = TurnRejoin()
    r.turn_ended(10_000)
    assert r.caller_resumed(s, 10_150, 100.0)
    assert s._pending.interrupted  # its reply deadline stays quiet
    assert r.on_final("I need to get a filling done.") is None
    assert r.on_final("Could I come in on Friday at ten?") == \
        "I need to get a filling done. Could I come in on Friday at ten?"
    assert r.on_final("Sarah Green.") == "Sarah Green."  # the carry is used once
    assert s.events == [("turn_rejoined", {"after_ms": 150})]


def test_a_reply_not_yet_heard_is_withdrawn_and_the_turn_taken_back() -> None:
    async def run() -> None:
        reply = asyncio.create_task(asyncio.sleep(10))
        s = answered("Hi, yeah, I wanna book a cleaning.", Message("assistant", "What day"))
        s._reply = reply
        timing = s.turns[0]
        r = TurnRejoin()
        r.turn_ended(5_000)
        assert r.caller_resumed(s, 5_300, 100.0)
        await asyncio.sleep(0)
        assert reply.cancelled()
        assert [m.role for m in s.history] == ["system"] and s.turns == [] and timing.interrupted
        whole = r.on_final("Thursday, three o'clock.")
        assert whole == "Hi, yeah, I wanna book a cleaning. Thursday, three o'clock."

    asyncio.run(run())


def test_a_reply_whose_audio_went_out_is_not_withdrawn() -> None:
    s = answered("Hello.", Message("assistant", "Hi, how can I help?"))
    s.turns[0].first_frame_sent = 1.0
    r = TurnRejoin()
    r.turn_ended(5_000)
    assert not r.caller_resumed(s, 5_300, 100.0)
    assert len(s.history) == 3 and len(s.turns) == 1
    assert r.on_final("I'd like a cleaning.") == "I'd like a cleaning."


def test_reply_audio_sent_as_the_caller_went_on_was_not_heard_and_is_withdrawn() -> None:
    s = answered("Hello.", Message("assistant", "Sorry,"))
    s.turns[0].first_frame_sent = 99.9  # 100 ms before their speech: still on its way to the phone
    r = TurnRejoin(unheard_s=0.15)
    r.turn_ended(5_000)
    assert r.caller_resumed(s, 5_100, 100.0)
    assert s.turns == [] and r.on_final("I'd like a cleaning.") == "Hello. I'd like a cleaning."


def test_a_reply_that_ran_a_tool_is_never_withdrawn() -> None:
    call = ToolCall("c1", "create_booking", {"name": "Anna"})
    s = answered("Yes.", Message("assistant", "", tool_calls=(call,)),
                 Message("tool", '{"ok": true}', tool_call_id="c1"))
    r = TurnRejoin()
    r.turn_ended(5_000)
    assert not r.caller_resumed(s, 5_200, 100.0)
    assert [m.role for m in s.history] == ["system", "user", "assistant", "tool"] and len(s.turns) == 1


def test_speech_long_after_the_endpoint_is_a_new_turn() -> None:
    s = answered("I need a filling.")
    r = TurnRejoin(window_ms=1500)
    r.turn_ended(5_000)
    assert not r.caller_resumed(s, 6_600, 100.0)
    assert len(s.turns) == 1
    r.turn_ended(8_000)
    assert not r.caller_resumed(s, 8_100 + 1500, 100.0) and len(s.turns) == 1
    assert not r.caller_resumed(s, 8_100, 100.0)  # one endpoint is rejoined at most once


def test_a_first_part_followed_by_nothing_is_still_answered() -> None:
    s = FakeSession(_pending=TurnTiming(0))
    r = TurnRejoin()
    r.turn_ended(1_000)
    assert r.caller_resumed(s, 1_200, 100.0)
    assert r.on_final("Could I book a check-up for Monday?") is None
    assert r.on_final("") == "Could I book a check-up for Monday?"  # the resumption was a cough
