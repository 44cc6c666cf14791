"""Pass rates of the Reception policy on whole conversations and single turns (Whisper-style and word-style).

Run: python -m evals.dialogue.paraphrases          (-v lists every failure with its reason)

A conversation passes when the calendar afterwards holds exactly the bookings it states (name, service,
start, phone), no mutating tool ran more often than it should, no booking was written before the
caller's last line, and the last reply or the transfer is what the caller asked for. A phrasing passes
when `understand` reads every slot it states, as the policy runs it (with the embedding reader of
cells.agents.reception.semantic; rules alone when its model is not installed).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import replace
from datetime import datetime

from cells.agents.reception.clinic import default_clinic
from cells.agents.reception.intents import understand
from cells.agents.reception.semantic import shared_reader
from evals.dialogue.conversations import CONVERSATIONS, FRESH, Conversation
from evals.dialogue.harness import NOW, FakeCall
from evals.dialogue.phrasings import PHRASINGS, Phrasing

MUTATING = ("create_booking", "move_booking", "cancel_booking")


def run_conversation(c: Conversation) -> tuple[FakeCall, list[str]]:
    """Plays the conversation; returns the call and what went wrong (empty when it passed)."""
    call = FakeCall()
    for name, service, start, phone in c.before:
        call.calendar.book(name, service, datetime.fromisoformat(start), phone)
    problems: list[str] = []
    for i, line in enumerate(c.lines):
        call.say(line)
        last = i == len(c.lines) - 1
        if not last and any(call.called(m) for m in MUTATING):
            problems.append(f"a change ran before the last line (after {line!r})")
            break
    got = [(b.name, b.service, b.start.isoformat(timespec="minutes"), b.phone)
           for b in call.calendar.bookings()]
    if got != list(c.calendar):
        problems.append(f"calendar {got} != {list(c.calendar)}")
    runs = sum(len(call.called(m)) for m in MUTATING)
    expected_runs = c.mutations if c.mutations >= 0 else (0 if list(c.calendar) == list(c.before) else 1)
    if runs != expected_runs:
        problems.append(f"{runs} mutating calls, expected {expected_runs}")
    if c.reply_has and c.reply_has not in call.replies[-1]:
        problems.append(f"last reply {call.replies[-1]!r} lacks {c.reply_has!r}")
    if c.transfer != bool(call.transfer.requests):
        requests = call.transfer.requests
        problems.append("transfer expected" if c.transfer else f"unexpected transfer {requests}")
    return call, problems


def check_phrasing(p: Phrasing) -> list[str]:
    u = understand(p.text, NOW.date(), default_clinic(), expecting=p.expecting, reader=shared_reader())
    got = {
        "date": u.date.isoformat() if u.date else None,
        "time": u.time.as_argument() if u.time else None,
        "name": u.name, "phone": u.phone, "service": u.service, "answer": u.answer,
    }
    problems = [f"{k}={got[k]!r}, expected {v!r}" for k, v in p.expect.items()
                if k != "intent" and got[k] != v]
    if "intent" in p.expect and p.expect["intent"] not in u.intents:
        problems.append(f"intents {sorted(u.intents)} lack {p.expect['intent']!r}")
    return problems


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9:' ]", " ", text.lower()).split())


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    by_kind: Counter[str] = Counter()
    passed_kind: Counter[str] = Counter()
    failures: list[str] = []
    for c in CONVERSATIONS:
        _, problems = run_conversation(c)
        by_kind[c.kind] += 1
        passed_kind[c.kind] += not problems
        if problems:
            failures.append(f"conversation {c.id}: " + "; ".join(problems))
    fresh_ok = 0
    for c in FRESH:
        _, problems = run_conversation(c)
        fresh_ok += not problems
        if problems:
            failures.append(f"fresh conversation {c.id}: " + "; ".join(problems))
    # The same calls as an older recogniser writes them: lower case, no punctuation (digits kept).
    plain_ok = sum(not run_conversation(replace(c, lines=tuple(_plain(t) for t in c.lines)))[1]
                   for c in CONVERSATIONS + FRESH)
    phr_ok = 0
    for p in PHRASINGS:
        problems = check_phrasing(p)
        phr_ok += not problems
        if problems:
            failures.append(f"phrasing {p.text!r} ({p.expecting}): " + "; ".join(problems))
    conv_ok = sum(passed_kind.values())
    print(f"conversations: {conv_ok}/{len(CONVERSATIONS)} passed "
          f"({100 * conv_ok / len(CONVERSATIONS):.1f}%)")
    for kind in sorted(by_kind):
        print(f"  {kind:9s} {passed_kind[kind]}/{by_kind[kind]}")
    print(f"fresh conversations (written after the first round of fixes): {fresh_ok}/{len(FRESH)} passed")
    print(f"all {len(CONVERSATIONS + FRESH)} in lower case without punctuation: {plain_ok} passed "
          "(names said without a cue rely on Whisper's capitals)")
    print(f"single turns: {phr_ok}/{len(PHRASINGS)} passed ({100 * phr_ok / len(PHRASINGS):.1f}%)")
    if verbose:
        for f in failures:
            print("FAIL", f)
    elif failures:
        print(f"{len(failures)} failures; -v lists them")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
