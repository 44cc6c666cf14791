"""Zero-latency providers: they answer at once, so a benchmark that uses them measures only
the call loop's own overhead (turn-taking, chunking, resampling, pacing). They are never
configured for real calls; the embedded and cloud adapters live in cells.providers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from cells.providers.base import (
    AudioChunk,
    EndOfTurn,
    Frame,
    Message,
    TextDelta,
    ToolCall,
    ToolSpec,
    Transcript,
)


class InstantStt:
    """Emits the next scripted line as the final transcript at every end of turn."""

    sample_rate = 16000

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = deque(lines)

    async def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        heard_ms = 0.0
        async for frame in frames:
            if isinstance(frame, EndOfTurn):
                text = self.lines.popleft() if self.lines else ""
                yield Transcript(text, True, 0.0, heard_ms)
            else:
                heard_ms += 1000.0 * len(frame) / self.sample_rate


class InstantLlm:
    """Answers every user turn with a fixed two-sentence reply (tool calls when asked to)."""

    confirms_mutations = False  # a stand-in for a model: the call loop's gate confirms its bookings

    def __init__(self, reply: str = "Sure. I can help with that right away.",
                 tool_on: dict[str, str] | None = None) -> None:
        self.reply = reply
        self.tool_on = tool_on or {}  # a word in the caller's turn -> the tool to call

    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        last = messages[-1]
        for word, tool in self.tool_on.items():
            if last.role == "user" and word in last.content:
                yield TextDelta("One moment please.")
                yield ToolCall("call-1", tool, {})
                return
        for word in self.reply.split(" "):
            yield TextDelta(word + " ")


class InstantTts:
    """A tone as long as the text would take to say (60 ms a character), in 100 ms chunks."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate

    async def synthesize(self, text: str, voice_id: str | None = None) -> AsyncIterator[AudioChunk]:
        n = int(self.sample_rate * 0.06 * len(text))
        t = np.arange(n) / self.sample_rate
        pcm = (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
        step = self.sample_rate // 10
        for i in range(0, n, step):
            yield AudioChunk(pcm[i:i + step], self.sample_rate)


class NoTools:
    confirms_mutations = False

    def specs(self) -> Sequence[ToolSpec]:
        return ()

    def is_mutating(self, name: str) -> bool:
        return False

    async def call(self, name: str, arguments: dict[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        raise KeyError(name)
