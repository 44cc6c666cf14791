"""The call loop with instant providers and real caller audio: turn-taking, barge-in, silence,
DTMF, provider failure, bad carrier messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from call_harness import Phone, noise_frames, speech_frames, stream, wait_for

from cells.call.session import CallConfig, CallSession
from cells.dialogue.chunker import SentenceChunker
from cells.providers.base import Message, ProviderUnavailable, TextDelta, ToolCall, ToolSpec
from loadtest.calls.instant import InstantLlm, InstantStt, InstantTts, NoTools

LONG_REPLY = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 13))
GREETING = ("Thank you for calling. This call is answered by an AI assistant and may be recorded. "
            "How can I help you today?")


def make_session(phone: Phone, *, stt_lines: Sequence[str] = ("hello",), stt: Any = None, llm: Any = None,
                 tools: Any = None, on_control: Any = None, **config: Any) -> CallSession:
    cfg = CallConfig(disclosure="Hi.", **config)
    session = CallSession(cfg, stt=stt or InstantStt(stt_lines), llm=llm or InstantLlm(), tts=InstantTts(),
                          tools=tools or NoTools(), chunker_factory=SentenceChunker, transport=phone,
                          on_control=on_control)
    phone.session = session
    return session


async def start(session: CallSession, phone: Phone) -> int:
    """Starts the call and waits until its greeting has played, so the caller speaks after it (a fixed
    few seconds let a long greeting, or a slow machine, have the caller talk over it)."""
    await session.start("MZtest", "CAtest")
    greeted = lambda: phone.count("mark") >= 1 and not session.playout.speaking  # noqa: E731
    seq = await wait_for(greeted, 30, session)
    assert greeted(), "the greeting did not finish playing"
    return seq


def call_until_hung_up(caller_says: str | None, **session_kwargs: Any) -> tuple[CallSession, Phone]:
    """A call in which the caller says one line (or nothing) and then waits for the agent to end it."""

    async def run() -> tuple[CallSession, Phone]:
        phone = Phone()
        session = make_session(phone, **session_kwargs)
        seq = await start(session, phone)
        if caller_says:
            seq = await stream(session, speech_frames(caller_says), seq)
        await wait_for(lambda: phone.closed is not None, 15, session, seq)
        await session.stop()
        return session, phone

    return asyncio.run(run())


def test_a_turn_gets_a_reply_with_every_stage_timed() -> None:
    async def run() -> CallSession:
        phone = Phone()
        session = make_session(phone, stt_lines=["I would like to book a cleaning"])
        seq = await start(session, phone)
        seq = await stream(session, speech_frames("I would like to book a cleaning please."), seq)
        await wait_for(lambda: session.turns and not session._agent_busy(), 8, session, seq)
        await session.stop()
        return session

    session = asyncio.run(run())
    assert len(session.turns) == 1
    turn = session.turns[0]
    assert turn.caller_text == "I would like to book a cleaning"
    stamps = [turn.speech_end, turn.turn_end, turn.stt_final, turn.first_token, turn.first_tts_audio,
              turn.first_frame_sent]
    assert all(s is not None for s in stamps), turn
    assert stamps == sorted(stamps), "stages must happen in pipeline order"
    assert session.history[-1] == Message("assistant", "Sure. I can help with that right away.")


def test_barge_in_clears_audio_and_keeps_only_what_was_heard() -> None:
    async def run() -> tuple[CallSession, Phone]:
        phone = Phone()
        session = make_session(phone, stt_lines=["tell me everything", "stop"], llm=InstantLlm(LONG_REPLY))
        seq = await start(session, phone)
        seq = await stream(session, speech_frames("Tell me everything about your clinic."), seq)
        seq = await wait_for(lambda: session.playout.stats.frames_sent > 150, 10, session, seq)
        seq = await stream(session, speech_frames("Stop, stop, I have a question."), seq)
        await wait_for(lambda: len(session.turns) >= 2, 8, session, seq)
        await session.stop()
        return session, phone

    session, phone = asyncio.run(run())
    assert phone.count("clear") >= 1
    assert session.turns[0].interrupted
    heard = [m.content for m in session.history if m.role == "assistant" and m.content]
    said = heard[-1] if session.history[-1].role != "assistant" else heard[-2]
    assert said and LONG_REPLY.startswith(said), said
    assert len(said) < len(LONG_REPLY) / 2, "the caller interrupted early in the reply"


def test_silence_reprompts_then_says_goodbye_and_hangs_up() -> None:
    session, phone = call_until_hung_up(None, reprompt_after_s=1.0, reprompt_text="Still there?")
    assert phone.closed == "silence"
    said = [m.content for m in session.history if m.role == "assistant"]
    assert said[-1] == CallConfig().silence_goodbye_text
    assert session.state.disposition == "silence"


def test_keypad_digits_become_a_turn() -> None:
    async def run() -> CallSession:
        phone = Phone()
        session = make_session(phone)
        seq = await start(session, phone)
        for digit in "12#":
            session.on_dtmf(digit)
        await wait_for(lambda: bool(session.turns), 3, session, seq)
        await session.stop()
        return session

    session = asyncio.run(run())
    assert session.turns[0].caller_text == "keypad 1 2"


class DeadLlm:
    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        raise ProviderUnavailable("upstream 503", provider="dead")
        yield TextDelta("")  # pragma: no cover - makes this an async generator


def test_a_dead_provider_gets_an_apology_then_a_transfer_not_dead_air() -> None:
    transfers: list[str] = []

    async def control(name: str, call: ToolCall) -> None:
        transfers.append(name)

    session, phone = call_until_hung_up("Can you hear me okay?", llm=DeadLlm(), on_control=control,
                                        transfer_number="+15005550009")
    assert transfers == ["transfer_to_human"]
    assert phone.closed == "transferred"
    assert session.history[-1] == Message("assistant", CallConfig().apology_text)


def test_a_transfer_stays_a_transfer_when_the_carriers_stop_beats_the_rest_reply() -> None:
    async def run() -> tuple[CallSession, list[dict[str, Any]]]:
        phone = Phone()
        ended: list[dict[str, Any]] = []

        async def control(name: str, call: ToolCall) -> None:
            # Redirecting the call ends its media stream: Twilio's `stop` reaches the worker, which
            # stops the session, while the REST request is still on its way back.
            asyncio.get_running_loop().create_task(session.stop("caller_hung_up"))
            await asyncio.sleep(10)

        session = make_session(phone, stt_lines=["a human please"], on_control=control,
                               llm=InstantLlm(tool_on={"human": "transfer_to_human"}),
                               transfer_number="+15005550009")
        session.emit = lambda kind, data: ended.append(data) if kind == "call_ended" else None  # type: ignore
        seq = await start(session, phone)
        seq = await stream(session, speech_frames("Can I talk to a human please?"), seq)
        await wait_for(lambda: session.state.ended and bool(ended), 15, session, seq)
        return session, ended

    session, ended = asyncio.run(run())
    assert session.state.disposition == "transferred"
    assert [e["disposition"] for e in ended] == ["transferred"]


class HungLlm:
    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        await asyncio.sleep(3600)
        yield TextDelta("")  # pragma: no cover


def test_a_hung_provider_gets_an_apology_instead_of_silence() -> None:
    session, phone = call_until_hung_up("Hello, is anybody there?", llm=HungLlm(), first_audio_deadline_s=1.0)
    assert phone.closed == "provider_failure"
    assert session.history[-1] == Message("assistant", CallConfig().apology_text)


def test_malformed_carrier_messages_are_dropped_and_the_call_goes_on() -> None:
    async def run() -> CallSession:
        phone = Phone()
        session = make_session(phone, stt_lines=["hello there"])
        seq = await start(session, phone)
        for bad in ("not json", '{"event":"media"}', '{"event":"media","media":{"payload":"%%%"}}', "[]"):
            session.on_media(bad)
        seq = await stream(session, noise_frames(0.2) + speech_frames("Hello there, good morning."), seq)
        await wait_for(lambda: bool(session.turns) and not session._agent_busy(), 8, session, seq)
        await session.stop()
        return session

    session = asyncio.run(run())
    assert session.state.bad_messages == 4
    assert session.turns and session.turns[0].caller_text == "hello there"


def test_transfer_to_a_human_goes_through_twilio_rest() -> None:
    from twilio_fake.server import FakeTwilioServer

    from cells.telephony.twilio_rest import TwilioRestSettings, TwilioRestTelephony

    with FakeTwilioServer() as srv:
        fake = srv.fake
        call_sid = fake.add_call()
        rest = TwilioRestTelephony(TwilioRestSettings(account_sid=fake.account_sid,
                                                      auth_token=fake.auth_token, api_base_url=srv.base_url))

        async def run() -> tuple[CallSession, Phone]:
            phone = Phone()
            session = make_session(phone, stt_lines=["a human please"],
                                   llm=InstantLlm(tool_on={"human": "transfer_to_human"}),
                                   transfer_number="+15005550009")

            async def control(name: str, call: ToolCall) -> None:
                assert name == "transfer_to_human"
                await rest.transfer(call_sid, session.config.transfer_number or "")

            session._on_control = control
            seq = await start(session, phone)
            seq = await stream(session, speech_frames("Can I talk to a human please?"), seq)
            await wait_for(lambda: phone.closed is not None, 10, session, seq)
            await session.stop()
            return session, phone

        session, phone = asyncio.run(run())
        updates = [r for r in fake.requests if r.method == "POST" and r.path.endswith(f"/{call_sid}.json")]
    assert phone.closed == "transferred"
    assert len(updates) == 1
    twiml = updates[0].value("Twiml") or ""
    assert "<Dial" in twiml and "+15005550009" in twiml
    asked = [m for m in session.history if m.tool_calls]
    assert asked and asked[0].content == "One moment please."
    assert asked[0].tool_calls[0].name == "transfer_to_human"


def test_asking_for_a_human_with_no_one_to_transfer_to_ends_politely() -> None:
    session, phone = call_until_hung_up("Can I talk to a human please?", stt_lines=["a human please"],
                                        llm=InstantLlm(tool_on={"human": "transfer_to_human"}))
    assert phone.closed == "transfer_unavailable"
    assert session.history[-1] == Message("assistant", CallConfig().no_transfer_text)


def test_the_maximum_call_length_ends_the_call_politely() -> None:
    session, phone = call_until_hung_up(None, max_call_s=2.0, reprompt_after_s=60.0)
    assert phone.closed == "max_duration"
    assert session.history[-1] == Message("assistant", CallConfig().max_call_text)


class BookingTools:
    """One mutating tool that records how it was called."""

    confirms_mutations = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], bool]] = []

    def specs(self) -> Sequence[ToolSpec]:
        return (ToolSpec("create_booking", "Book an appointment."),)

    def is_mutating(self, name: str) -> bool:
        return name == "create_booking"

    async def call(self, name: str, arguments: dict[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        self.calls.append((name, arguments, confirmed))
        return {"ok": True, "booking_id": "BK1"}


def test_a_model_cannot_book_without_the_callers_yes() -> None:
    tools = BookingTools()
    lines = ["book me in", "no", "book me in", "yes please"]

    async def run() -> CallSession:
        phone = Phone()
        session = make_session(phone, stt_lines=lines, llm=InstantLlm(tool_on={"book": "create_booking"}),
                               tools=tools)
        seq = await start(session, phone)
        spoken = ["Book me in for Tuesday.", "No.", "Book me in for Tuesday.", "Yes, please."]
        for i, said in enumerate(spoken):
            seq = await stream(session, speech_frames(said), seq)
            answered = lambda i=i: len(session.turns) > i and not session._agent_busy()  # noqa: E731
            seq = await wait_for(answered, 10, session, seq)
        await session.stop()
        return session

    session = asyncio.run(run())
    assert [t.caller_text for t in session.turns] == lines
    assert tools.calls == [("create_booking", {}, True)], "run once, and only after the yes"
    said = [m.content for m in session.history if m.role == "assistant"]
    assert sum(text.startswith("Just to confirm: create booking") for text in said) == 2
    results = [m.content for m in session.history if m.role == "tool"]
    assert any("caller_declined" in r for r in results) and any("BK1" in r for r in results)


def test_a_turns_events_place_it_on_the_calls_own_timeline() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def run() -> float:
        phone = Phone()
        session = make_session(phone)
        session._on_event = lambda kind, data: events.append((kind, data))
        seq = await start(session, phone)
        spoke_at = session.clock() - session.started_at
        seq = await stream(session, speech_frames("Can you hear me okay?"), seq)
        await wait_for(lambda: bool(session.turns) and not session._agent_busy(), 10, session, seq)
        await session.stop()
        return spoke_at

    spoke_at_s = asyncio.run(run())
    # (Line noise heard over the resume line, which the caller cannot cut, is an ignored transcript.)
    [said] = [d for k, d in events if k == "transcript" and not d.get("ignored")]
    [turn] = [d for k, d in events if k == "turn"]
    # The caller spoke for about a second, starting when the test began streaming speech. (The line has no
    # comma: a pause inside it may end the turn there and rejoin it, which test_turn_rejoin covers.)
    assert abs(said["start_ms"] - spoke_at_s * 1000) < 2000 and said["end_ms"] - said["start_ms"] > 500
    at = turn["at_ms"]
    assert at["speech_start"] == said["start_ms"] and at["speech_end"] == said["end_ms"]
    assert at["speech_end"] <= at["turn_end"] <= at["first_frame_sent"] < 60_000, "milliseconds into the call"


def test_a_resumed_streams_turns_are_placed_after_what_went_before() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def run() -> None:
        phone = Phone()
        session = make_session(phone)
        session._on_event = lambda kind, data: events.append((kind, data))
        # The call has been going for 40 s on another worker when this stream takes over.
        history = [Message("assistant", "Hi."), Message("user", "hello"),
                   Message("assistant", "How can I help?")]
        await session.start("MZresumed", "CAtest", history=history, elapsed_s=40.0)
        seq = await wait_for(lambda: phone.count("mark") >= 1 and not session.playout.speaking, 5, session)
        seq = await stream(session, speech_frames("Can you hear me okay?"), seq)
        await wait_for(lambda: len(session.turns) >= 1 and not session._agent_busy(), 10, session, seq)
        await session.stop()

    asyncio.run(run())
    # Every caller turn (the recogniser may split the line in two) and every agent line is placed after
    # what went before on the other worker; ignored transcripts (over the resume line) carry no span.
    said = [d for k, d in events if k == "transcript" and not d.get("ignored")]
    agent = [d for k, d in events if k == "agent_said"]
    assert said and all(d["start_ms"] >= 40_000 for d in said), said
    assert agent and all(d["start_ms"] >= 40_000 for d in agent), agent


class BrokenTools(BookingTools):
    async def call(self, name: str, arguments: dict[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        raise FileNotFoundError("[Errno 2] No such file or directory: '/srv/autospeak/workers/eu-1/cal.tmp'")


def test_a_broken_tool_is_reported_without_its_internals() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def run() -> CallSession:
        phone = Phone()
        # A lookup (not a booking, which would first ask the caller to confirm) that breaks.
        session = make_session(phone, stt_lines=["book me in"], tools=BrokenTools(),
                               llm=InstantLlm(tool_on={"book": "check_availability"}))
        session._on_event = lambda kind, data: events.append((kind, data))
        seq = await start(session, phone)
        seq = await stream(session, speech_frames("Book me in for Tuesday."), seq)
        await wait_for(lambda: any(k == "tool_result" for k, _ in events), 10, session, seq)
        await session.stop()
        return session

    asyncio.run(run())
    [result] = [d["result"] for k, d in events if k == "tool_result"]
    assert result == {"ok": False, "error": "tool_failed"}
    assert "/srv/autospeak" not in repr(events), "call events reach the tenant: no server paths"


class DyingStt:
    """Recognises nothing and dies when the first turn ends (a dropped vendor socket)."""

    sample_rate = 16000

    async def stream(self, frames: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for frame in frames:
            if not hasattr(frame, "__len__"):
                raise ProviderUnavailable("socket closed", provider="dying")
        return
        yield  # pragma: no cover


def test_a_dead_recogniser_gets_an_apology_instead_of_dead_air() -> None:
    session, phone = call_until_hung_up("Can you hear me okay?", stt=DyingStt())
    assert phone.closed == "provider_failure"
    assert session.history[-1] == Message("assistant", CallConfig().apology_text)


def test_a_request_said_over_the_greeting_is_answered_once_the_greeting_is_over() -> None:
    """The disclosure cannot be cut (compliance), but a caller who starts with their request while it
    plays is answered after it, not ignored."""
    async def run() -> tuple[CallSession, Phone, list[tuple[str, dict[str, Any]]]]:
        phone = Phone()
        events: list[tuple[str, dict[str, Any]]] = []
        cfg = CallConfig(disclosure=GREETING)
        session = CallSession(cfg, stt=InstantStt(["I would like to book a cleaning"]), llm=InstantLlm(),
                              tts=InstantTts(), tools=NoTools(), chunker_factory=SentenceChunker,
                              transport=phone, on_event=lambda kind, data: events.append((kind, data)))
        phone.session = session
        await session.start("MZtest", "CAtest")
        seq = await stream(session, speech_frames("I would like to book a cleaning please."), 0)
        assert session._agent_busy(), "the caller spoke while the greeting was still playing"
        await wait_for(lambda: session.turns and not session._agent_busy(), 60, session, seq)
        await session.stop()
        return session, phone, events

    session, _, events = asyncio.run(run())
    assert [t.caller_text for t in session.turns] == ["I would like to book a cleaning"]
    said = [(m.role, m.content) for m in session.history]
    assert said[0] == ("assistant", GREETING), "the whole disclosure came first"
    assert said[1:] == [("user", "I would like to book a cleaning"),
                        ("assistant", "Sure. I can help with that right away.")]
    assert any(k == "transcript" and d.get("reason") == "agent not interruptible" for k, d in events)
