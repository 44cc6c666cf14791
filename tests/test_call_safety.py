"""The call loop's safety branches, each driven directly and deterministically: the confirmation gate
(unclear answers, 'yes but ...', two changes in one turn), outcome claims a tool result does not back,
and what the caller heard of a reply cut off by a barge-in, word by word, on a simulated clock.

A scripted model stands in for the LLM: each `complete` call plays the next scripted round.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from cells.agents.reception.calendar import Calendar, CalendarTools
from cells.agents.reception.policy import ReceptionPolicy
from cells.call.claims import check_sentence, claimed_outcomes
from cells.call.confirmation import MAX_UNCLEAR, ConfirmationGate
from cells.call.playout import FRAME_S, Playout
from cells.call.reply import Reply
from cells.call.timeline import TurnTiming
from cells.dialogue.chunker import SentenceChunker
from cells.providers.base import Message, TextDelta, ToolCall, ToolSpec
from cells.tools.base import ToolRegistry
from evals.dialogue.harness import NOW

BOOK = ToolCall("call_1", "create_booking", {"name": "Anna Kowalski", "start": "2026-03-05T11:00"})
MOVE = ToolCall("call_2", "move_booking", {"booking_id": "BK1", "new_start": "2026-03-06T10:00"})


class ScriptedLlm:
    """Plays scripted rounds in order; each round is a list of text deltas and tool calls."""

    def __init__(self, *rounds: Sequence[TextDelta | ToolCall]) -> None:
        self.rounds = list(rounds)
        self.seen: list[list[Message]] = []

    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        self.seen.append(list(messages))
        for item in self.rounds.pop(0) if self.rounds else [TextDelta("Okay.")]:
            yield item


class BookingBox:
    """Calendar tools as the call loop sees them; records every run. `outcome`: ok, error or raise."""

    confirms_mutations = False

    def __init__(self, outcome: str = "ok") -> None:
        self.outcome = outcome
        self.runs: list[tuple[str, dict[str, Any], bool]] = []

    def specs(self) -> Sequence[ToolSpec]:
        return (ToolSpec("create_booking", "Book."), ToolSpec("move_booking", "Move."),
                ToolSpec("check_availability", "Look."))

    def is_mutating(self, name: str) -> bool:
        return name in ("create_booking", "move_booking")

    async def call(self, name: str, arguments: dict[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        self.runs.append((name, arguments, confirmed))
        if self.outcome == "raise":
            raise OSError("calendar file is gone")
        if self.outcome == "error":
            return {"ok": False, "error": "taken", "message": "that time is already booked"}
        return {"ok": True, "booking": {"id": "BK7", **arguments}}


class Speaker:
    def __init__(self) -> None:
        self.said: list[str] = []

    async def say(self, text: str, timing: Any = None, clock: Any = None) -> None:
        self.said.append(text)


class Turns:
    """One call's turns through Reply with one gate, as the session runs them."""

    def __init__(self, llm: Any, tools: Any) -> None:
        self.llm, self.tools, self.gate = llm, tools, ConfirmationGate()
        self.history: list[Message] = [Message("system", "You are the receptionist.")]
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.speaker = Speaker()

    def caller(self, text: str) -> list[str]:
        """The caller's turn; returns what the agent said in reply."""
        self.history.append(Message("user", text))
        before = len(self.speaker.said)

        async def control(call: ToolCall) -> dict[str, Any]:
            return {"ok": True}

        reply = Reply(self.llm, self.tools, self.speaker, SentenceChunker, self.history, TurnTiming(0),
                      lambda: 0.0, control, lambda kind, data: self.events.append((kind, data)), self.gate)
        asyncio.run(reply.run())
        return self.speaker.said[before:]

    def tool_results(self) -> list[dict[str, Any]]:
        return [json.loads(m.content) for m in self.history if m.role == "tool"]


# --- the confirmation gate ----------------------------------------------------------------------------


def test_an_unclear_answer_is_asked_again_and_nothing_runs() -> None:
    call = Turns(ScriptedLlm([TextDelta("Let me book that."), BOOK]), BookingBox())
    said = call.caller("Book me in Thursday at eleven.")
    assert said[-1].startswith("Just to confirm: create booking")
    for k in range(MAX_UNCLEAR):
        again = call.caller("Hmm, what was that?")
        assert again == ["Sorry, I need a yes or a no. " + call.gate.held.readback], k  # type: ignore[union-attr]
        assert call.tools.runs == []
    assert call.gate.held is not None, "still waiting for a clear answer"


def test_the_read_back_says_dates_and_times_as_words() -> None:
    call = Turns(ScriptedLlm([BOOK]), BookingBox())
    said = call.caller("Book me in Thursday at eleven.")
    assert said == ["Just to confirm: create booking, name Anna Kowalski, start Thursday, March 5th at "
                    "11 a.m. Shall I go ahead?"]


def test_too_many_unclear_answers_drop_the_change_without_running_it() -> None:
    call = Turns(ScriptedLlm([BOOK]), BookingBox())
    call.caller("Book me in Thursday at eleven.")
    for _ in range(MAX_UNCLEAR + 1):
        call.caller("Uh, what?")
    assert call.tools.runs == [] and call.gate.held is None
    assert call.tool_results()[-1] == {"ok": False, "status": "no_clear_answer"}
    call.caller("Yes.")  # a yes after the change was dropped confirms nothing
    assert call.tools.runs == []


@pytest.mark.parametrize("answer", ["Yes, but make it 11 instead.", "Yeah, but can we do Friday?",
                                    "Yes, except on Friday.", "Sure, but at 3pm."])
def test_yes_but_at_the_gate_is_no_yes(answer: str) -> None:
    call = Turns(ScriptedLlm([BOOK]), BookingBox())
    call.caller("Book me in Thursday at eleven.")
    again = call.caller(answer)
    assert call.tools.runs == [] and again[-1].startswith("Sorry, I need a yes or a no.")


def test_a_no_declines_and_the_model_hears_it() -> None:
    call = Turns(ScriptedLlm([BOOK], [TextDelta("Okay, I won't book it.")]), BookingBox())
    call.caller("Book me in Thursday at eleven.")
    assert call.caller("No, don't.") == ["Okay, I won't book it."]
    assert call.tools.runs == [] and call.tool_results()[-1] == {"ok": False, "status": "caller_declined"}


@pytest.mark.parametrize("answer", ["Sure, why not? Actually, no.", "No problem. Wait, no.",
                                    "Yes. No, hold on."])
def test_a_yes_taken_back_in_the_same_breath_runs_nothing(answer: str) -> None:
    call = Turns(ScriptedLlm([BOOK]), BookingBox())
    call.caller("Book me in Thursday at eleven.")
    call.caller(answer)
    assert call.tools.runs == [] and call.tool_results()[-1]["status"] == "caller_declined"


def test_a_yes_runs_the_held_change_once_confirmed() -> None:
    call = Turns(ScriptedLlm([BOOK], [TextDelta("You're booked for Thursday at 11 a.m.")]), BookingBox())
    call.caller("Book me in Thursday at eleven.")
    assert call.caller("Yes, please.") == ["You're booked for Thursday at 11 a.m."]
    assert call.tools.runs == [("create_booking", BOOK.arguments, True)]


def test_two_changes_in_one_turn_hold_the_first_and_run_neither() -> None:
    call = Turns(ScriptedLlm([BOOK, MOVE]), BookingBox())
    said = call.caller("Book Thursday and move my other one to Friday.")
    assert call.tools.runs == [], "no change runs before the caller's yes"
    assert said == [call.gate.held.readback] and call.gate.held.call == BOOK  # type: ignore[union-attr]
    assert call.tool_results() == [
        {"ok": False, "status": "awaiting_caller_confirmation", "readback": said[0]},
        {"ok": False, "status": "one_change_at_a_time"}]
    call.caller("Yes.")
    assert call.tools.runs == [("create_booking", BOOK.arguments, True)], "only the change read back"


def test_a_lookup_next_to_a_change_runs_but_the_change_waits() -> None:
    look = ToolCall("call_3", "check_availability", {"date": "2026-03-05"})
    call = Turns(ScriptedLlm([look, BOOK]), BookingBox())
    call.caller("Is Thursday free? Book it.")
    assert call.tools.runs == [("check_availability", look.arguments, False)]


class CheckedBox(BookingBox):
    """A tool box that can check a call's arguments without running it (as ToolRegistry.validate does)."""

    def validate(self, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        if "start" not in arguments:
            return {"ok": False, "error": "missing_argument", "message": f"{name} needs start"}
        return None


def test_a_change_with_bad_arguments_is_refused_to_the_model_not_read_back_to_the_caller() -> None:
    bad = ToolCall("call_9", "create_booking", {"name": "Anna Kowalski"})
    llm = ScriptedLlm([bad], [TextDelta("Sorry, what time would you like?")])
    call = Turns(llm, CheckedBox())
    said = call.caller("Book me in.")
    assert said == ["Sorry, what time would you like?"] and call.gate.held is None
    assert call.tool_results() == [{"ok": False, "error": "missing_argument",
                                    "message": "create_booking needs start"}]
    assert call.tools.runs == []


def test_the_registry_validates_without_running() -> None:
    box = PolicyBox()
    args = {"name": "A", "service": "massage", "start": "2026-03-05T11:00"}
    assert box.registry.validate("create_booking", args)["error"] == "invalid_argument"  # type: ignore[index]
    assert box.registry.validate("create_booking", {**args, "service": "cleaning"}) is None
    assert box.calendar.bookings() == []


# --- outcome claims -----------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["error", "raise"])
def test_a_claimed_booking_after_a_failed_tool_is_not_spoken(outcome: str) -> None:
    llm = ScriptedLlm([BOOK], [TextDelta("Great news. You are booked for Thursday at 11. See you then!")])
    call = Turns(llm, BookingBox(outcome))
    call.caller("Book me in Thursday at eleven.")
    said = call.caller("Yes.")
    honest = "I couldn't complete that booking; shall I take a message or put you through?"
    assert said == ["Great news.", honest], said
    assert call.history[-1] == Message("assistant", f"Great news. {honest}")
    assert call.tool_results()[-1]["ok"] is False
    replaced = {"said": "You are booked for Thursday at 11.", "instead": honest}
    assert ("claim_replaced", replaced) in call.events


def test_a_claimed_booking_after_a_successful_tool_is_spoken() -> None:
    llm = ScriptedLlm([BOOK], [TextDelta("You are booked for Thursday at 11. See you then!")])
    call = Turns(llm, BookingBox("ok"))
    call.caller("Book me in Thursday at eleven.")
    assert call.caller("Yes.") == ["You are booked for Thursday at 11.", "See you then!"]
    assert not any(kind == "claim_replaced" for kind, _ in call.events)


def test_a_claim_without_any_tool_call_is_not_spoken() -> None:
    call = Turns(ScriptedLlm([TextDelta("Done, your appointment is cancelled.")]), BookingBox())
    said = call.caller("Cancel my appointment.")
    assert said == ["I couldn't complete that cancellation; shall I take a message or put you through?"]


def test_a_booking_does_not_back_a_claimed_move() -> None:
    history = [Message("assistant", "", tool_calls=(BOOK,)),
               Message("tool", json.dumps({"ok": True}), tool_call_id=BOOK.id)]
    mutating = {"create_booking", "move_booking"}.__contains__
    assert check_sentence("You're booked.", history, mutating) is None
    assert check_sentence("I've rescheduled it to Friday.", history, mutating) is not None
    assert check_sentence("It's confirmed.", history, mutating) is None


@pytest.mark.parametrize(("sentence", "claims"), [
    ("You're booked for Tuesday.", {"booked"}), ("Your appointment has been cancelled.", {"cancelled"}),
    ("I've moved it to Friday.", {"moved"}), ("I sent you a text.", {"sent"}),
    ("Your booking is confirmed.", {"confirmed"}), ("You're all set.", {"booked"}),
    ("No problem, you're booked.", {"booked"}),
    ("The booking was made.", {"booked"}), ("Sorry, we're fully booked on Thursday.", set()),
    ("That time is already booked.", set()), ("I see your scheduled appointment on Tuesday.", set()),
    ("Shall I book it?", set()), ("I couldn't book that.", set()), ("It isn't cancelled yet.", set()),
    ("Just to confirm, Thursday at 11?", set()), ("What time works for you?", set()),
])
def test_which_sentences_claim_an_outcome(sentence: str, claims: set[str]) -> None:
    assert claimed_outcomes(sentence) == claims


# --- what the caller heard ----------------------------------------------------------------------------


class SimTime:
    """A clock that moves only when the pacing loop sleeps; it parks the loop at `stop_at`."""

    def __init__(self) -> None:
        self.t = 0.0
        self.stop_at = float("inf")
        self.parked = asyncio.Event()

    def clock(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if self.t + seconds > self.stop_at:
            self.t = self.stop_at
            self.parked.set()
            await asyncio.Event().wait()  # until the test cancels the loop
        self.t += seconds
        await asyncio.sleep(0)


async def _play(segments: list[tuple[str, int]], stop_at: float, arrives_at: dict[int, float] | None = None,
                marks_heard: Sequence[int] = ()) -> tuple[str, int]:
    """Plays segments (text, frames) on simulated time, barges in at `stop_at`; returns what the caller
    heard and how many frames had been sent."""
    sim = SimTime()
    sent: list[str] = []

    class Sink:
        async def send_audio(self, frame: str) -> None:
            sent.append(frame)

        async def send_mark(self, name: str) -> None:
            sent.append(json.dumps({"mark": name}))

    playout = Playout(Sink(), clock=sim.clock, sleep=sim.sleep)
    loop = asyncio.create_task(playout.run())
    names = []
    for k, (text, frames) in enumerate(segments):
        if arrives_at and k in arrives_at:  # TTS was slow: the line goes quiet until the next sentence
            while playout._queue:
                await asyncio.sleep(0)
            sim.t = arrives_at[k]
        name = playout.begin_segment(text)
        names.append(name)
        playout.add_frames(name, [json.dumps({"event": "media", "n": i}) for i in range(frames)])
        playout.end_segment(name)
    for k in marks_heard:
        playout.on_mark(names[k])
    sim.stop_at = stop_at
    await sim.parked.wait()
    heard = playout.clear()
    loop.cancel()
    media = sum('"media"' in m for m in sent)
    return heard, media


def test_audio_sent_ahead_of_playback_is_not_heard() -> None:
    # Five words over ten frames (0.2 s). At 0.1 s five frames have played, but eight have been sent.
    heard, sent = asyncio.run(_play([("one two three four five", 10)], stop_at=5 * FRAME_S))
    assert sent > 5
    assert heard == "one two"


def test_a_pause_between_sentences_is_not_counted_as_playing() -> None:
    # The first sentence has played out at 0.2 s; the second arrives at 1.2 s; the caller barges in 0.1 s
    # (five frames) into it. Counted from the first frame, 1.3 s would be 65 frames: all that was sent.
    segments = [("alpha beta", 10), ("one two three four five six seven eight nine ten", 20)]
    heard, _ = asyncio.run(_play(segments, stop_at=1.2 + 5 * FRAME_S, arrives_at={1: 1.2}))
    assert heard == "alpha beta one two"


def test_a_segment_whose_mark_came_back_was_heard_in_full() -> None:
    heard, _ = asyncio.run(_play([("hello there", 10), ("and more words here", 10)], stop_at=3 * FRAME_S,
                                 marks_heard=[0]))
    assert heard == "hello there"


def test_nothing_played_means_nothing_heard() -> None:
    heard, _ = asyncio.run(_play([("one two three", 30)], stop_at=0.0))
    assert heard == ""


class PolicyBox:
    """The Reception policy's calendar tools as the call loop sees them (it confirms changes itself)."""

    confirms_mutations = True

    def __init__(self) -> None:
        self.calendar = Calendar(clock=lambda: NOW)
        self.registry = ToolRegistry(CalendarTools(self.calendar).adapters())

    def specs(self) -> Sequence[ToolSpec]:
        return self.registry.specs()

    def is_mutating(self, name: str) -> bool:
        return self.registry.is_mutating(name)

    async def call(self, name: str, arguments: dict[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        return await self.registry.call(name, arguments, confirmed=confirmed)


def test_the_rule_based_policys_true_outcomes_are_spoken_unchanged() -> None:
    box = PolicyBox()
    call = Turns(ReceptionPolicy(clock=lambda: NOW), box)  # type: ignore[arg-type]
    lines = ["I need a cleaning on Thursday at 11 a.m.", "Anna Kowalski.", "555-0142.", "Yes.",
             "I need to move my appointment.", "Anna Kowalski.", "Friday at 10 a.m.", "Yes.",
             "I'd like to cancel my appointment. Anna Kowalski.", "Yes, please."]
    said = [" ".join(call.caller(line)) for line in lines]
    assert "You're all set for your check-up and cleaning" in said[3]
    assert "Your appointment is now on Friday, March 6th at 10 a.m." in said[7]
    assert "Your appointment on Friday, March 6th is cancelled." in said[9]
    assert not [e for e in call.events if e[0] == "claim_replaced"] and box.calendar.bookings() == []
