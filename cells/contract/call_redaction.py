"""One call's redaction, fed in order: numbers a caller reads or keys across several turns, a card's
security code and expiry after it, and the same digits when anyone repeats them later in the call.

The rules per text are cells.contract.redaction's. What this adds needs the call's past, which lives
only in this object's memory (never written, dropped with the call): the digits the caller's last
inputs ended with, whether a card is being talked about, and the cards (and card pieces) heard so far.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Final

from cells.contract.redaction import (
    CARD,
    CVV,
    EXPIRY,
    KEEP_KEYS,
    apply_spans,
    card_units,
    luhn_valid,
    number_spans,
    redact_payload,
    redact_text,
)
from cells.contract.spoken_numbers import Unit, chains, runs

__all__ = ["CallRedactor", "redact_history"]

# Words that put a caller's next numbers in a card's context (the agent's question counts too).
_CARD_CUE: Final = re.compile(
    r"\b(?:card|credit|debit|visa|master\s?card|amex|american\s+express|discover|maestro|payment|pay|"
    r"paying|billing|long\s+number|expir\w*|cvv|cvc|security\s+code|sixteen\s+digits?|16\s+digits?)\b",
    re.IGNORECASE)
# Words that announce a phone number: a number right after them is kept (unless it is a whole card).
_PHONE_CUE: Final = re.compile(
    r"\b(?:phone|mobile|cell|telephone|landline|whatsapp|extension|call\s+(?:me|you)|reach\s+(?:me|you)"
    r"|call\s*back|(?:my|your|best|good|contact|home|work|direct|the)\s+number)\b", re.IGNORECASE)
_PHONE_LOOKBACK: Final = 40
_EXPIRY_WORD: Final = re.compile(r"\b(?:exp\w*|valid|good\s+thru|month|year)\b", re.IGNORECASE)
_CONTEXT_INPUTS: Final = 2  # caller inputs a cue covers
_FRAGMENT_MIN: Final = 4  # digits a piece of a card needs before it is masked in a card context
_KEYPAD_FRAGMENT_MIN: Final = 6  # the same for a keypad entry with no context (a card keyed in pieces)
_CARD_GROUPS: Final = frozenset({8, 12})  # digits of two or three of a card's groups of four
_PHONE_LENGTHS: Final = frozenset({7, 10, 11, 12})  # a keyed entry this long, with no context, is a phone
_CARD_MIN, _CARD_MAX = 13, 19
_CARRY_MAX: Final = _CARD_MAX - 1
_KNOWN_MAX: Final = 16  # cards and card pieces remembered (for repeats later in the call)
# What may stand before a number that continues the last turn's ("and then", "keypad", "uh").
_LEAD_IN: Final = re.compile(r"[\s,.:;!?-]*(?:\b[a-z']{1,10}\b[\s,.:;!?-]*){0,4}", re.IGNORECASE)
_MASKED_LEAD: Final = re.compile(_LEAD_IN.pattern + r"\[card\]", re.IGNORECASE)
_TAIL_OUT: Final = re.compile(r"[\s,.:;!?#*-]*(?:\b[a-z']{1,10}\b[\s,.:;!?#*-]*){0,3}", re.IGNORECASE)

Span = tuple[int, int, str]


def _digits(units: list[Unit]) -> str:
    return "".join(u.digits for u in units)


def _time_like(run: list[Unit]) -> bool:
    """"ten thirty", "2 45": an hour and its minutes, not a piece of a card."""
    if len(run) != 2 or not all(u.digits.isdigit() for u in run):
        return False
    hour, minutes = int(run[0].digits), run[1].digits
    return 1 <= hour <= 12 and len(minutes) == 2 and int(minutes) < 60


def merged(spans: list[Span]) -> list[Span]:
    """Spans that overlap joined into one (a card's label wins): two rules may mask parts of one number."""
    out: list[Span] = []
    for start, end, label in sorted(spans):
        if out and start < out[-1][1]:
            a, b, was = out[-1]
            out[-1] = (a, max(b, end), CARD if CARD in (was, label) else was)
        else:
            out.append((start, end, label))
    return out


class CallRedactor:
    """One call's redaction where it happens (the worker), fed in order: what the caller says or keys
    (`caller`), what the agent says (`agent`), and every other payload (`payload`).

    A card read in pieces is no card in either piece alone, so the digits the caller's last inputs
    ended with are kept (in memory): the piece that completes a card is masked; in a card's context
    (the caller or the agent spoke of a card or payment just before) every piece of 4 digits or more
    is masked at once, since what was published cannot be taken back. Cards and card pieces heard are
    remembered for the call, so that anyone repeating them later (the agent, a tool's arguments) is
    masked too.
    """

    def __init__(self, *, pii: bool, keep: Collection[str] = KEEP_KEYS) -> None:
        self.pii = pii
        self.keep = keep
        self._carry = ""  # the digits the caller's last inputs ended with
        self._starts: list[int] = []  # where each of those inputs' piece begins in _carry
        self._carry_card = False  # ... were masked as a piece of a card
        self._context = 0  # caller inputs still in a card's context
        self._phone_asked = False  # the agent just asked for a phone number
        self._after_card = 0  # inputs since a card: a short number is its code or expiry
        self._known: list[str] = []  # cards and card pieces heard (digits), newest last
        self._said: dict[str, str] = {}  # recent caller inputs as redacted (a turn's report repeats them)

    @classmethod
    def for_agent(cls, spec: Any, history: Any = ()) -> CallRedactor:
        """A call's redactor: e-mails and phone numbers too unless the agent (its spec as the control
        plane sends it) switched `redact_pii` off; a resumed call's conversation so far (messages with
        `role` and `content`) primes it, so a card read across the resume is still one."""
        compliance = spec.get("compliance") if isinstance(spec, Mapping) else None
        pii = not (isinstance(compliance, Mapping) and compliance.get("redact_pii") is False)
        redactor = cls(pii=pii)
        for message in history or ():
            if getattr(message, "role", None) == "user":
                redactor.caller(message.content)
            elif getattr(message, "role", None) == "assistant":
                redactor.agent(message.content)
        return redactor

    @property
    def cards_heard(self) -> int:
        """How many cards and card pieces this call has heard (it grows when one more is heard)."""
        return len(self._known)

    @property
    def pending(self) -> bool:
        """The caller's last input ended with digits that the next input may make a card."""
        return (not self._carry_card and _FRAGMENT_MIN <= len(self._carry) < _CARD_MAX
                and any(self._carry[at] in "23456" for at in self._starts))

    # -- the caller ---------------------------------------------------------------------------------
    def caller(self, text: str) -> str:
        """One caller input (a turn's transcript, or a keypad entry "keypad 4 1 1 ..."), redacted."""
        if not isinstance(text, str) or not text:
            return text
        if self.pending and _MASKED_LEAD.match(text):
            # Masked upstream (the call loop) as the card the last input's digits began: they are its.
            self._remember(self._carry)
        found = list(runs(text))
        groups = list(chains(text, found))
        keypad = text.lstrip().lower().startswith("keypad")
        in_context = self._context > 0 or _CARD_CUE.search(text) is not None
        phone = self._phone_asked and not in_context
        forced: list[Span] = []
        lead = groups[0] if groups and _LEAD_IN.fullmatch(text, 0, groups[0][0][0].start) else None
        lead_units = [u for run in lead for u in run] if lead else []
        phone_lead = bool(lead_units) and _PHONE_CUE.search(text, 0, lead_units[0].start) is not None
        joined = bool(lead) and bool(self._carry) and (
            (self._carry_card and len(_digits(lead_units)) >= 3 and not phone_lead)
            or self._completes(lead or []))
        if joined:
            forced.append((lead_units[0].start, lead_units[-1].end, CARD))
            self._remember(self._carry + _digits(lead_units))
        own = number_spans(text, pii=False)
        card_end = min([end for _, end, label in own if label == CARD] or [len(text) + 1])
        for run in found:
            after = run[0].start >= card_end  # a short number after a card in the same breath: its code
            forced.extend(self._run_spans(text, run, in_context=in_context, keypad=keypad, phone=phone,
                                          taken=joined and run[0] in lead_units, after_card=after))
        cards = [s for s in [*forced, *own] if s[2] == CARD]
        for start, end, _ in cards:
            self._remember(_digits([u for run in found for u in run if start <= u.start < end]))
        self._after_card = 2 if cards else max(0, self._after_card - 1)
        self._update_carry(text, groups, lead, joined, tail_masked=any(
            s[2] == CARD and groups and s[1] >= groups[-1][-1][-1].end for s in forced))
        out = self._mask_known(redact_text(apply_spans(text, merged(forced + own)), pii=self.pii))
        self._context = _CONTEXT_INPUTS if _CARD_CUE.search(text) else max(0, self._context - 1)
        self._phone_asked = False
        self._said[text] = out
        if len(self._said) > 32:
            del self._said[next(iter(self._said))]
        return out

    def _run_spans(self, text: str, run: list[Unit], *, in_context: bool, keypad: bool, phone: bool,
                   taken: bool, after_card: bool = False) -> list[Span]:
        """The forced mask of one run of a caller input, if any."""
        if taken:
            return []
        digits = _digits(run)
        span = (run[0].start, run[-1].end)
        if self._is_known(digits):
            return [(*span, CARD)]
        if (self._after_card or after_card) and 3 <= len(digits) <= 6 and not _time_like(run):
            expiry = len(digits) > 4 or _EXPIRY_WORD.search(text, 0, span[0]) is not None
            return [(*span, EXPIRY if expiry else CVV)]
        if keypad and in_context and digits:  # a card keyed a few digits at a time
            return [(*span, CARD)]
        if len(digits) < _FRAGMENT_MIN or phone:
            return []
        phone_cued = _PHONE_CUE.search(text, max(0, span[0] - _PHONE_LOOKBACK), span[0]) is not None
        if in_context and not phone_cued and not _time_like(run):
            cued = _EXPIRY_WORD.search(text, max(0, span[0] - _PHONE_LOOKBACK), span[0])
            return [(*span, EXPIRY if cued and len(digits) <= 6 else CARD)]
        if keypad and not in_context and len(digits) >= _KEYPAD_FRAGMENT_MIN and digits[0] in "23456" \
                and len(digits) not in _PHONE_LENGTHS:
            return [(*span, CARD)]
        sizes = {len(u.digits) for u in run}
        if self._known and not phone_cued and len(digits) >= _FRAGMENT_MIN + 2 and digits[0] in "23456":
            return [(*span, CARD)]  # a call that has had a card: another long number is likely one too
        if not phone_cued and digits[0] in "23456" and len(digits) < _CARD_MIN and (
                (len(digits) in _CARD_GROUPS and (sizes == {1} or len(run) == 1))
                or (len(run) >= 2 and sizes == {4})):
            # Read as a card is (groups of four, or two or three groups' worth of digits), never as a phone
            # number is written (3-3-4, 5-6, a leading 0): a card's first pieces, even with no card in sight.
            return [(*span, CARD)]
        return []

    def _completes(self, lead: list[list[Unit]]) -> bool:
        """The lead chain of this input completes a card the last inputs' digits began."""
        for start in self._starts:
            if card_units(lead, first=self._carry[start:]):
                return True
        return False

    def _update_carry(self, text: str, groups: list[list[list[Unit]]], lead: Any, joined: bool,
                      tail_masked: bool) -> None:
        tail = groups[-1] if groups and _TAIL_OUT.fullmatch(text, groups[-1][-1][-1].end) else None
        self._carry_card = False
        if tail is None:
            self._carry, self._starts = "", []
            return
        units = [u for run in tail for u in run]
        digits = _digits(units)
        whole_card = bool(card_units(tail))
        if tail is lead and self._carry and not whole_card:  # this input continued the last one's number
            starts = [*self._starts, len(self._carry)]
            digits = self._carry + digits
        else:
            starts = [0]
        cut = max(0, len(digits) - _CARRY_MAX)
        self._carry, self._starts = digits[cut:], [s - cut for s in starts if s >= cut]
        complete = any(_CARD_MIN <= len(self._carry) - at <= _CARD_MAX and luhn_valid(self._carry[at:])
                       for at in self._starts)  # a card ends here: a code may follow, no more card
        self._carry_card = (tail_masked or joined) and not whole_card and not complete
        if complete or whole_card:
            self._carry, self._starts = "", []

    # -- what the call remembers of its cards ------------------------------------------------------
    def _remember(self, digits: str) -> None:
        if len(digits) >= _FRAGMENT_MIN and digits not in self._known:
            self._known.append(digits)
            del self._known[:-_KNOWN_MAX]

    def _is_known(self, digits: str) -> bool:
        return len(digits) >= _FRAGMENT_MIN and any(digits in k or k in digits for k in self._known)

    def _mask_known(self, text: str) -> str:
        """`text` with every number (or digit group) that repeats a card or card piece heard masked."""
        if not self._known:
            return text
        spans: list[Span] = []
        for run in runs(text):
            if self._is_known(_digits(run)):
                spans.append((run[0].start, run[-1].end, CARD))
            else:
                spans += [(u.start, u.end, CARD) for u in run if self._is_known(u.digits)]
        return apply_spans(text, spans)

    def mask_known(self, obj: Any) -> Any:
        """A copy of a string or JSON-like value with the call's cards and card pieces masked wherever
        they stand (nothing else: the other rules are `payload`'s)."""
        if isinstance(obj, str):
            return self._mask_known(obj)
        if isinstance(obj, dict):
            return {k: v if k in self.keep else self.mask_known(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.mask_known(v) for v in obj]
        return obj

    # -- everything else -----------------------------------------------------------------------------
    def repeated(self, text: str) -> str:
        """A caller input said before (a turn's report), masked as it was then."""
        if not isinstance(text, str):
            return text
        return self._said.get(text) or redact_text(self._mask_known(text), pii=self.pii)

    def agent(self, text: str) -> str:
        """What the agent said: masked like any text; a question about a card opens its context, one
        about a phone number lets the caller's next number be one."""
        if not isinstance(text, str):
            return text
        if _CARD_CUE.search(text):
            self._context = _CONTEXT_INPUTS
        else:
            self._phone_asked = _PHONE_CUE.search(text) is not None
        return redact_text(self._mask_known(text), pii=self.pii)

    def payload(self, obj: Any) -> Any:
        return redact_payload(self.mask_known(obj), pii=self.pii, keep=self.keep)

    def event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """A call event's data as it may leave the worker."""
        text = data.get("text")
        if kind == "transcript" and isinstance(text, str):
            return {**self.payload({k: v for k, v in data.items() if k != "text"}), "text": self.caller(text)}
        if kind == "agent_said" and isinstance(text, str):
            return {**self.payload({k: v for k, v in data.items() if k != "text"}), "text": self.agent(text)}
        if "caller_text" in data:  # a turn's report
            return {**self.payload({k: v for k, v in data.items() if k != "caller_text"}),
                    "caller_text": self.repeated(data["caller_text"])}
        return self.payload(data)


def redact_history(docs: list[dict[str, Any]], *, pii: bool = False) -> list[dict[str, Any]]:
    """A call's saved history (message dicts, in order) redacted the way its events were: the whole
    history is read again at every save, so a card completed in a later turn is masked everywhere:
    a first reading learns the call's cards, the second masks them wherever they stand."""
    learn = CallRedactor(pii=pii)
    for doc in docs:
        if doc.get("role") == "user" and isinstance(doc.get("content"), str):
            learn.caller(doc["content"])
        elif doc.get("role") == "assistant" and isinstance(doc.get("content"), str):
            learn.agent(doc["content"])
    r = CallRedactor(pii=pii)
    r._known = list(learn._known)
    out: list[dict[str, Any]] = []
    for doc in docs:
        doc = dict(doc)
        content = doc.get("content")
        if doc.get("role") == "user":
            doc["content"] = r.caller(content) if isinstance(content, str) else content
        elif doc.get("role") == "assistant":
            doc["content"] = r.agent(content) if isinstance(content, str) else content
        else:
            doc["content"] = r.payload(content)
        if doc.get("tool_calls"):
            doc["tool_calls"] = [{**c, "arguments": r.payload(c.get("arguments") or {})}
                                 for c in doc["tool_calls"]]
        out.append(doc)
    return out
