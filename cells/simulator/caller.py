"""A scripted caller driving a call through the Twilio peer in real time.

Every 20 ms the caller sends one frame (its speech, or line noise while it listens) and the
phone plays one frame of whatever the agent sent. The caller waits for the agent to finish
before speaking its next line, unless the line is a barge-in, which starts a set time after
the agent's audio begins. When the media stream drops, the phone follows the `<Connect action>` as
Twilio does; on a new stream the caller starts the line it was speaking again once the agent has
spoken. Latency is measured as a caller would feel it: from the last frame
of the caller's speech to the first frame of agent audio that arrives after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from websockets.exceptions import ConnectionClosed

import media_core
from cells.simulator.twilio_peer import FRAME_BYTES, FRAME_S, TwilioPeer
from cells.speech import espeak_fresh
from cells.speech.espeak import EspeakEngine

AGENT_DONE_GAP_S = 0.7  # no agent audio for this long after it spoke = its turn is over
NO_REPLY_S = 8.0  # a caller who hears nothing this long after speaking says the next line anyway
NOISE_RMS = 25.0  # line noise while the caller is silent (~ -62 dBFS)


@dataclass
class CallerLine:
    text: str = ""
    wav: Path | None = None
    barge_in_after_ms: float | None = None  # speak over the agent this long after its audio starts
    dtmf: str = ""  # keypad digits instead of speech
    pause_ms: float = 300.0  # thinking time after the agent finishes
    then: str = ""  # more of the same turn, spoken after a pause of gap_ms ("five five five, ... nine eight")
    gap_ms: float = 0.0


@dataclass
class TurnResult:
    line: str
    speech_start: float = 0.0
    speech_end: float = 0.0
    first_reply_audio: float | None = None
    barge_in: bool = False

    @property
    def latency_ms(self) -> float | None:
        if self.first_reply_audio is None:
            return None
        return round((self.first_reply_audio - self.speech_end) * 1000, 1)


@dataclass
class CallResult:
    turns: list[TurnResult] = field(default_factory=list)
    agent_audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    clears: int = 0
    marks_played: list[str] = field(default_factory=list)
    marks_cleared: list[str] = field(default_factory=list)
    ended_by_agent: bool = False
    duration_s: float = 0.0
    streams: int = 1  # media streams the call used (more than one after a resume)


def line_audio(line: CallerLine, engine: object | None, voice: str, rate_wpm: int = 170) -> bytes:
    """The line as 8 kHz mu-law, trimmed to its speech so that 'end of speech' is exact."""
    audio = _speech(line.wav, line.text, engine, voice, rate_wpm)
    if line.then:  # the pause inside the turn is near-silence, as on a quiet line
        gap = np.zeros(int(line.gap_ms / 1000 * 8000) // FRAME_BYTES * FRAME_BYTES, np.int16)
        audio += media_core.ulaw_encode(gap) + _speech(None, line.then, engine, voice, rate_wpm)
    return audio


def _speech(wav: Path | None, text: str, engine: object | None, voice: str, rate_wpm: int) -> bytes:
    if wav is not None:
        with wave.open(str(wav), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ValueError(f"{wav}: need mono 16-bit PCM WAV")
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    elif isinstance(engine, EspeakEngine):  # the same samples every run, whatever was said before
        pcm, rate = espeak_fresh.synthesize(text, voice=voice, rate_wpm=rate_wpm), engine.sample_rate
    else:
        pcm = engine.synthesize(text, voice=voice, rate_wpm=rate_wpm)  # type: ignore[union-attr]
        rate = engine.sample_rate  # type: ignore[union-attr]
    r = media_core.Resampler(rate, 8000)
    pcm8 = np.concatenate([r.process(pcm), r.flush()])
    loud = np.flatnonzero(np.abs(pcm8.astype(np.int32)) > max(200, np.abs(pcm8).max() // 50))
    if len(loud):
        pcm8 = pcm8[max(0, loud[0] - 80): loud[-1] + 80]
    pcm8 = np.concatenate([pcm8, np.zeros((-len(pcm8)) % FRAME_BYTES, np.int16)])
    return media_core.ulaw_encode(pcm8)


class ScriptedCaller:
    def __init__(self, peer: TwilioPeer, lines: list[CallerLine], *, engine: object | None = None,
                 voice: str = "en-us+f2", rate_wpm: int = 170, max_call_s: float = 120.0, seed: int = 1,
                 follow_action: bool = True, max_streams: int = 4) -> None:
        self.peer = peer
        self.follow_action = follow_action
        self.max_streams = max_streams
        self.lines = lines
        self.audio = [line_audio(line, engine, voice, rate_wpm) if not line.dtmf else b"" for line in lines]
        self.max_call_s = max_call_s
        self.rng = np.random.default_rng(seed)
        self.result = CallResult()

    def _noise_frame(self) -> bytes:
        return media_core.ulaw_encode(self.rng.normal(0, NOISE_RMS, FRAME_BYTES).astype(np.int16))

    def _agent_quiet_since(self) -> float:
        pb = self.peer.playback
        last = pb.audio_frames_at[-1] if pb.audio_frames_at else 0.0
        return 0.0 if pb.busy else time.monotonic() - last

    async def _next_stream(self, receiver: asyncio.Task[None]) -> asyncio.Task[None] | None:
        """The stream closed: follow `<Connect action>`; the new stream's receiver, or None (call over)."""
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        if not self.follow_action or self.result.streams >= self.max_streams:
            return None
        try:
            target = await self.peer.follow_action()
            if target is None:
                return None
            await self.peer.open_stream(target)
        except Exception as exc:  # the webhook or the new worker failed: the call drops, as on a phone
            self.peer.close_reason = f"resume failed: {exc}"
            return None
        self.result.streams += 1
        return asyncio.create_task(self.peer.receive_loop())

    async def run(self, hang_up_after_s: float = 1.0) -> CallResult:
        receiver = asyncio.create_task(self.peer.receive_loop())
        started = time.monotonic()
        paced_from, tick = started, 0
        line_idx, pos = 0, -1  # pos < 0: waiting to speak line_idx
        turn: TurnResult | None = None
        agent_started_for_line: float | None = None
        done_at: float | None = None
        line_since = started
        dropped = False
        try:
            while True:
                if dropped or self.peer.closed_by_agent.is_set():
                    dropped = False
                    nxt = await self._next_stream(receiver)
                    if nxt is None:
                        break
                    receiver = nxt
                    paced_from, tick = time.monotonic(), 0
                    line_since, done_at, agent_started_for_line = time.monotonic(), None, None
                    if pos >= 0:  # cut off mid-line: say it again once the agent has spoken
                        pos = -1
                        if self.result.turns:
                            self.result.turns.pop()
                        turn = None
                now = time.monotonic()
                if now - started > self.max_call_s:
                    break
                pb = self.peer.playback
                if turn is not None and turn.speech_end and turn.first_reply_audio is None:
                    late = [t for t in pb.arrivals if t > turn.speech_end]
                    turn.first_reply_audio = late[0] if late else None
                frame = b""
                if line_idx < len(self.lines):
                    line = self.lines[line_idx]
                    if pos < 0:
                        if line.barge_in_after_ms is not None:
                            fresh = pb.audio_frames_at and pb.audio_frames_at[-1] > line_since
                            if fresh and agent_started_for_line is None:
                                agent_started_for_line = pb.audio_frames_at[-1]
                            ready = (agent_started_for_line is not None
                                     and now - agent_started_for_line >= line.barge_in_after_ms / 1000)
                        else:
                            replied = bool(pb.audio_frames_at) and pb.audio_frames_at[-1] > line_since
                            ready = (replied and self._agent_quiet_since() >= max(
                                AGENT_DONE_GAP_S, line.pause_ms / 1000)) or (
                                line_idx > 0 and not pb.busy and now - line_since >= NO_REPLY_S)
                        if ready:
                            pos = 0
                            said = " ... ".join(filter(None, (line.text, line.then))) or line.dtmf
                            turn = TurnResult(said, speech_start=now,
                                              barge_in=line.barge_in_after_ms is not None)
                            self.result.turns.append(turn)
                            for digit in line.dtmf:
                                await self.peer.send_dtmf(digit)
                    if pos >= 0:
                        audio = self.audio[line_idx]
                        frame = audio[pos:pos + FRAME_BYTES]
                        pos += FRAME_BYTES
                        if pos >= len(audio):
                            assert turn is not None
                            turn.speech_end = time.monotonic()
                            line_idx, pos, agent_started_for_line = line_idx + 1, -1, None
                            line_since = time.monotonic()
                elif done_at is None and (
                        (pb.audio_frames_at and pb.audio_frames_at[-1] > line_since
                         and self._agent_quiet_since() >= AGENT_DONE_GAP_S)
                        or (not pb.busy and now - line_since >= NO_REPLY_S)):
                    done_at = now
                elif done_at is not None and now - done_at >= hang_up_after_s:
                    break
                try:
                    await self.peer.send_frame(frame or self._noise_frame())
                    await self.peer.play_tick()
                except ConnectionClosed:  # the stream closed between two frames
                    dropped = True
                tick += 1
                await asyncio.sleep(max(0.0, paced_from + tick * FRAME_S - time.monotonic()))
        finally:
            self.result.ended_by_agent = self.peer.closed_by_agent.is_set() or receiver.done()
            if not self.result.ended_by_agent:
                with contextlib.suppress(ConnectionClosed):
                    await self.peer.hang_up()
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
        pb = self.peer.playback
        self.result.agent_audio = self.peer.agent_audio()
        self.result.clears = pb.clears
        self.result.marks_played, self.result.marks_cleared = pb.marks_played, pb.marks_cleared
        self.result.duration_s = time.monotonic() - started
        return self.result
