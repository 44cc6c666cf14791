"""The worker's `--profile instant`: the zero-latency providers of `loadtest.calls.instant` behind the
provider registry, so that a real worker process (webhook, WebSocket, call loop, media path) can be
load-tested with no STT, dialogue or TTS cost. Never used for real calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from cells.providers import registry
from cells.providers.base import Frame, Transcript
from cells.worker.agent import ReceptionAgent
from loadtest.calls.instant import InstantLlm, InstantStt, InstantTts

# eSpeak NG's rate, so that the instant profile runs the same 22.05 kHz -> 8 kHz outbound resampler as
# the embedded stack and the two profiles differ only in provider cost.
TTS_RATE = 22050


class SharedInstantStt:
    """InstantStt for a worker, whose STT provider is shared by all its calls: InstantStt consumes one
    script queue, so each stream gets its own copy and every caller turn is heard as `line`."""

    sample_rate = InstantStt.sample_rate

    def __init__(self, line: str = "I would like to book a cleaning", max_turns: int = 10_000) -> None:
        self.line = line
        self.max_turns = max_turns

    def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        return InstantStt([self.line] * self.max_turns).stream(frames)


def register() -> None:
    registry.register("stt", "instant", SharedInstantStt)
    registry.register("llm", "instant", InstantLlm)
    registry.register("tts", "instant", InstantTts)


def provider_config() -> registry.ProviderConfig:
    register()
    return registry.ProviderConfig(defaults={
        "stt": {"provider": "instant", "options": {}},
        "llm": {"provider": "instant", "options": {}},
        "tts": {"provider": "instant", "options": {"sample_rate": TTS_RATE}},
    })


def instant_agent(data_dir: Path | None, transfer_number: str | None = None) -> ReceptionAgent:
    """The demo agent (same disclosure, tools and call configuration) with instant providers."""
    return ReceptionAgent(data_dir=data_dir, providers=provider_config(), transfer_number=transfer_number)
