"""Light simulated phone calls for load: many callers on one asyncio loop, each speaking as Twilio's side
of a call does (media every 20 ms, real-time playback with mark echo) and timing what it hears.

Shared by `autospeak bench calls` (against one worker process) and `autospeak loadtest calls` (through a
cell's control plane). The callers share one HTTP client for their webhooks, and their media WebSockets
negotiate no permessage-deflate, as Twilio's do not: the load lands on the worker, not on the phones.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosed

from cells.simulator.caller import CallerLine, line_audio
from cells.simulator.scripts import SCRIPTS
from cells.simulator.twilio_peer import FRAME_BYTES, FRAME_S, Playback, TwilioPeer
from cells.speech.espeak import EspeakEngine

CALLER_VOICE = "en-us+m3"
AGENT_DONE_GAP_S = 0.5  # no agent audio this long (and nothing queued at the phone): the caller may speak
NO_REPLY_S = 6.0  # below the agent's 7 s reprompt, so a caller who got no answer speaks again first
# The booking script's spoken lines (keypad lines need no audio) without its goodbye: the agent would
# end the call, and a level would lose calls.
LOAD_LINES = [line.text for line in SCRIPTS["booking"][:-1] if line.text and not line.dtmf]
DEMO_NUMBER = "+15005550001"


def _frames(ulaw: bytes) -> list[bytes]:
    return [ulaw[i:i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]


def caller_audio(lines: Sequence[str]) -> list[list[bytes]]:
    """Each line spoken by eSpeak NG as 20 ms mu-law frames, synthesised once for all calls."""
    engine = EspeakEngine()
    return [_frames(line_audio(CallerLine(text), engine, CALLER_VOICE)) for text in lines]


def noise_bank(frames: int = 250, seed: int = 3) -> list[bytes]:
    """Line noise while the caller listens (as a real line has), precomputed and reused in turn."""
    import media_core

    rng = np.random.default_rng(seed)
    pcm = rng.normal(0, 25, frames * FRAME_BYTES).astype(np.int16)
    return _frames(media_core.ulaw_encode(pcm))



@dataclass
class SimCall:
    call_sid: str = ""
    started: float = 0.0
    ended: float = 0.0
    speech: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each caller line
    arrivals: list[float] = field(default_factory=list)  # agent media messages received
    tick_lag_ms: list[float] = field(default_factory=list)  # how late the caller's 20 ms timer fired
    error: str = ""
    agent_hung_up: bool = False  # the agent ended the call (goodbye, failed transfer): not a failure

    def first_audio_after(self, t: float) -> float | None:
        i = bisect.bisect_right(self.arrivals, t)
        return self.arrivals[i] if i < len(self.arrivals) else None

    def frame_lateness_ms(self) -> list[float]:
        """Per agent frame: how much longer than 20 ms the phone waited for it after the previous one,
        within each reply (the audio between two caller lines); the first frame of a reply is its
        latency, not jitter."""
        bounds = [self.started, *(t for s, e in self.speech for t in (s, e)), float("inf")]
        out: list[float] = []
        for lo, hi in zip(bounds[0::2], bounds[1::2], strict=True):
            a = self.arrivals
            window = a[bisect.bisect_right(a, lo):bisect.bisect_left(a, hi)]
            gaps = np.diff(np.asarray(window)) * 1000 - FRAME_S * 1000
            out.extend(np.maximum(gaps, 0.0).tolist())
        return out

    def voice_to_voice_ms(self) -> list[float]:
        """Per caller line: from its last frame sent to the first agent frame received after it, as the
        caller hears it (a reply that came only after the caller spoke again is not counted)."""
        out = []
        for i, (_, end) in enumerate(self.speech):
            heard = self.first_audio_after(end)
            nxt = self.speech[i + 1][0] if i + 1 < len(self.speech) else self.ended or float("inf")
            if heard is not None and heard < nxt:
                out.append((heard - end) * 1000)
        return out


def _agent_done(pb: Playback, since: float, now: float) -> bool:
    if pb.audio_frames_at and pb.audio_frames_at[-1] > since:
        return not pb.busy and now - pb.audio_frames_at[-1] >= AGENT_DONE_GAP_S
    return not pb.busy and now - since >= NO_REPLY_S


async def simulated_call(url: str, token: str, lines: list[list[bytes]], noise: list[bytes],
                         duration_s: float, delay_s: float = 0.0, *, client: httpx.AsyncClient | None,
                         to_number: str = DEMO_NUMBER, on_up: Callable[[], None] | None = None,
                         compression: str | None = None) -> SimCall:
    """One caller: answers the agent line after line for `duration_s`, as Twilio's side of the call
    (media every 20 ms, real-time playback with mark echo), then hangs up. `client` is shared by all
    the calls (None: a client per request, as the simulator did before); `compression="deflate"` asks
    for permessage-deflate as it did before (the old phones, for comparison); `on_up` is told when the
    media stream is open."""
    await asyncio.sleep(delay_s)
    peer = TwilioPeer(url, token, to_number=to_number, client=client, compression=compression)
    call = SimCall(peer.call_sid)
    try:
        await peer.open_stream(await peer.ring())
    except Exception as exc:  # a refused call is a result at this load, not a crash of the bench
        call.error = f"{type(exc).__name__}: {exc}"
        return call
    if on_up is not None:
        on_up()
    receiver = asyncio.create_task(peer.receive_loop())
    pb = peer.playback
    t0 = call.started = time.monotonic()
    since, tick, line_no, pos = t0, 0, 0, 0
    speaking: list[bytes] | None = None
    start = 0.0
    try:
        while not peer.closed_by_agent.is_set():
            now = time.monotonic()
            call.tick_lag_ms.append((now - (t0 + tick * FRAME_S)) * 1000)
            if now - t0 >= duration_s:
                break
            if speaking is None and _agent_done(pb, since, now):
                speaking, pos, start = lines[line_no % len(lines)], 0, now
                line_no += 1
            if speaking is not None:
                frame = speaking[pos]
                pos += 1
                if pos == len(speaking):
                    since = time.monotonic()
                    call.speech.append((start, since))
                    speaking = None
            else:
                frame = noise[tick % len(noise)]
            await peer.send_frame(frame)
            await peer.play_tick()
            tick += 1
            await asyncio.sleep(max(0.0, t0 + tick * FRAME_S - time.monotonic()))
    except ConnectionClosed:
        call.agent_hung_up = True  # the socket closed between two of our frames
    except Exception as exc:
        call.error = f"{type(exc).__name__}: {exc}"
    finally:
        call.agent_hung_up = call.agent_hung_up or peer.closed_by_agent.is_set()
        if not peer.closed_by_agent.is_set():
            with contextlib.suppress(Exception):
                await peer.hang_up()
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    call.arrivals = list(pb.arrivals)
    call.ended = time.monotonic()
    return call
