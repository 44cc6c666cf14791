"""A caller who goes on after the endpoint fired, before the agent's reply is heard, is still in the
same turn.

Callers pause ~300-400 ms between sentences ("Hi. I need a filling. Could I come in on Friday?"); an end
of turn that fires in such a pause answers half the request, and the rest arrives as a second turn over
the agent's reply. When the caller's speech starts again within `window_ms` of the endpoint and no audio
of the reply went out before it (audio sent less than `unheard_s` before the caller spoke again had not
reached their ear; the call loop clears it from the carrier), the pending reply is withdrawn (cancelled,
its messages and the turn's record taken back) and the first part's text is carried into the next turn,
so the dialogue sees the request whole. A reply that has already run a tool is never withdrawn (a tool's
effect cannot be taken back by dropping its messages); the caller then simply takes the next turn, as
before.

The call loop (cells/call/session.py) calls `turn_ended`, `caller_resumed` and `on_final`; everything
else stays here.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class _Session(Protocol):  # what of the call loop this touches
    history: list[Any]
    turns: list[Any]
    _pending: Any
    _reply: Any

    def emit(self, kind: str, data: dict[str, Any]) -> None: ...


class TurnRejoin:
    def __init__(self, window_ms: float = 1500.0, unheard_s: float = 0.15) -> None:
        self.window_ms = window_ms
        self.unheard_s = unheard_s
        self._ended_at: float | None = None  # stream time of the last endpoint (None: nothing to rejoin)
        self._carry = ""  # the first part's text, waiting for the rest
        self._hold = False  # the first part's transcript is still being decoded: keep it when it comes
        self.rejoined = 0  # turns taken back this call (for the call record)

    def turn_ended(self, stream_ms: float) -> None:
        self._ended_at = stream_ms

    def caller_resumed(self, session: _Session, speech_start_ms: float, speech_start_wall: float) -> bool:
        """Speech started at stream time `speech_start_ms` (clock time `speech_start_wall`) outside a
        turn: withdraw the last turn's reply and carry its text when the caller is going on with it.
        Whether it did (the caller must then clear any reply audio already sent)."""
        ended, self._ended_at = self._ended_at, None
        if ended is None or speech_start_ms - ended > self.window_ms:
            return False
        if session._pending is not None:  # its transcript is not in yet: nothing was said or done
            self._hold = True
            session._pending.interrupted = True  # its reply deadline must not apologise for it
        elif not self._withdraw(session, speech_start_wall):
            return False
        self.rejoined += 1
        session.emit("turn_rejoined", {"after_ms": round(speech_start_ms - ended)})
        return True

    def _withdraw(self, session: _Session, resumed_at: float) -> bool:
        """Takes the last caller turn back if its reply has sent no audio the caller heard and run no tool."""
        if not session.turns:
            return False
        sent = session.turns[-1].first_frame_sent
        if sent is not None and sent < resumed_at - self.unheard_s:
            return False
        last_user = next((i for i in range(len(session.history) - 1, -1, -1)
                          if session.history[i].role == "user"), None)
        if last_user is None or any(m.role == "tool" or m.tool_calls for m in session.history[last_user:]):
            return False
        if session._reply is not None and not session._reply.done():
            session._reply.cancel()
        self._carry = " ".join(filter(None, (self._carry, session.history[last_user].content)))
        del session.history[last_user:]
        if getattr(session, "_said_upto", 0) > last_user:  # what the caller was reported to hear
            session._said_upto = last_user  # type: ignore[attr-defined]
        timing = session.turns.pop()
        timing.interrupted = True
        return True

    def on_final(self, text: str) -> str | None:
        """A final transcript: None while it is the first part being kept, else the whole turn's text."""
        if self._hold:
            self._hold = False
            self._carry = " ".join(filter(None, (self._carry, text.strip())))
            return None
        if not self._carry:
            return text
        whole = " ".join(filter(None, (self._carry, text.strip())))
        self._carry = ""
        return whole
