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
from collections.abc import Collection
from typing import Any, Final

from cells.contract.spoken_numbers import Unit, chains, runs

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

_CARD_MIN, _CARD_MAX = 13, 19
_PHONE_MIN: Final = 7
_CARD_FIRST: Final = "23456"  # a card's first digit (Mastercard 2 and 5, Amex 3, Visa 4, Discover 6)

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
# The words that announce an expiry date, with what may follow before the digits.
_EXPIRY_CUE: Final = re.compile(
    r"\b(?:expir\w*|exp(?:\.|\s+date)?|valid\s+(?:thru|through|until)|good\s+(?:thru|through))"
    r"(?:[\s:,=#-]|\b(?:is|date|on|of|the|it|its|it's|in|at|uh|um|er|date's)\b)*$",
    re.IGNORECASE,
)
_EXPIRY_LOOKBACK: Final = 40
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
    return apply_spans(text, number_spans(text, pii=pii))


def number_spans(text: str, *, pii: bool) -> list[tuple[int, int, str]]:
    """Where `text`'s cards, codes, expiry dates (and with `pii` phone numbers) stand, as labelled spans."""
    found = list(runs(text))
    carded: set[int] = set()  # start offsets of the units that belong to a card
    # "+44 ..." is a phone number as written (E.164); nobody writes a card that way.
    local = [run for run in found if not (run[0].start > 0 and text[run[0].start - 1] == "+")]
    for chain in chains(text, local):
        carded.update(card_units(chain))
    spans: list[tuple[int, int, str]] = []
    for run in found:
        spans.extend(_redact_run(text, run, [u.start in carded for u in run], pii=pii))
    return spans


def card_units(chain: list[list[Unit]], *, first: str = "") -> set[int]:
    """The start offsets of the units of `chain` (runs) that make up a Luhn-valid card of 13-19 digits
    (whole units; a long unit with a card inside it, as keyed or glued by a recogniser, counts whole).
    A card read with words in it starts where one of its runs starts and its first run holds no card
    of its own; it, and one whose digits `first` completes (a caller's earlier input), must start with
    a card's first digit: a phone number and a time next to it are no card."""
    units = [u for run in chain for u in run]
    run_of = [k for k, run in enumerate(chain) for _ in run]
    out: set[int] = set()
    if not first:
        for run in chain:
            out |= _cards_in(run, 0, len(run), lambda d: True)
            for unit in run:
                if len(unit.digits) > _CARD_MIN and any(
                        luhn_valid(unit.digits[a:a + size]) for size in range(_CARD_MIN, _CARD_MAX + 1)
                        for a in range(len(unit.digits) - size + 1)):
                    out.add(unit.start)  # a card keyed or glued to its code
    starts = [0] if first else [i for i in range(len(units))
                                if (i == 0 or run_of[i - 1] != run_of[i])
                                and not any(u.start in out for u in chain[run_of[i]])]
    for i in starts:
        out |= _cards_in(units, i, len(units), lambda d: d[0] in _CARD_FIRST, first=first, only_first=True)
    return out


def _cards_in(units: list[Unit], lo: int, hi: int, ok: Any, *, first: str = "",
              only_first: bool = False) -> set[int]:
    """Start offsets of units[lo:hi] that are in a Luhn-valid 13-19 digit sequence of whole units
    (after `first`'s digits), `ok` with its digits; `only_first`: sequences that start at `lo` only."""
    out: set[int] = set()
    for i in range(lo, lo + 1 if only_first else hi):
        digits = first
        for j in range(i, hi):
            digits += units[j].digits
            if len(digits) > _CARD_MAX:
                break
            if len(digits) >= _CARD_MIN and luhn_valid(digits) and ok(digits):
                out.update(u.start for u in units[i:j + 1])
    return out


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





# --- numbers ------------------------------------------------------------------------------------


def _redact_run(text: str, run: list[Unit], card: list[bool], *, pii: bool) -> list[tuple[int, int, str]]:
    """`run`'s spans: its card units (`card`) as one card each stretch, the rest as plain numbers."""
    spans: list[tuple[int, int, str]] = []
    n, i = len(run), 0
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


def _redact_plain(text: str, units: list[Unit], *, pii: bool) -> list[tuple[int, int, str]]:
    """A stretch of a number that is no card: a security code after its cue, or a phone number."""
    spans: list[tuple[int, int, str]] = []
    start = units[0].start
    for cue, lookback, label, most in ((_CVV_CUE, _CVV_LOOKBACK, CVV, 4),
                                       (_EXPIRY_CUE, _EXPIRY_LOOKBACK, EXPIRY, 6)):
        if units and cue.search(text, max(0, start - lookback), start):
            taken = leading(units, most)
            if taken:
                spans.append((start, units[taken - 1].end, label))
                units = units[taken:]
            break
    if pii and units:
        first, last = units[0].start, units[-1].end
        count = sum(len(u.digits) for u in units)
        if count >= _PHONE_MIN and not _DATE.fullmatch(text, first, last):
            while first > 0 and text[first - 1] in "+(":
                first -= 1
            spans.append((first, last, PHONE))
    return spans


def leading(units: list[Unit], most: int) -> int:
    """How many of `units`' first units hold 3 to `most` digits together (0: too few)."""
    taken, count = 0, 0
    for unit in units:
        if count + len(unit.digits) > most:
            break
        count += len(unit.digits)
        taken += 1
    return taken if count >= 3 else 0


# --- e-mail ---------------------------------------------------------------------------------------


def _redact_emails(text: str) -> str:
    text = _WRITTEN_EMAIL.sub(EMAIL, text)
    return _SPOKEN_EMAIL.sub(lambda m: EMAIL if _is_address(text, m) else m.group(0), text)


def _is_address(text: str, m: re.Match[str]) -> bool:
    if "@" in m.group(0) or m.group("domain").lower() in _MAIL_PROVIDERS:
        return True
    return _EMAIL_CUE.search(text, max(0, m.start() - _EMAIL_LOOKBACK), m.start()) is not None


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
