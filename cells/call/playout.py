"""Paced playout of the agent's audio, with marks, and what the caller actually heard.

Frames go out on a 20 ms schedule a few frames ahead of real time: enough lead to absorb event
loop hiccups, little enough that a barge-in `clear` discards almost nothing that was already
heard. After each spoken segment (a sentence) a `mark` follows; the carrier echoes it when
playback reaches it, which confirms the segment was heard in full. When the caller barges in,
the partly played segment is trimmed by the share of its frames that had time to play.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

FRAME_S = 0.020
# A mark the carrier has not echoed this long after the audio before it should have finished playing
# counts as heard: Twilio echoes every mark, but a lost echo must not leave the agent mute for good.
MARK_GRACE_S = 2.0


@dataclass
class Segment:
    name: str
    text: str
    frames: int = 0
    done: bool = False  # all its frames are queued and its mark follows
    heard: bool = False  # its mark came back


@dataclass
class PlayoutStats:
    frames_sent: int = 0
    # Lateness of each frame against its schedule (s); the pacing quality a caller would hear.
    lateness: list[float] = field(default_factory=list)


class PlayoutSink(Protocol):
    """The outbound half of a call's transport (cells.call.transport.Transport)."""

    async def send_audio(self, frame: Any) -> None: ...
    async def send_mark(self, name: str) -> None: ...


class Playout:
    def __init__(
        self,
        sink: PlayoutSink,
        *,
        lead_frames: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sink = sink
        self._lead = lead_frames * FRAME_S
        self._clock = clock
        self._sleep = sleep  # injected with the clock, so tests can run the pacing in simulated time
        self._queue: deque[tuple[str, Any]] = deque()  # ("media", carrier frame) | ("mark", name)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._segments: dict[str, Segment] = {}
        self._order: list[str] = []
        self._next_due: float | None = None
        self._first_sent_at: float | None = None
        # Playback as the far end does it: frames play back to back, a frame sent after the previous
        # one finished starts a new run. (start time, index in the turn of its first frame) per run.
        self._runs: list[tuple[float, int]] = []
        self._play_until = 0.0
        self._mark_due: dict[str, float] = {}  # sent marks not echoed yet -> when they are overdue
        self._seq = 0
        self._turn_sent = 0
        self.stats = PlayoutStats()
        self.on_first_frame: Callable[[float], None] | None = None

    # -- producer side -------------------------------------------------------------------------
    def begin_segment(self, text: str) -> str:
        self._seq += 1
        name = f"seg-{self._seq}"
        self._segments[name] = Segment(name, text)
        self._order.append(name)
        return name

    def add_frames(self, segment: str, messages: list[Any]) -> None:
        seg = self._segments.get(segment)
        if seg is None or not messages:
            return  # cleared meanwhile
        seg.frames += len(messages)
        self._queue.extend(("media", m) for m in messages)
        self._kick()

    def end_segment(self, segment: str) -> None:
        seg = self._segments.get(segment)
        if seg is None:
            return
        seg.done = True
        self._queue.append(("mark", segment))
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    # -- carrier feedback ----------------------------------------------------------------------
    def on_mark(self, name: str) -> None:
        seg = self._segments.get(name)
        if seg is not None:
            seg.heard = True
        self._mark_due.pop(name, None)
        if self._all_heard():
            self._idle.set()

    def _all_heard(self) -> bool:
        return not self._queue and all(s.heard for s in self._segments.values())

    @property
    def speaking(self) -> bool:
        """Audio is queued or still playing at the caller's end."""
        return not self._idle.is_set()

    async def wait_heard(self) -> None:
        await self._idle.wait()

    def overdue_marks(self, now: float) -> list[str]:
        """Sent marks whose echo is over MARK_GRACE_S late (the caller of `on_mark` decides what follows)."""
        return [name for name, due in self._mark_due.items() if due <= now]

    # -- barge-in ------------------------------------------------------------------------------
    def clear(self) -> str:
        """Drops everything not yet sent; returns the text the caller heard of the current turn."""
        heard = self.heard_text()
        self._queue.clear()
        self._segments.clear()
        self._order.clear()
        self._next_due = None
        self._forget_turn()
        self._idle.set()
        return heard

    def heard_text(self) -> str:
        """The words of this turn the caller has heard: whole segments whose mark came back, and of the
        segment playing now the share of its frames already played (sent is not played: frames go out
        ahead of playback, and a pause in TTS leaves the line silent)."""
        if self._first_sent_at is None:
            return " ".join(self._segments[n].text for n in self._order if self._segments[n].heard)
        played = self._frames_played(self._clock())
        words: list[str] = []
        for name in self._order:
            seg = self._segments[name]
            if seg.heard or played >= seg.frames > 0:
                words.extend(seg.text.split())
                played -= seg.frames
                continue
            if played > 0 and seg.frames:
                part = seg.text.split()
                words.extend(part[: int(len(part) * played / seg.frames)])
            break
        return " ".join(words)

    def _frames_played(self, now: float) -> int:
        """Frames of this turn whose playback had ended by `now`."""
        for k in range(len(self._runs) - 1, -1, -1):
            start, first = self._runs[k]
            if start > now:
                continue
            in_run = (self._runs[k + 1][1] if k + 1 < len(self._runs) else self._turn_sent) - first
            return first + min(in_run, int((now - start) / FRAME_S + 1e-9))
        return 0

    def reset_turn(self) -> None:
        """Forget heard segments once a turn has fully played (keeps memory flat on long calls)."""
        if self._all_heard():
            self._segments.clear()
            self._order.clear()
            self._forget_turn()

    def _forget_turn(self) -> None:
        self._mark_due.clear()
        self._first_sent_at = None
        self._turn_sent = 0
        self._runs.clear()
        self._play_until = 0.0

    # -- the pacing loop -----------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                if self._all_heard():
                    self._idle.set()
                self._next_due = None
                await self._wake.wait()
                continue
            kind, payload = self._queue[0]
            if kind == "mark":
                self._queue.popleft()
                self._mark_due[payload] = max(self._play_until, self._clock()) + MARK_GRACE_S
                await self._sink.send_mark(payload)
                continue
            now = self._clock()
            if self._next_due is None:
                self._next_due = now
            wait = self._next_due - self._lead - now
            if wait > 0:
                await self._sleep(wait)
                continue  # the queue may have been cleared while sleeping
            self._queue.popleft()
            sent_at = self._clock()
            if self._first_sent_at is None:
                self._first_sent_at = sent_at
                if self.on_first_frame is not None:
                    self.on_first_frame(sent_at)
            self.stats.lateness.append(max(0.0, sent_at - (self._next_due - self._lead)))
            self.stats.frames_sent += 1
            if sent_at > self._play_until or not self._runs:
                self._runs.append((sent_at, self._turn_sent))  # the line was silent: a new run starts
                self._play_until = sent_at
            self._play_until += FRAME_S
            self._turn_sent += 1
            self._next_due += FRAME_S
            await self._sink.send_audio(payload)
