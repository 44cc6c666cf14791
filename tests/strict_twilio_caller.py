"""A scripted caller on the strict Twilio peer (tests/strict_twilio_peer.py): it waits for the agent to
finish speaking (its audio played and the line quiet), then says its next line in real time, or keys it
in as DTMF. Speech is eSpeak NG at 8 kHz; the peer's line is digital silence between lines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from cells.speech import espeak_fresh
from cells.speech.espeak import EspeakEngine
from tests.strict_twilio_peer import StrictTwilioCall, to_8k

AGENT_DONE_S = 1.2  # the agent's turn is over after this long without its audio
NO_REPLY_S = 10.0  # a caller who hears nothing this long after speaking goes on anyway


@dataclass(frozen=True)
class Line:
    text: str = ""
    dtmf: str = ""


@dataclass
class Outcome:
    lines_said: int = 0
    ended_by_agent: bool = False
    streams: int = 1
    hangup_twiml: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def speech(engine: EspeakEngine, text: str, voice: str = "en-us", rate_wpm: int = 160) -> np.ndarray:
    # The same samples every run, whatever this process said before (cells/speech/espeak_fresh.py).
    pcm = to_8k(espeak_fresh.synthesize(text, voice=voice, rate_wpm=rate_wpm), engine.sample_rate)
    return np.concatenate([np.zeros(1600, np.int16), pcm, np.zeros(800, np.int16)])


async def run_script(call: StrictTwilioCall, lines: list[Line], *, max_s: float = 150.0,
                     engine: EspeakEngine | None = None, voice: str = "en-us",
                     rate_wpm: int = 160) -> Outcome:
    """The whole call after `ring`: open the stream, say each line when the agent is done, then wait for
    the agent to end the call (following `<Connect action>` as Twilio does) or hang up."""
    engine = engine or EspeakEngine()
    audio = [speech(engine, line.text, voice, rate_wpm) if line.text else None for line in lines]
    out = Outcome()
    started = time.monotonic()
    await call.open_stream()
    phone = call.phone
    for line, pcm in zip(lines, audio, strict=True):
        def agent_done(heard_before: int = len(phone.audio_played_at),
                       since: float = time.monotonic()) -> bool:
            replied = len(phone.audio_played_at) > heard_before and phone.quiet_for() >= AGENT_DONE_S
            silent = out.lines_said > 0 and not phone.has_audio() and time.monotonic() - since >= NO_REPLY_S
            return replied or silent

        alive = await call.pump(max(1.0, max_s - (time.monotonic() - started)), until=agent_done)
        if not alive:
            break
        if line.dtmf:
            for digit in line.dtmf:
                await call.send_dtmf(digit)
                await call.pump(0.2)
        else:
            assert pcm is not None
            call.say(pcm)
            await call.pump(30, until=lambda: not call.speaking)
        out.lines_said += 1
    # The last line said: the agent answers, then ends the call by closing the stream.
    ended = not await call.pump(max(1.0, max_s - (time.monotonic() - started)), until=lambda: False)
    out.ended_by_agent = ended
    if ended:
        twiml = await call.follow_action()
        out.hangup_twiml = call.action_answers[-1:]
        if twiml is not None:  # the application asked for another stream on this call
            out.streams += 1
    await call.close() if ended else await call.stop()
    out.duration_s = time.monotonic() - started
    return out
