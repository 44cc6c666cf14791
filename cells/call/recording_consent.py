"""Recording consent where the law asks every party: which numbers need it, and the question itself.

The rules are data (`data/recording_consent.json`: jurisdictions by E.164 prefix, the longest
prefix wins). Where the other party's number falls in an all-party-consent jurisdiction, the agent
asks after its disclosure whether the call may be recorded; the answer is a `recording_consent`
event. "Yes" records the call; "no", no clear answer twice, or a hang-up before answering leave no
recording at all (the sink writes nothing). Elsewhere the disclosure suffices and nothing is asked.
The call loop only calls `after_disclosure` and `caller_turn` (CallSession.hooks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

RULES_PATH: Final = Path(__file__).with_name("data") / "recording_consent.json"
QUESTION: Final = "Do you agree to this call being recorded? Please say yes or no."
AGAIN: Final = "Sorry, I didn't catch that. May we record this call? Please say yes or no."
THANKS: Final = "Thank you. How can I help you?"
NOT_RECORDED: Final = "Okay, this call will not be recorded. How can I help you?"
_YES: Final = re.compile(r"\b(?:yes|yeah|yep|yup|sure|ok|okay|fine|agree|alright|all right|go ahead|"
                         r"of course|certainly|absolutely|that's fine)\b", re.IGNORECASE)
_NO: Final = re.compile(r"\b(?:no|nope|nah|not|don't|dont|do not|rather not|disagree|refuse)\b",
                        re.IGNORECASE)
_E164: Final = re.compile(r"\+[1-9]\d{6,14}")


@dataclass(frozen=True)
class Jurisdiction:
    id: str
    all_party_consent: bool


class RulesError(ValueError):
    """A consent table that cannot be used (the worker refuses to start rather than guess)."""


def load_rules(path: Path = RULES_PATH) -> dict[str, Jurisdiction]:
    """Prefix -> jurisdiction from the table."""
    try:
        doc = json.loads(path.read_text())
        table: dict[str, Jurisdiction] = {}
        for entry in doc["jurisdictions"]:
            j = Jurisdiction(str(entry["id"]), bool(entry["all_party_consent"]))
            for prefix in entry["prefixes"]:
                if not re.fullmatch(r"\+\d{1,8}", prefix):
                    raise RulesError(f"{path}: bad prefix {prefix!r} for {j.id}")
                table[prefix] = j
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RulesError(f"recording consent rules {path} unreadable: {exc}") from exc
    return table


@cache
def default_rules() -> dict[str, Jurisdiction]:
    return load_rules()


Rules = Mapping[str, Jurisdiction]


def jurisdiction_of(number: str | None, rules: Rules | None = None) -> Jurisdiction | None:
    """The jurisdiction of an E.164 number (None: unknown, or no rule for it)."""
    if not isinstance(number, str) or not _E164.fullmatch(number.strip()):
        return None
    number, table = number.strip(), default_rules() if rules is None else rules
    for end in range(min(len(number), 9), 1, -1):
        if number[:end] in table:
            return table[number[:end]]
    return None


def consent_needed(number: str | None, rules: Rules | None = None) -> Jurisdiction | None:
    j = jurisdiction_of(number, rules)
    return j if j is not None and j.all_party_consent else None


def other_party(request: Mapping[str, Any]) -> str | None:
    """The number whose jurisdiction counts: the caller's on an inbound call, the callee's outbound."""
    outbound = str(request.get("direction") or "").startswith("outbound")
    value = request.get("to" if outbound else "from")
    return value if isinstance(value, str) else None


def parse_answer(text: str) -> bool | None:
    yes, no = bool(_YES.search(text)), bool(_NO.search(text))
    return yes if yes != no else None


class RecordingConsent:
    """One call's consent question. `allowed`: None while unanswered, then the caller's answer.
    `on_answer(answer)` with "yes", "no" or "no_answer" (stored with the call's state)."""

    def __init__(self, jurisdiction: Jurisdiction, emit: Callable[[str, dict[str, Any]], None],
                 on_answer: Callable[[str], Any] = lambda answer: None) -> None:
        self.jurisdiction, self.emit, self.on_answer = jurisdiction, emit, on_answer
        self.allowed: bool | None = None
        self._asked = 0

    def after_disclosure(self) -> str | None:
        if self._asked or self.allowed is not None:
            return None
        self._asked = 1
        return QUESTION

    def caller_turn(self, text: str) -> str | None:
        """What the agent says instead of its reply while the question is open; None afterwards."""
        if self.allowed is not None or not self._asked:
            return None
        answer = parse_answer(text)
        if answer is None and self._asked < 2:
            self._asked += 1
            return AGAIN
        self._decide("yes" if answer else ("no" if answer is False else "no_answer"))
        return THANKS if self.allowed else NOT_RECORDED

    def end(self) -> None:
        """The call is over: a question never answered means no recording."""
        if self.allowed is None:
            self._decide("no_answer")

    def _decide(self, answer: str) -> None:
        self.allowed = answer == "yes"
        self.emit("recording_consent", {"jurisdiction": self.jurisdiction.id, "answer": answer,
                                        "recorded": self.allowed})
        self.on_answer(answer)
