"""Card numbers kept out of the call loop: what the caller says or keys is masked before the history
(the LLM's prompt), the brain, tools or any event see it, and what the brain says or passes to a tool
is scrubbed the same way (cells.call.reply). Phone numbers and e-mails stay: the brain needs them (the
worker's publisher masks them as the agent asks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cells.call.timeline import TurnTiming
from cells.contract.call_redaction import CallRedactor
from cells.providers.base import Message


class CallerText:
    """One call's masking of caller input, fed in order. `history` is the session's (edited in place)."""

    def __init__(self, redactor: CallRedactor | None = None) -> None:
        self.redactor = redactor or CallRedactor(pii=False)
        self._read_upto = 0  # history index up to which the agent's words were read

    def resumed(self, history: Sequence[Message]) -> None:
        """A resumed call's conversation so far: a card read across the resume is still one."""
        for m in history:
            if m.role == "user":
                self.redactor.caller(m.content)
            elif m.role == "assistant":
                self.redactor.agent(m.content)
        self._read_upto = len(history)

    def said(self, text: str, history: list[Message], turns: Sequence[TurnTiming]) -> str:
        """`text` (a caller turn or keypad entry) masked. The agent's words since the last input are read
        first (a question about a card makes the next digits a card's); a card completed by this input
        is masked too where its first pieces already stand (history, turns)."""
        for i in range(self._read_upto, len(history)):
            if history[i].role == "assistant" and history[i].content:
                history[i] = dataclasses.replace(history[i], content=self.redactor.agent(history[i].content))
        heard = self.redactor.cards_heard
        masked = self.redactor.caller(text)
        if self.redactor.cards_heard != heard:
            self._mask_heard(history, turns)
        self._read_upto = len(history)
        return masked

    def _mask_heard(self, history: list[Message], turns: Sequence[TurnTiming]) -> None:
        mask = self.redactor.mask_known
        for i, m in enumerate(history):
            clean = dataclasses.replace(m, content=mask(m.content), tool_calls=tuple(
                dataclasses.replace(c, arguments=mask(c.arguments)) for c in m.tool_calls or ()))
            if clean != m:
                history[i] = clean
        for timing in turns:
            timing.caller_text, timing.agent_text = mask(timing.caller_text), mask(timing.agent_text)
