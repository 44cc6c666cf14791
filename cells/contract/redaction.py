"""Redaction of call text: the rules both planes apply (the worker before anything leaves it, the
control plane again before it stores or sends anything).

Always (whatever the agent's settings): payment card numbers become "[card]" and the security code
said right after "security code" / "cvv" / "cvc" becomes "[cvv]": card numbers are never written
anywhere. With `pii` (the agent's compliance setting `redact_pii`, on unless switched off), e-mail
addresses become "[email]" and phone numbers (7 digits or more) "[phone]".

Numbers are found the way a speech recogniser writes them: digit groups ("4242 4242-4242"), spoken
digits ("four two four two", "oh", "double seven") or a DTMF string ("4242424242424242#"), with
spaces, dashes, parentheses and fillers ("uh", "um") between them. Only runs long enough to matter
are touched: a card needs 13-19 digits that pass the Luhn check, a phone number 7 digits, so times
("ten thirty", "10:30"), dates ("2024-06-01", "june 12 2024"), "2 pm" and prices stay as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["CARD", "CVV", "EMAIL", "EXPIRY", "KEEP_KEYS", "PHONE", "luhn_valid", "redact_payload",
           "redact_text"]

CARD: Final = "[card]"
CVV: Final = "[cvv]"
EMAIL: Final = "[email]"
PHONE: Final = "[phone]"
EXPIRY: Final = "[expiry]"
# Payload keys whose values are identifiers or the call's own metadata, never speech: not redacted.
KEEP_KEYS: Final = frozenset({
    "event_id", "call_id", "call_sid", "stream_sid", "worker_id", "agent_id", "recording_id", "object_key",
    "content_type", "call_status", "direction", "carrier", "from", "to", "disposition", "reason", "status",
    "started_at", "ended_at", "timestamp", "type", "speaker", "segments",
})

_DIGIT_WORDS: Final = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
_REPEAT_WORDS: Final = {"double": 2, "triple": 3}
_CARD_MIN, _CARD_MAX = 13, 19
_PHONE_MIN: Final = 7

# A digit group not glued to letters ("2pm", "CA1234567" and "abc-123" are not numbers here);
# or a spoken digit ("o'clock" is not zero).
_TOKEN: Final = re.compile(
    r"(?<!\w)(?<![A-Za-z][-/.])(?P<num>\d+)(?!\w)(?![-/.][A-Za-z])"
    r"|\b(?P<word>" + "|".join([*_DIGIT_WORDS, *_REPEAT_WORDS]) + r")\b(?!')",
    re.IGNORECASE,
)
# What may stand between two pieces of one number: spaces, dashes, parentheses, ", " and fillers.
_GAP: Final = re.compile(
    r"(?:[\s\-\u2010-\u2015()]|,(?=\s)|\b(?:uh|um|umm|er|erm|ah|hmm)\b)*", re.IGNORECASE
)
_DATE: Final = re.compile(r"\d{4}[-\u2010-\u2015]\d{1,2}[-\u2010-\u2015]\d{1,2}"
                          r"|\d{1,2}[-\u2010-\u2015]\d{1,2}[-\u2010-\u2015]\d{2,4}")
# The words that announce a card's security code, with what may follow before the digits.
_CVV_CUE: Final = re.compile(
    r"\b(?:security\s+code|cvv2?|cvc2?|c\s+v\s+v|c\s+v\s+c|csc|card\s+verification(?:\s+(?:value|code|number))?"
    r"|(?:3|three)\s+digit\s+code|digits\s+on\s+the\s+back)"
    r"(?:[\s:=#-]|\b(?:is|it's|its|was|number|code|the|of|on|at|back|card|my|your|uh|um|er|erm)\b)*$",
    re.IGNORECASE,
)
_CVV_LOOKBACK: Final = 80
_CVV_KEY: Final = re.compile(r"(?:^|[^a-z])(?:cvv2?|cvc2?|csc|security[\s_-]?code)$", re.IGNORECASE)
_CVV_VALUE: Final = re.compile(r"\d{3,4}")
# A card's expiry date after its cue: "expiry 12/27", "expires 0427", "exp date oh four two seven".
_SPOKEN_DIGIT: Final = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine)"
_EXPIRY: Final = re.compile(
    r"\b(?:expir\w*|exp(?:\.|\s+date)|valid\s+(?:thru|through|until)|good\s+thru)"
    r"(?:[\s:,]|\b(?:is|date|on|of|the|it|its|it's|in|at|uh|um)\b)*"
    rf"(?P<value>\d{{1,2}}\s*[/\-.]\s*\d{{2,4}}|\d{{3,4}}\b|(?:\b{_SPOKEN_DIGIT}\b[\s-]*){{3,4}})",
    re.IGNORECASE,
)
# Identifiers are not numbers: a UUID's digit groups once read as a phone number.
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

# E-mail addresses, written ("jo.smith@mail.example") or spoken ("jo dot smith at gmail dot com").
_WRITTEN_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
_LABEL: Final = r"[a-z0-9][a-z0-9_+-]*"
_TLDS: Final = (
    "com|net|org|edu|gov|mil|int|info|biz|io|co|ai|app|dev|me|tv|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|"
    "ie|pt|pl|cz|ru|in|us|ca|au|nz|jp|cn|sg|hk|br|mx|za|eu"
)
_SPOKEN_EMAIL: Final = re.compile(
    # "_" and "-" belong to a label already; only "." and spoken words separate labels (no backtracking).
    rf"\b{_LABEL}(?:(?:\.|\s+(?:dot|underscore|dash|hyphen)\s+){_LABEL})*"
    rf"(?:\s*@\s*|\s+at\s+)(?P<domain>{_LABEL})(?:(?:\.|\s+dot\s+){_LABEL})*"
    rf"(?:\.|\s+dot\s+)(?:{_TLDS})\b",
    re.IGNORECASE,
)
# "booked at hotels dot com" is no address: a spoken one needs a mail provider or "email" nearby.
_MAIL_PROVIDERS: Final = frozenset({
    "gmail", "googlemail", "yahoo", "ymail", "hotmail", "outlook", "live", "msn", "icloud", "me", "mac",
    "aol", "proton", "protonmail", "pm", "gmx", "web", "mail", "yandex", "zoho", "rediffmail", "fastmail",
    "tutanota", "t-online", "orange", "free", "btinternet", "sky", "virginmedia", "qq", "163",
})
_EMAIL_CUE: Final = re.compile(r"\b(?:e[\s-]?mail|mail|address)\b", re.IGNORECASE)
_EMAIL_LOOKBACK: Final = 60


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits (payment card numbers pass it)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact_text(text: str, *, pii: bool) -> str:
    """`text` with card numbers and security codes masked, and with `pii` e-mails and phone numbers."""
    if not text:
        return text
    if pii:
        text = _redact_emails(text)
    text = _EXPIRY.sub(lambda m: m.group(0)[:m.start("value") - m.start()] + EXPIRY, text)
    spans: list[tuple[int, int, str]] = []
    for run in _runs(text):
        spans.extend(_redact_run(text, run, pii=pii))
    return apply_spans(text, spans)


def apply_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, label) span replaced by its label (spans do not overlap)."""
    if not spans:
        return text
    out, last = [], 0
    for start, end, label in sorted(spans):
        if start < last:
            continue
        out.append(text[last:start])
        out.append(label)
        last = end
    out.append(text[last:])
    return "".join(out)


def redact_payload(obj: Any, *, pii: bool, keep: Collection[str] = ()) -> Any:
    """A copy of a JSON-like value with every string redacted (see redact_text).

    `keep` names dict keys whose string values are identifiers, not speech (ids, object keys, the
    call's own numbers), left as they are at any depth. An integer that is a card number becomes
    "[card]" too.
    """
    if isinstance(obj, str):
        return redact_text(obj, pii=pii)
    if isinstance(obj, dict):
        return {k: _redact_item(k, v, pii=pii, keep=keep) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_payload(v, pii=pii, keep=keep) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and obj >= 0:
        digits = str(obj)
        if _CARD_MIN <= len(digits) <= _CARD_MAX and luhn_valid(digits):
            return CARD
    return obj


def _redact_item(key: Any, value: Any, *, pii: bool, keep: Collection[str]) -> Any:
    if key in keep and (isinstance(value, (str, int)) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value))):
        # An identifier, or a list of them (a recording's segment keys); a number where an identifier
        # belongs is left for the reader to refuse as malformed, not turned into text here.
        return value
    # A tool's {"cvv": "123"}: the key is the cue a text would have.
    if isinstance(key, str) and _CVV_KEY.search(key) and _CVV_VALUE.fullmatch(str(value).strip()):
        return CVV
    return redact_payload(value, pii=pii, keep=keep)


# --- numbers --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Unit:
    """One piece of a spoken or written number: its digits and where it stands in the text."""

    digits: str
    start: int
    end: int


def _runs(text: str) -> Iterator[list[_Unit]]:
    """The numbers of `text`: runs of digit groups and spoken digits with only gaps between them."""
    run: list[_Unit] = []
    repeat, repeat_start, prev_end = 1, -1, -1
    ids = [m.span() for m in _UUID.finditer(text)]
    for m in _TOKEN.finditer(text):
        if any(a <= m.start() < b for a, b in ids):
            if run:
                yield run
            run, repeat, prev_end = [], 1, -1
            continue
        if prev_end >= 0 and not _GAP.fullmatch(text, prev_end, m.start()):
            if run:
                yield run
            run, repeat = [], 1
        prev_end = m.end()
        if (word := m.group("word")) is not None:
            word = word.lower()
            if word in _REPEAT_WORDS:  # "double four" is 44
                repeat, repeat_start = _REPEAT_WORDS[word], m.start()
                continue
            digits = _DIGIT_WORDS[word]
        else:
            digits = "".join(str(int(ch)) for ch in m.group("num"))  # any script's digits, as ASCII
        start = m.start()
        if repeat > 1:
            digits, start, repeat = digits[0] * (repeat - 1) + digits, repeat_start, 1
        run.append(_Unit(digits, start, m.end()))
    if run:
        yield run


def _redact_run(text: str, run: list[_Unit], *, pii: bool) -> list[tuple[int, int, str]]:
    n = len(run)
    card = [False] * n
    # "+44 ..." is a phone number as written (E.164); nobody writes a card that way.
    international = run[0].start > 0 and text[run[0].start - 1] == "+"
    for i in range(0 if international else n):
        # A card number spans whole units: digits carved out of a longer group are no card.
        total, digits = 0, ""
        for j in range(i, n):
            digits += run[j].digits
            total = len(digits)
            if total > _CARD_MAX:
                break
            if total >= _CARD_MIN and luhn_valid(digits):
                card[i:j + 1] = [True] * (j + 1 - i)
        # One long group (DTMF, or a recogniser gluing card and code): mask it if a card hides inside.
        unit = run[i].digits
        if len(unit) > _CARD_MIN and any(
            luhn_valid(unit[a:a + size])
            for size in range(_CARD_MIN, _CARD_MAX + 1) for a in range(len(unit) - size + 1)
        ):
            card[i] = True

    spans: list[tuple[int, int, str]] = []
    i = 0
    while i < n:
        j = i
        while j < n and card[j] == card[i]:
            j += 1
        if card[i]:
            spans.append((run[i].start, run[j - 1].end, CARD))
        else:
            spans.extend(_redact_plain(text, run[i:j], pii=pii))
        i = j
    return spans


def _redact_plain(text: str, units: list[_Unit], *, pii: bool) -> list[tuple[int, int, str]]:
    """A stretch of a number that is no card: a security code after its cue, or a phone number."""
    spans: list[tuple[int, int, str]] = []
    start = units[0].start
    if _CVV_CUE.search(text, max(0, start - _CVV_LOOKBACK), start):
        taken, count = 0, 0
        for unit in units:
            if count + len(unit.digits) > 4:
                break
            count += len(unit.digits)
            taken += 1
        if count >= 3:
            spans.append((start, units[taken - 1].end, CVV))
            units = units[taken:]
    if pii and units:
        first, last = units[0].start, units[-1].end
        count = sum(len(u.digits) for u in units)
        if count >= _PHONE_MIN and not _DATE.fullmatch(text, first, last):
            while first > 0 and text[first - 1] in "+(":
                first -= 1
            spans.append((first, last, PHONE))
    return spans


# --- e-mail ---------------------------------------------------------------------------------------


def _redact_emails(text: str) -> str:
    text = _WRITTEN_EMAIL.sub(EMAIL, text)
    return _SPOKEN_EMAIL.sub(lambda m: EMAIL if _is_address(text, m) else m.group(0), text)


def _is_address(text: str, m: re.Match[str]) -> bool:
    if "@" in m.group(0) or m.group("domain").lower() in _MAIL_PROVIDERS:
        return True
    return _EMAIL_CUE.search(text, max(0, m.start() - _EMAIL_LOOKBACK), m.start()) is not None


# --- one call, in order: numbers split across the caller's turns --------------------------------

# Words that put a caller's next numbers in a card's context (the agent's question counts too).
_CARD_CUE: Final = re.compile(
    r"\b(?:card|credit|debit|visa|master\s?card|amex|american\s+express|discover|maestro|payment|pay|"
    r"paying|billing|long\s+number|expir\w*|cvv|cvc|security\s+code)\b", re.IGNORECASE)
_CONTEXT_INPUTS: Final = 2  # caller inputs a cue covers
_FRAGMENT_MIN: Final = 4  # digits a trailing piece of a card needs before it is masked in a card context
_KEYPAD_FRAGMENT_MIN: Final = 6  # the same for a keypad entry (a card keyed in pieces), context or not
_CARRY_MAX: Final = _CARD_MAX - 1
# What may stand before a number that continues the last turn's ("and then", "keypad", "uh").
_LEAD_IN: Final = re.compile(r"[\s,.:;!?-]*(?:\b[a-z']{1,10}\b[\s,.:;!?-]*){0,4}", re.IGNORECASE)
_TAIL_OUT: Final = re.compile(r"[\s,.:;!?#*-]*(?:\b[a-z']{1,10}\b[\s,.:;!?#*-]*){0,3}", re.IGNORECASE)


def _card_across(before: str, starts: list[int], after: list[str]) -> bool:
    """A Luhn-valid card number that starts where one of the last inputs' numbers began (`starts`, in
    `before`) and ends with a whole group of this input's leading number (`after`, its groups); a
    card's first digit is 2-6 (so a phone number read twice is no card)."""
    ends, total = [], len(before)
    for group in after:
        total += len(group)
        ends.append(total)
    joined = before + "".join(after)
    return any(_CARD_MIN <= end - start <= _CARD_MAX and joined[start] in "23456"
               and luhn_valid(joined[start:end]) for start in starts for end in ends)


class CallRedactor:
    """One call's redaction where it happens (the worker), fed in order: what the caller says or keys
    (`caller`), what the agent says (`agent`), and every other payload (`payload`).

    A card read in pieces ("four one one one ... one one one one" over two turns, or keyed in two
    keypad entries) is no card in either piece alone, so the call's recent caller input is kept: the
    piece that completes a card is masked, and in a card's context (the caller or the agent spoke of a
    card or payment just before) a trailing piece of 4 digits or more is masked before the next turn
    shows it is one, since what was published cannot be taken back.
    """

    def __init__(self, *, pii: bool, keep: Collection[str] = KEEP_KEYS) -> None:
        self.pii = pii
        self.keep = keep
        self._carry = ""  # the digits the caller's last inputs ended with
        self._starts: list[int] = []  # where each of those inputs' piece begins in _carry
        self._carry_card = False  # ... were masked as a piece of a card
        self._context = 0  # caller inputs still in a card's context
        self._after_card = False  # the last input held a card: a short number next is its code
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

    def caller(self, text: str) -> str:
        """One caller input (a turn's transcript, or a keypad entry "keypad 4 1 1 ..."), redacted."""
        if not isinstance(text, str) or not text:
            return text
        runs = list(_runs(text))
        in_context = self._context > 0 or _CARD_CUE.search(text) is not None
        forced: list[tuple[int, int, str]] = []
        lead = runs[0] if runs and _LEAD_IN.fullmatch(text, 0, runs[0][0].start) else None
        lead_digits = "".join(u.digits for u in lead) if lead else ""
        joined = False
        if lead and self._carry and (
                (self._carry_card and len(lead_digits) >= 3)
                or _card_across(self._carry, self._starts, [u.digits for u in lead])):
            forced.append((lead[0].start, lead[-1].end, CARD))
            joined = True
        elif lead and self._after_card and 3 <= len(lead_digits) <= 4 and len(runs) == 1:
            forced.append((lead[0].start, lead[-1].end, CVV))
        tail = runs[-1] if runs and _TAIL_OUT.fullmatch(text, runs[-1][-1].end) else None
        tail_card = joined and tail is lead
        if tail is not None and not tail_card:
            digits = "".join(u.digits for u in tail)
            keypad = text.lstrip().lower().startswith("keypad")
            if ((in_context and len(digits) >= _FRAGMENT_MIN)
                    or (keypad and len(digits) >= _KEYPAD_FRAGMENT_MIN and digits[0] in "23456")):
                forced.append((tail[0].start, tail[-1].end, CARD))
                tail_card = True
        if in_context:  # a card misheard by a digit fails Luhn, and is still a card
            taken = {start for start, _, _ in forced}
            forced += [(run[0].start, run[-1].end, CARD) for run in runs
                       if run[0].start not in taken and sum(len(u.digits) for u in run) >= _CARD_MIN - 1]
        out = redact_text(apply_spans(text, forced), pii=self.pii)
        self._after_card = CARD in out
        self._carry_card = False
        if tail is None:
            self._carry, self._starts = "", []
        else:
            digits = "".join(u.digits for u in tail)
            alone = text[tail[0].start:tail[-1].end]
            whole_card = CARD in redact_text(alone, pii=False)
            if tail is lead and self._carry and not whole_card:  # this input continued the last one's number
                starts = [*self._starts, len(self._carry)]
                digits = self._carry + digits
            else:
                starts = [0]
            cut = max(0, len(digits) - _CARRY_MAX)
            self._carry, self._starts = digits[cut:], [s - cut for s in starts if s >= cut]
            complete = any(_CARD_MIN <= len(self._carry) - at <= _CARD_MAX and luhn_valid(self._carry[at:])
                           for at in self._starts)  # a card ends here: a code may follow, no more card
            self._carry_card = tail_card and not whole_card and not complete
        self._context = _CONTEXT_INPUTS if _CARD_CUE.search(text) else max(0, self._context - 1)
        self._said[text] = out
        if len(self._said) > 32:
            del self._said[next(iter(self._said))]
        return out

    def repeated(self, text: str) -> str:
        """A caller input said before (a turn's report), masked as it was then."""
        if not isinstance(text, str):
            return text
        return self._said.get(text) or redact_text(text, pii=self.pii)

    def agent(self, text: str) -> str:
        """What the agent said: masked like any text, and a question about a card opens its context."""
        if isinstance(text, str) and _CARD_CUE.search(text):
            self._context = _CONTEXT_INPUTS
        return redact_text(text, pii=self.pii) if isinstance(text, str) else text

    def payload(self, obj: Any) -> Any:
        return redact_payload(obj, pii=self.pii, keep=self.keep)

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
    history is read again at every save, so a card completed in a later turn is masked everywhere."""
    r = CallRedactor(pii=pii)
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


class RedactingLogFilter(logging.Filter):
    """Masks card numbers (and with `pii`, e-mails and phone numbers) in every log line it passes."""

    def __init__(self, *, pii: bool = False) -> None:
        super().__init__()
        self.pii = pii

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report
            return True
        clean = redact_text(message, pii=self.pii)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info), pii=self.pii)
        return True


def install_log_redaction(*, pii: bool = False) -> None:
    """Every log record this process makes is masked as it is made (whatever logger or handler): a
    process's entry point calls this once, after configuring logging."""
    old = logging.getLogRecordFactory()
    if getattr(old, "_autospeak_redacting", False):
        return
    filt = RedactingLogFilter(pii=pii)

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old(*args, **kwargs)
        filt.filter(record)
        return record

    factory._autospeak_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
