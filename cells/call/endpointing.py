"""When has the caller finished their turn?

The VAD says when speech stopped; how long to wait after that depends on what was said. A
partial transcript that ends like a finished thought ("at nine thirty") needs only a short
silence; one that trails off ("at nine", "and um") gets a longer one, so that callers who pause
mid-sentence are not cut off. All times are stream time (ms of caller audio received), so the
decision follows the audio clock, not the event loop's scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass

# Words after which an English speaker is almost never done.
TRAILING_WORDS = frozenset(
    "a an the and or but so because if at on in to for of with from by about around my your our "
    "is are was were be i i'm it's that's um uh er erm hmm like maybe just".split()
)


@dataclass(frozen=True)
class EndpointingConfig:
    """Silence (ms) after the end of speech before the turn is taken as finished."""

    # The VAD stamps the end of speech ~100 ms after the last voiced frame (its context and
    # hysteresis), so the silence a caller actually leaves is about 100 ms longer than these.
    complete_silence_ms: float = 320.0
    incomplete_silence_ms: float = 1100.0
    # With no transcript yet (the recogniser lags), wait as for a complete thought but a bit longer.
    unknown_silence_ms: float = 480.0


def looks_incomplete(text: str) -> bool:
    words = text.lower().replace(",", " ").split()
    return bool(words) and words[-1] in TRAILING_WORDS


class Endpointer:
    """Tracks VAD boundaries and the latest partial; `poll(now_ms)` says when the turn is over."""

    def __init__(self, config: EndpointingConfig | None = None) -> None:
        self.config = config or EndpointingConfig()
        self._speech_seen = False
        self._silence_since: float | None = None
        self._partial = ""

    @property
    def in_turn(self) -> bool:
        """The caller has spoken since the last turn ended."""
        return self._speech_seen

    def on_speech_start(self, time_ms: float) -> None:
        self._speech_seen = True
        self._silence_since = None

    def on_speech_end(self, time_ms: float) -> None:
        if self._speech_seen:
            self._silence_since = time_ms

    def on_partial(self, text: str) -> None:
        self._partial = text

    def required_silence_ms(self) -> float:
        if not self._partial.strip():
            return self.config.unknown_silence_ms
        if looks_incomplete(self._partial):
            return self.config.incomplete_silence_ms
        return self.config.complete_silence_ms

    def poll(self, now_ms: float) -> bool:
        if self._silence_since is None:
            return False
        return now_ms - self._silence_since >= self.required_silence_ms()

    def reset(self) -> None:
        self._speech_seen = False
        self._silence_since = None
        self._partial = ""
