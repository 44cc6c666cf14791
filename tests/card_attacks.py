"""Attacks on card redaction: callers reading or keying a card number in every way a person (and a
recogniser) might, and a scanner that finds a card's digits in whatever a store kept.

A scenario is a list of steps: ("agent", text) the agent's words before the caller's next input,
("say", text) a caller turn as the recogniser wrote it, ("keys", digits) keypad presses ("#" ends an
entry). The scanner reads digits as written and as spoken ("four five", "oh", "double eight",
"forty-five"), with separators between them, and reports any run of 4 digits or more that is a piece
of the card, and any Luhn-valid 13-19 digit number starting like a card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VISA = "4539148803436467"
MASTERCARD = "5425233430109903"
AMEX = "374245455400126"
CARDS = (VISA, MASTERCARD, AMEX)
PHONE = "2025550143"  # a US number: 10 digits starting with 2, as a card piece would
WORDS = "zero one two three four five six seven eight nine".split()
TENS = {"2": "twenty", "3": "thirty", "4": "forty", "5": "fifty", "6": "sixty", "7": "seventy",
        "8": "eighty", "9": "ninety"}
TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()


def spoken(digits: str, zero: str = "zero") -> str:
    return " ".join(zero if d == "0" else WORDS[int(d)] for d in digits)


def pairs(digits: str) -> str:
    """Read two digits at a time as numbers ("forty-five thirty-nine"), a single "oh" for a leading 0."""
    out = []
    for i in range(0, len(digits), 2):
        a, b = digits[i], digits[i + 1:i + 2]
        if not b:
            out.append(WORDS[int(a)])
        elif a == "0":
            out.append(f"oh {WORDS[int(b)]}")
        elif a == "1":
            out.append(TEENS[int(b)])
        else:
            out.append(TENS[a] + ("" if b == "0" else f"-{WORDS[int(b)]}"))
    return " ".join(out)


def groups(digits: str, sep: str = " ", size: int = 4) -> str:
    return sep.join(digits[i:i + size] for i in range(0, len(digits), size))


@dataclass
class Scenario:
    name: str
    steps: list[tuple[str, str]]
    card: str = VISA
    secrets: list[str] = field(default_factory=list)  # other strings no store may keep (code, expiry)
    # A phone number (digits) the caller gave that must survive redaction where phone numbers are kept.
    keep: str | None = None
    # The first piece is read as a phone number is, with no card in sight: the brain hears it (and may act
    # on it) before the next input shows it is a card's; what is kept is still masked.
    looks_like_a_phone_first: bool = False


ASK = ("agent", "Sure, what is the long number on your card?")

SCENARIOS = [
    Scenario("spoken groups", [ASK, ("say", ", ".join(spoken(g) for g in groups(VISA).split()))]),
    Scenario("oh and double", [("say", "my card is " + spoken(VISA[:6], "oh") + " double eight "
                                + spoken(VISA[8:], "oh"))]),
    Scenario("tens", [("say", "card number " + pairs(VISA))]),
    Scenario("whisper digits", [("say", f"My card number is {groups(VISA)}.")]),
    Scenario("whisper dashes", [("say", f"Yeah it's {groups(VISA, '-')}")]),
    Scenario("whisper full stops", [ASK, ("say", groups(VISA, ". ") + ".")]),
    Scenario("thousands commas", [ASK, ("say", "It's " + " ".join(f"{g[0]},{g[1:]}"
                                                                  for g in groups(VISA).split()))]),
    Scenario("mixed words and digits", [("say", f"card is four five 39 14 eight eight {groups(VISA[8:])}")]),
    Scenario("fillers and no cue", [("say", f"um {spoken(VISA[:4])} uh {spoken(VISA[4:8])} you know "
                                            f"{spoken(VISA[8:12])} like {spoken(VISA[12:])}")]),
    Scenario("glued", [("say", f"it is {VISA}")]),
    Scenario("misheard cue and stray letters after a card", [
        ("say", f"my card is {groups(VISA)}"), ("say", f"My current number in 3 M{AMEX[4:8]} {AMEX[8:14]}")],
             card=AMEX),
    Scenario("amex", [("say", f"my amex is {AMEX[:4]} {AMEX[4:10]} {AMEX[10:]}")], card=AMEX),
    Scenario("split with cue", [("say", f"my card number is {groups(VISA[:8])}"), ("say", groups(VISA[8:]))]),
    Scenario("split no cue", [("say", f"it's {groups(VISA[:8])}"), ("say", groups(VISA[8:]))]),
    Scenario("split no cue, read as a phone number", [("say", f"it's {VISA[:3]} {VISA[3:6]} {VISA[6:10]}"),
                                                     ("say", f"{VISA[10:]}")],
             looks_like_a_phone_first=True),
    Scenario("split in three spoken", [("say", "I'd like to pay by card"),
                                       ("say", spoken(VISA[:6])), ("say", spoken(VISA[6:11])),
                                       ("say", "and " + spoken(VISA[11:]))]),
    Scenario("split after the agent asked", [ASK, ("say", groups(VISA[:4])), ("say", groups(VISA[4:8])),
                                             ("say", groups(VISA[8:12])), ("say", groups(VISA[12:]))]),
    Scenario("keypad whole", [ASK, ("keys", VISA + "#")]),
    Scenario("keypad no cue", [("keys", VISA + "#")]),
    Scenario("keypad halves", [("keys", VISA[:8] + "#"), ("keys", VISA[8:] + "#")], card=VISA),
    Scenario("keypad with stars", [ASK, ("keys", "*".join(groups(VISA).split()) + "#")]),
    Scenario("keypad digit by digit", [ASK, *[("keys", d + "#") for d in MASTERCARD]], card=MASTERCARD),
    Scenario("expiry and code", [("say", f"my card is {groups(MASTERCARD)}"),
                                 ("say", "expiry oh nine twenty-eight"),
                                 ("say", "and the security code is seven three one")],
             card=MASTERCARD, secrets=["0928", "09/28", "oh nine twenty-eight", "731", "seven three one"]),
    Scenario("card, expiry and code in one breath",
             [("say", f"the card is {groups(MASTERCARD)}, expiry 0928, code 731")],
             card=MASTERCARD, secrets=["0928", "731"]),
    Scenario("expiry and code unlabelled", [ASK, ("say", groups(MASTERCARD)),
                                            ("say", "oh nine twenty-eight"), ("say", "seven three one")],
             card=MASTERCARD, secrets=["0928", "oh nine twenty-eight", "731", "seven three one"]),
]

PHONE_SCENARIOS = [
    Scenario("keyed phone after the agent asked", [("agent", "What is the best phone number to reach you?"),
                                                   ("keys", PHONE + "#")], keep=PHONE),
    Scenario("spoken phone", [("say", f"my number is {PHONE[:3]} {PHONE[3:6]} {PHONE[6:]}")], keep=PHONE),
    Scenario("phone after a card", [("say", f"my card is {groups(VISA)}"),
                                    ("say", f"and my phone number is {PHONE[:3]} {PHONE[3:6]} {PHONE[6:]}")],
             keep=PHONE),
    Scenario("a number that is no card", [("say", f"the reference is {groups(VISA[:-1] + '8')}")],
             keep=VISA[:-1] + "8"),
]


# --- the scanner -------------------------------------------------------------------------------------

_WORD_DIGIT = {w: str(i) for i, w in enumerate(WORDS)} | {"oh": "0", "o": "0"}
_TENS_WORD = {v: k for k, v in TENS.items()}
_TEEN = {w: str(10 + i) for i, w in enumerate(TEENS)}
_PIECE = re.compile(r"[a-z]+|\d+", re.IGNORECASE)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
# A trace's span or trace id (W3C: 16 or 32 hex digits, the value of a "..._id" key): random, so its digits
# say nothing of a card (a span id "5525316266908cdf" once held 13 digits that pass Luhn). Only a value that
# has a hex letter: a run of digits alone is kept, whatever its key.
_HEX_ID = re.compile(r'(?<=_id": ")(?=[0-9]*[a-f])(?:[0-9a-f]{32}|[0-9a-f]{16})(?=")')
_DECIMAL = re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])")
_DIGITS = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
_SEPARATOR = re.compile(r"^[\s,.\-*#()_;/\\\"']*$")  # not ":": "10:00" is a time


def digit_runs(text: str) -> list[str]:
    """Every run of digits in `text`, written or spoken, with separators (not words) between them."""
    return [run for run, _ in located_runs(text)]


def located_runs(text: str) -> list[tuple[str, int]]:
    """digit_runs with where each run starts in `text`."""
    out: list[tuple[str, int]] = []
    run, prev_end, double, start = "", -1, 1, 0
    for m in _PIECE.finditer(text):
        piece = m.group().lower()
        digits = None
        glued = (m.start() > 0 and text[m.start() - 1].isalpha()) or text[m.end():m.end() + 1].isalpha()
        if piece.isdigit() and not glued:  # "e34306cc" is a hash, not a number
            digits = piece
        elif piece in _WORD_DIGIT:
            digits = _WORD_DIGIT[piece]
        elif piece in _TEEN:
            digits = _TEEN[piece]
        elif piece in _TENS_WORD:
            digits = _TENS_WORD[piece] + "0"
        elif piece in ("double", "triple"):
            double = 2 if piece == "double" else 3
            prev_end = m.end()
            continue
        joined = prev_end >= 0 and _SEPARATOR.match(text[prev_end:m.start()]) is not None
        if digits is None:
            if run:
                out.append((run, start))
            run, prev_end, double = "", -1, 1
            continue
        if not joined and run:
            out.append((run, start))
            run = ""
        if not run:
            start = m.start()
        if piece in _WORD_DIGIT and run.endswith("0") and len(run) >= 1 and _is_tens_end(text, prev_end):
            run = run[:-1]  # "forty-five": the tens word's 0 gives way to the unit
        run += digits[0] * (double - 1) + digits
        double, prev_end = 1, m.end()
    if run:
        out.append((run, start))
    return out


def _is_tens_end(text: str, end: int) -> bool:
    start = end
    while start > 0 and text[start - 1].isalpha():
        start -= 1
    return text[start:end].lower() in _TENS_WORD and text[end:end + 1] in "- "


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def leaks(blob: str | bytes, card: str, secrets: list[str] = (), where: str = "") -> list[str]:  # type: ignore[assignment]
    """What of `card` (any piece of 4 digits or more) or of `secrets`, or any card at all, `blob` holds."""
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    text = _UUID.sub("<id>", text)  # random ids: their digit groups say nothing of a card
    text = _HEX_ID.sub("<id>", text)
    text = _DECIMAL.sub("<n>", text)  # a measure ("0.012"), not "4539.1488.0343.6467"
    found = []
    located = located_runs(text)
    runs = [run for run, _ in located]
    for run, at in located:
        # A short number that is a JSON value or a fraction's digits is a duration or a time, not speech.
        before = text[max(0, at - 2):at]
        measure = len(run) < 6 and before.endswith((":", ": ", "."))
        if ((len(run) >= 4 and run in card and not measure)
                or any(run[a:a + 8] in card for a in range(len(run) - 7))):
            found.append(f"{where}: card piece {run} near {text[max(0, at - 50):at + 30]!r}")
    for m in _DIGITS.finditer(text):  # any other card: 13-19 digits in a row, starting like a card
        if m.group()[0] in "23456" and luhn(m.group()) and not text[max(0, m.start() - 1):m.start()] == ".":
            near = text[max(0, m.start() - 40):m.end() + 10]
            found.append(f"{where}: a card-like number {m.group()} in {near!r}")
    lowered = text.lower()
    found += [f"{where}: {s!r}" for s in secrets
              if (s in runs if s.isdigit() else s.lower() in lowered)]
    return found
