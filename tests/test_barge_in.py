"""Barge-in discipline: backchannels and short noises over the agent do not cut it off; words with
content, or speech that goes on, do (the rule, then a call with real-time audio)."""

from __future__ import annotations

import asyncio

from call_harness import Phone, speech_frames, stream, wait_for
from test_call_session import LONG_REPLY, make_session, start

from cells.call.barge_in import content_words, interrupts, is_backchannel
from cells.call.session import CallSession
from loadtest.calls.instant import InstantLlm


def test_backchannels_are_told_from_words_with_content() -> None:
    for text in ("", "uh-huh", "Mm-hmm.", "yeah yeah", "okay", "right, sure", "Yes."):
        assert is_backchannel(text), text
    for text in ("stop", "no", "wait", "yes but", "what time", "okay so the tuesday"):
        assert not is_backchannel(text), text
    assert content_words("okay so the tuesday") == 3


def test_the_rule_needs_words_or_long_speech() -> None:
    rule = {"min_ms": 180.0, "sure_ms": 600.0, "min_words": 2}
    assert not interrupts(150.0, "stop it", **rule), "too short to be speech at all"
    assert interrupts(200.0, "stop it", **rule)
    assert not interrupts(400.0, "stop", **rule), "one word may be a recogniser's guess at a cough"
    assert interrupts(400.0, "stop", **{**rule, "min_words": 1})
    assert not interrupts(400.0, "uh huh yeah", **rule)
    assert not interrupts(400.0, "", **rule), "no words yet: wait for them or for sure_ms"
    assert interrupts(600.0, "", **rule)
    assert interrupts(650.0, "mm-hmm", **rule)


def test_a_backchannel_over_the_agent_does_not_cut_it_off_and_a_real_interruption_does() -> None:
    async def run() -> tuple[CallSession, Phone, int, bool]:
        phone = Phone()
        session = make_session(phone, stt_lines=["tell me everything", "yeah", "stop I have a question"],
                               llm=InstantLlm(LONG_REPLY))
        seq = await start(session, phone)
        seq = await stream(session, speech_frames("Tell me everything about your clinic."), seq)
        seq = await wait_for(lambda: session.playout.stats.frames_sent > 100, 10, session, seq)
        seq = await stream(session, speech_frames("yeah"), seq)
        seq = await wait_for(lambda: False, 1.5, session, seq)  # past the end of that turn
        clears_after_yeah = phone.count("clear")
        still_talking = session.playout.speaking
        seq = await stream(session, speech_frames("Stop, stop, I have a question."), seq)
        await wait_for(lambda: len(session.turns) >= 2, 8, session, seq)
        await session.stop()
        return session, phone, clears_after_yeah, still_talking

    session, phone, clears_after_yeah, still_talking = asyncio.run(run())
    assert clears_after_yeah == 0, "a backchannel cut the agent off"
    assert still_talking
    assert phone.count("clear") >= 1
    assert [t.caller_text for t in session.turns] == ["tell me everything", "stop I have a question"]
    assert session.turns[0].interrupted


def test_short_words_with_content_over_the_agent_take_the_turn_at_their_transcript() -> None:
    """No partials (this recogniser gives only finals) and under sure_ms: the final decides."""

    async def run() -> tuple[CallSession, Phone]:
        phone = Phone()
        session = make_session(phone, stt_lines=["tell me everything", "stop it"],
                               llm=InstantLlm(LONG_REPLY), barge_in_sure_ms=5000.0)  # only words cut
        seq = await start(session, phone)
        seq = await stream(session, speech_frames("Tell me everything about your clinic."), seq)
        seq = await wait_for(lambda: session.playout.stats.frames_sent > 100, 10, session, seq)
        seq = await stream(session, speech_frames("stop it"), seq)
        await wait_for(lambda: len(session.turns) >= 2, 8, session, seq)
        await session.stop()
        return session, phone

    session, phone = asyncio.run(run())
    assert phone.count("clear") >= 1
    assert [t.caller_text for t in session.turns] == ["tell me everything", "stop it"]
    assert session.turns[0].interrupted
