"""When has the caller finished their turn?

The VAD says when speech stopped; how long to wait after that depends on whether the caller is
done. At each pause the end-of-turn model (cells.call.turn_model) scores the turn's audio: a high
score ends the turn after a short silence, a low one waits much longer (and asks again if the
pause goes on), so that "my number is 0 7 7 ... 9 1 2" is not cut at the pause while a finished
question is answered quickly. Without a model answer in time (no model, a failure, a backed-up
pool) the text rules decide: a partial transcript that ends like a finished thought ("at nine
thirty") needs only a short silence; one that trails off ("at nine", "and um") gets a longer one.
All times are stream time (ms of caller audio received), so decisions follow the audio clock,
not the event loop's scheduling.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

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
    # The end-of-turn model (used when one is available to the call).
    use_model: bool = True
    model_complete_p: float = 0.5  # at or above: the caller is done
    model_incomplete_p: float = 0.2  # below: they are mid-utterance; in between the text rules decide
    model_complete_silence_ms: float = 160.0
    # 1000 rather than 1400: on real speech (autospeak bench turn) 3 more of 173 turns were cut, but the
    # p95 wait after a real end fell from 1480 to 1060 ms.
    model_incomplete_silence_ms: float = 1000.0
    # No answer this long after asking (stream time): the text rules decide (a late answer still
    # counts). The VAD's end event comes ~170 ms after its stamp, so the question is asked then.
    model_deadline_ms: float = 300.0
    # A pause scored incomplete is scored again once it has lasted this long (None: never). Off: on
    # real speech (autospeak bench turn --only sweep) a second look at a long pause more often
    # took an inside pause for the end than it sped up a real end (Silero: 76 -> 73 of 172 turns
    # cut on a quiet line, 81 -> 79 at 10 dB; the same median wait).
    model_recheck_ms: float | None = None
    # Audio kept before the turn's first speech start (the model saw onsets with some lead-in).
    model_preroll_ms: float = 300.0
    # Ask as soon as the VAD's speech probability drops below this (a pause may be starting), so
    # that the answer is in by the time the VAD declares the end of speech (~170 ms later). The
    # answer is dropped if the probability rises again first. None: ask at the VAD's end event.
    model_early_below: float | None = 0.35


def looks_incomplete(text: str) -> bool:
    words = text.lower().replace(",", " ").split()
    return bool(words) and words[-1] in TRAILING_WORDS


class TurnChecker(Protocol):
    """Scores a turn's audio off the event loop and calls `done(P(complete))`, or `done(None)`."""

    def request(self, pcm: np.ndarray, rate: int, done: Callable[[float | None], None]) -> None: ...


class TurnAudio:
    """The last ~8.5 s of caller audio, addressed by stream time, to cut the current turn from."""

    KEEP_MS = 8500.0

    def __init__(self) -> None:
        self.rate = 0
        self._chunks: deque[np.ndarray] = deque()
        self._held = 0  # samples in _chunks
        self.end_ms = 0.0  # stream time of the last sample held

    def push(self, pcm: np.ndarray, rate: int) -> None:
        if rate != self.rate:
            self._chunks.clear()
            self._held, self.rate = 0, rate
        self._chunks.append(pcm)
        self._held += len(pcm)
        self.end_ms += 1000.0 * len(pcm) / rate
        keep = int(self.KEEP_MS * rate / 1000)
        while self._chunks and self._held - len(self._chunks[0]) >= keep:
            self._held -= len(self._chunks.popleft())

    def since(self, start_ms: float) -> np.ndarray:
        """Audio from stream time `start_ms` to now (what is still held of it)."""
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        audio = np.concatenate(self._chunks)
        want = int(max(0.0, self.end_ms - start_ms) * self.rate / 1000)
        return audio[-want:] if want else audio[:0]


class Endpointer:
    """Tracks VAD boundaries, the latest partial and the model's verdicts; `poll(now_ms)` says when
    the turn is over."""

    def __init__(self, config: EndpointingConfig | None = None, checker: TurnChecker | None = None) -> None:
        self.config = config or EndpointingConfig()
        self.checker = checker if self.config.use_model else None
        self.audio = TurnAudio()
        self._speech_seen = False
        self._turn_start_ms = 0.0
        self._silence_since: float | None = None
        self._partial = ""
        self._pause = 0  # which pause a verdict is about: answers for an older one are dropped
        self._verdict: float | None = None
        self._model_failed = False
        self._asked = 0
        self._asked_at = 0.0  # stream time of the pause's first question
        self._dip = False  # the VAD's probability is low inside speech (a question may be out)
        self.verdicts: list[float | None] = []  # this turn's answers, for the turn's record
        # The least silence that ends a turn whatever the model or the text say: raised while the caller
        # dictates (a message for the staff), where people pause between sentences and an early end
        # would cut the message in two.
        self.floor_ms = 0.0

    @property
    def in_turn(self) -> bool:
        """The caller has spoken since the last turn ended."""
        return self._speech_seen

    def on_audio(self, pcm: np.ndarray, rate: int, speech_probs: Sequence[float] = ()) -> None:
        """Caller audio as it arrives, with the VAD's speech probabilities for it (if known)."""
        if self.checker is None:
            return
        self.audio.push(pcm, rate)
        low = self.config.model_early_below
        if low is None or not speech_probs or not self._speech_seen or self._silence_since is not None:
            return
        dip = max(speech_probs) < low
        if dip and not self._dip:
            self._new_pause()
            self._ask()
        elif self._dip and not dip:
            self._new_pause()  # speech went on: that answer is about nothing
        self._dip = dip

    def _new_pause(self) -> None:
        self._pause += 1
        self._verdict, self._model_failed, self._asked = None, False, 0

    def on_speech_start(self, time_ms: float) -> None:
        if not self._speech_seen:
            self._turn_start_ms = time_ms - self.config.model_preroll_ms
        self._speech_seen = True
        self._silence_since = None
        self._dip = False
        self._new_pause()

    def on_speech_end(self, time_ms: float) -> None:
        if not self._speech_seen:
            return
        self._silence_since = time_ms
        if self._dip and self._asked:
            return  # asked when the probability dropped: that answer is about this pause
        self._new_pause()
        self._ask()

    def on_partial(self, text: str) -> None:
        self._partial = text

    @property
    def partial(self) -> str:
        """The recogniser's latest partial for this turn."""
        return self._partial

    def _ask(self) -> None:
        if self.checker is None:
            return
        if not self._asked:
            self._asked_at = self.audio.end_ms
        self._asked += 1
        pause = self._pause
        self.checker.request(self.audio.since(self._turn_start_ms), self.audio.rate,
                             lambda p: self._on_verdict(pause, p))

    def _on_verdict(self, pause: int, p: float | None) -> None:
        if pause != self._pause:
            return
        self.verdicts.append(p)
        if p is None:
            self._model_failed = self._verdict is None
        else:
            self._verdict = p

    def _text_silence_ms(self) -> float:
        if not self._partial.strip():
            return self.config.unknown_silence_ms
        if looks_incomplete(self._partial):
            return self.config.incomplete_silence_ms
        return self.config.complete_silence_ms

    def required_silence_ms(self, now_ms: float = 0.0) -> float:
        """How much silence this pause needs, given what is known at stream time `now_ms`."""
        c = self.config
        if self.checker is not None and not self._model_failed:
            p = self._verdict
            if p is None:
                waited = now_ms - self._asked_at
                return math.inf if waited < c.model_deadline_ms else self._text_silence_ms()
            if p >= c.model_complete_p:
                # A transcript that trails off ("at", "and") outweighs the model's "done".
                if self._partial.strip() and looks_incomplete(self._partial):
                    return c.incomplete_silence_ms
                return c.model_complete_silence_ms
            if p < c.model_incomplete_p:
                return c.model_incomplete_silence_ms
        return self._text_silence_ms()

    def poll(self, now_ms: float) -> bool:
        if self._silence_since is None:
            return False
        silence = now_ms - self._silence_since
        c = self.config
        if (c.model_recheck_ms is not None and self._asked == 1 and self._verdict is not None
                and self._verdict < c.model_complete_p and silence >= c.model_recheck_ms):
            self._ask()
        return silence >= max(self.floor_ms, self.required_silence_ms(now_ms))

    def reset(self) -> None:
        self._speech_seen = False
        self._silence_since = None
        self._partial = ""
        self._dip = False
        self._new_pause()
        self.verdicts = []
