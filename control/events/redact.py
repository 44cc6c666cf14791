"""Redaction of call text before the control plane stores or sends it.

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

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["CARD", "CVV", "EMAIL", "PHONE", "luhn_valid", "redact_payload", "redact_text"]

CARD: Final = "[card]"
CVV: Final = "[cvv]"
EMAIL: Final = "[email]"
PHONE: Final = "[phone]"

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
    spans: list[tuple[int, int, str]] = []
    for run in _runs(text):
        spans.extend(_redact_run(text, run, pii=pii))
    if not spans:
        return text
    out, last = [], 0
    for start, end, label in sorted(spans):
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
    if key in keep and (isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value))):
        return value  # an identifier, or a list of them (a recording's segment keys)
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
    for m in _TOKEN.finditer(text):
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
