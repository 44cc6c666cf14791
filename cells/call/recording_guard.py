"""Card capture kept out of a call's recording, and the pause reported in the call's event log.

Keyed digits: the recording pauses at the caller's first key (blanking a little before it, as the
carrier reports a key once its tone has played) and resumes when the entry is over (the session
reports it as a "keypad ..." transcript). Every keypad entry is paused, not only cards: key tones
are trivially decoded back to digits, and an entry is only known to be a card once it is complete.
Spoken cards: the recogniser's transcript is run through the call's redaction rules (the same
CallRedactor the events leave the worker through); a turn in which they find a card, its security
code or its expiry is blanked over its span on both tracks, as is an agent reply that read one back.
The recording is only held in memory until the stream ends, so a blanked span is never written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from cells.call.recorder import RATE, CallRecorder
from cells.contract.call_redaction import CallRedactor
from cells.contract.redaction import CARD, CVV, EXPIRY

log = logging.getLogger(__name__)
KEY_LEAD_MS: Final = 400  # blanked before a key's report (its tone, and the carrier's delay)
SPOKEN_MARGIN_MS: Final = 300  # around a spoken card's span (the VAD's onset and hangover)
_MASKS: Final = (CARD, CVV, EXPIRY)

Emit = Callable[[str, dict[str, Any]], None]


class RecordingGuard:
    """Between a call's events and its recorder. `started_at` gives the session's clock reading at
    the call's start (the events' `start_ms`/`end_ms` count from it), None before it started."""

    def __init__(self, recorder: CallRecorder, emit: Emit, redactor: CallRedactor,
                 started_at: Callable[[], float | None]) -> None:
        self.recorder, self.emit, self.redactor, self.started_at = recorder, emit, redactor, started_at
        self._keyed_from: int | None = None  # where the keypad pause began
        self._safe = 0  # caller track position up to which the call is known to be clear of card audio
        self._pending: list[tuple[int, int]] = []  # spans since a turn whose last digits may begin a card

    def _ms(self, position: int) -> int:
        return round(1000 * position / RATE)

    # -- keypad --------------------------------------------------------------------------------
    def on_dtmf(self) -> None:
        if self._keyed_from is not None:
            return
        at = max(0, self.recorder.position - KEY_LEAD_MS * RATE // 1000)
        self._keyed_from = at
        self.recorder.paused = True
        self.recorder.silence(at, self.recorder.position)
        self.emit("recording_paused", {"reason": "keypad", "at_ms": self._ms(at)})

    def _resume_keypad(self) -> None:
        if self._keyed_from is None:
            return
        self.recorder.paused = False
        self.recorder.silence(self._keyed_from, self.recorder.position)  # what the pause let through
        self._keyed_from = None
        self._safe = self.recorder.position
        self.emit("recording_resumed", {"reason": "keypad", "at_ms": self._ms(self.recorder.position)})

    # -- the call's events -----------------------------------------------------------------------
    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        text = data.get("text")
        if not isinstance(text, str):
            return
        keypad = kind == "transcript" and text.lstrip().lower().startswith("keypad")
        if keypad:
            self._resume_keypad()  # the entry is over, even when the call loop ignored it
        if data.get("ignored") and kind != "transcript":
            return
        if kind == "transcript":  # ignored ones too (said over the agent): their card is still heard
            earlier, self._pending = self._pending, []
            masked = self.redactor.caller(text)  # keypad entries too: a card may span both
            if keypad:
                return
            span = self._span(data)
            if any(m in masked for m in _MASKS):
                for start, end in earlier:  # the card began in the turn before (and was read back): gone too
                    self.recorder.silence(start, end)
                self._blank(data, "card_spoken")
            elif span is not None:
                self._safe = max(self._safe, span[1])
            if self.redactor.pending and span is not None:
                self._pending = [span]
        elif kind == "agent_said":
            if any(m in self.redactor.agent(text) for m in _MASKS):
                self._blank(data, "card_read_back")
            elif self._pending and (span := self._span(data)) is not None:
                self._pending.append(span)

    def _span(self, data: dict[str, Any]) -> tuple[int, int] | None:
        start_ms, end_ms, t0 = data.get("start_ms"), data.get("end_ms"), self.started_at()
        if not isinstance(start_ms, int | float) or not isinstance(end_ms, int | float) or t0 is None:
            return None
        margin = SPOKEN_MARGIN_MS / 1000
        return (self.recorder.position_at(t0 + start_ms / 1000 - margin),
                self.recorder.position_at(t0 + end_ms / 1000 + margin))

    def _blank(self, data: dict[str, Any], reason: str) -> None:
        span = self._span(data)
        # Without a span, everything since the last turn known to be clear goes.
        start, end = span if span is not None else (self._safe, self.recorder.position)
        end = max(end, start)
        self.recorder.silence(start, end)
        self.emit("recording_paused", {"reason": reason, "at_ms": self._ms(start)})
        self.emit("recording_resumed", {"reason": reason, "at_ms": self._ms(end)})

    def close(self) -> None:
        """The stream is over: a keypad entry never completed is blanked to the end."""
        self._resume_keypad()
