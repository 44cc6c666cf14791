"""Dates and times from spoken-form ASR text, relative to a reference 'now'.

Each parser returns the value and the token span it used, so `extract_slots` (in slots.py) can keep
a date word like "fifth" from being read again as a time or a phone digit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta

from cells.dialogue.saying import WEEKDAYS
from cells.dialogue.spoken import HOMOPHONES, TENS, UNITS, parse_cardinal, parse_ordinal, tokenize

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
_WEEKDAY_ALIASES = {"tues": "tuesday", "thurs": "thursday", "wednesdays": "wednesday", "mondays": "monday",
                    "tuesdays": "tuesday", "thursdays": "thursday", "fridays": "friday",
                    "saturdays": "saturday", "sundays": "sunday"}
# An ordinal followed by one of these is a choice among offered slots, not a day of the month.
_NOT_A_DAY_AFTER = {"one", "option", "slot", "available", "time", "thing", "opening", "appointment", "two"}
_TIME_ANCHORS = {"at", "around", "about", "by", "for", "say", "from", "after", "before", "till", "until",
                 "like", "maybe", "how", "make", "is", "or", "earlier", "later", "instead", "then", "be",
                 "to", "try", "prefer", "rather", "want", "do"}
# "make it eleven", "push it to ten": a number after these and "it"/"that" is a time.
_IT_VERBS = {"make", "do", "book", "move", "push", "change", "put", "switch", "have", "shift", "bump"}
_ONE_AS_PRONOUN_AFTER = {"that", "the", "this", "first", "second", "third", "last", "other", "earlier",
                         "later", "either", "no", "any", "which", "a", "every", "each", "another",
                         "earliest", "latest", "soonest", "middle", "final", "early", "late", "next"}


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # exclusive


@dataclass(frozen=True)
class TimeRequest:
    """What the caller said about the time: an exact time, a part of day, or a bound."""

    at: time | None = None
    preference: str | None = None  # "morning" | "afternoon" | "evening" | "after HH:MM" | "before HH:MM"

    def as_argument(self) -> str | None:
        if self.at is not None:
            return self.at.strftime("%H:%M")
        return self.preference


# --- dates --------------------------------------------------------------------------------------------


def _next_weekday(today: date, weekday: int, *, next_week: bool) -> date:
    ahead = (weekday - today.weekday()) % 7 or 7
    result = today + timedelta(days=ahead)
    # "next friday" said on a Monday means the Friday of next week, not this week's.
    if next_week and result.isocalendar()[1] == today.isocalendar()[1]:
        result += timedelta(days=7)
    return result


def _add_month(d: date, months: int) -> tuple[int, int]:
    m = d.month - 1 + months
    return d.year + m // 12, m % 12 + 1


def _day_of_month(today: date, day: int, weekday: int | None) -> date | None:
    """The next date with this day of month (and weekday, if given) on or after today."""
    candidates = []
    for k in range(0, 13):
        y, m = _add_month(today, k)
        try:
            d = date(y, m, day)
        except ValueError:
            continue
        if d >= today:
            candidates.append(d)
    if weekday is not None:
        # Only a near match counts: a far one more likely means the day or the weekday was misheard.
        for d in candidates[:3]:
            if d.weekday() == weekday:
                return d
    return candidates[0] if candidates else None


def _month_day(today: date, month: int, day: int) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            d = date(year, month, day)
        except ValueError:
            return None
        if d >= today:
            return d
    return None


def _month_at(tokens: list[str], i: int) -> int | None:
    if i < len(tokens) and tokens[i] in MONTHS:
        return MONTHS.index(tokens[i]) + 1
    return None


def _day_number(tokens: list[str], i: int) -> tuple[int, int] | None:
    """A day of month as an ordinal or a cardinal ('fifth', 'five', '5th', '5')."""
    return parse_ordinal(tokens, i) or parse_cardinal(tokens, i, max_value=31)


_UNIT_DAYS = {"day": 1, "days": 1, "week": 7, "weeks": 7}


def _count_at(tokens: list[str], i: int) -> tuple[int, int] | None:
    """A small count: 'two', 'a', 'a couple of', 'a few'."""
    for words, value in ((("a", "couple", "of"), 2), (("couple", "of"), 2), (("a", "few"), 3), (("a",), 1)):
        if tuple(tokens[i:i + len(words)]) == words:
            return value, i + len(words)
    return parse_cardinal(tokens, i, max_value=60)


def _relative_date(tokens: list[str], i: int, today: date) -> tuple[date, Span] | None:
    """'in two weeks', 'three days from now', 'a week from tuesday', 'a week today'."""
    n = len(tokens)
    lead_in = tokens[i] == "in"
    got = _count_at(tokens, i + 1 if lead_in else i)
    if got is None or got[1] >= n or tokens[got[1]] not in _UNIT_DAYS:
        return None
    days = got[0] * _UNIT_DAYS[tokens[got[1]]]
    j = got[1] + 1
    after = tokens[j] if j < n else ""
    if after in ("today", "tomorrow") or (after in ("from", "after") and j + 1 < n):
        k = j + 1 if after in ("from", "after") else j
        if tokens[k] in ("now", "today"):
            return today + timedelta(days=days), Span(i, k + 1)
        if (base := find_date(tokens[k:k + 4], today)) is not None and base[1].start == 0:
            return base[0] + timedelta(days=days), Span(i, k + base[1].end)
    if lead_in:
        if after == "or" and (more := parse_cardinal(tokens, j + 1)) is not None:  # "in a week or two"
            j = more[1]
        return today + timedelta(days=days), Span(i, j)
    return None


def _week_phrase(tokens: list[str], i: int, today: date) -> tuple[date, Span] | None:
    """'this week', 'later this week', 'end of the week', 'week after next', 'this weekend', 'next month'."""
    tok = tokens[i]
    prev = tokens[i - 1] if i else ""
    start = i - 1 if prev in ("this", "next", "the", "coming") else i
    monday = today - timedelta(days=today.weekday())
    if tok == "week" and tokens[i + 1:i + 3] == ["after", "next"]:
        return monday + timedelta(days=14), Span(start, i + 3)
    if tok == "week" and prev in ("this", "the") and i >= 3 and tokens[i - 3:i - 1] == ["end", "of"]:
        return max(today, monday + timedelta(days=4)), Span(i - 3, i + 1)
    if tok == "week" and prev == "this":
        later = i >= 2 and tokens[i - 2] in ("later", "end")
        return today + timedelta(days=1 if later else 0), Span(i - 2 if later else start, i + 1)
    if tok in ("weekend", "weekends"):
        if today.weekday() == 5 and prev != "next":
            return today, Span(start, i + 1)
        return _next_weekday(today, 5, next_week=prev == "next"), Span(start, i + 1)
    if tok == "month" and prev == "next":
        y, m = _add_month(today, 1)
        return date(y, m, 1), Span(start, i + 1)
    return None


def _excluded(tokens: list[str], i: int) -> bool:
    """Whether the day at tokens[i] is ruled out: 'not tuesday', 'not on the fifth', 'except monday'."""
    k = i - 1
    while k >= 0 and i - k <= 3 and tokens[k] in ("on", "this", "next", "the", "a"):
        k -= 1
    if k < 0:
        return False
    return tokens[k] in ("not", "except", "besides") or (k >= 1 and tokens[k - 1:k + 1] in (["other", "than"],
                                                                                          ["apart", "from"]))


# Words with which a caller takes back what they just said: "at one, no sorry, at four", "Wednesday, I
# mean Thursday". A date or time said after the last of them wins over one said before it.
_CORRECTIONS = (("no",), ("sorry",), ("actually",), ("i", "mean"), ("rather",), ("make", "that"),
                ("scratch", "that"), ("wait",))


def correction_cut(tokens: list[str]) -> int:
    """The index just after the last correction marker in tokens (0 when there is none). "no later
    than", "no earlier than" are bounds, not corrections; "not" is no marker ("eleven not twelve")."""
    cut = 0
    for i in range(len(tokens)):
        for words in _CORRECTIONS:
            if tuple(tokens[i:i + len(words)]) != words:
                continue
            if words == ("no",) and tokens[i + 1:i + 2] in (["later"], ["earlier"], ["sooner"], ["more"]):
                continue
            cut = i + len(words)
    return cut


def find_date(tokens: list[str], today: date, expecting: bool = False) -> tuple[date, Span] | None:
    """The date expression in tokens: the first after the caller's last correction ("Wednesday, no,
    Friday"), else the first. `expecting` lets a bare ordinal ('the fifth') count."""
    cut = correction_cut(tokens)
    if cut and (found := _find_date_from(tokens, today, expecting, cut)) is not None:
        return found
    return _find_date_from(tokens, today, expecting, 0)


def _find_date_from(tokens: list[str], today: date, expecting: bool, start: int) -> tuple[date, Span] | None:
    n = len(tokens)
    for i in range(start, n):
        tok = _WEEKDAY_ALIASES.get(tokens[i], tokens[i])
        if (tok == "in" or tok in ("a", "couple") or tok in UNITS or tok in TENS or tok.isdigit()) and (
                rel := _relative_date(tokens, i, today)):
            return rel
        if tok in ("week", "weekend", "weekends", "month") and (wk := _week_phrase(tokens, i, today)):
            return wk
        if tok in ("today", "tonight"):
            return today, Span(i, i + 1)
        if tok == "tomorrow":
            if i >= 3 and tokens[i - 3:i] == ["the", "day", "after"]:
                return today + timedelta(days=2), Span(i - 3, i + 1)
            return today + timedelta(days=1), Span(i, i + 1)
        if tok == "week" and i >= 1 and tokens[i - 1] == "next":
            # "sometime next week, ideally wednesday": that weekday of next week, else its monday
            day = next((WEEKDAYS.index(t) for t in tokens if t in WEEKDAYS), 0)
            monday = _next_weekday(today, 0, next_week=False)
            return monday + timedelta(days=day), Span(i - 1, i + 1)
        if tok in WEEKDAYS and not _excluded(tokens, i):  # "wednesday not tuesday", "any day except monday"
            wd = WEEKDAYS.index(tok)
            start = i - 1 if i >= 1 and tokens[i - 1] in ("next", "this", "coming") else i
            # "tuesday the fifth", "tuesday march fifth", "tuesday fifth"
            j = i + 1
            if j < n and tokens[j] == "the":
                j += 1
            month = _month_at(tokens, j)
            if month is not None and (day := _day_number(tokens, j + 1)):
                if (d := _month_day(today, month, day[0])) is not None:
                    return d, Span(start, day[1])
            if (day := parse_ordinal(tokens, j)) and not _is_choice(tokens, day[1]):
                if (d := _day_of_month(today, day[0], wd)) is not None:
                    return d, Span(start, day[1])
            next_week = start < i and tokens[start] == "next"
            end = i + 1
            if tokens[i + 1:i + 3] == ["next", "week"]:  # "friday next week"
                next_week, end = True, i + 3
            return _next_weekday(today, wd, next_week=next_week), Span(start, end)
        if tok.isdigit() and len(tok) <= 2 and (month := _month_at(tokens, i + 1)) is not None:
            if (d := _month_day(today, month, int(tok))) is not None:  # "5 March"
                return d, Span(i, i + 2)
        month = _month_at(tokens, i)
        if month is not None:
            j = i + 1 + (1 if i + 1 < n and tokens[i + 1] == "the" else 0)
            if (day := _day_number(tokens, j)) and (d := _month_day(today, month, day[0])):
                return d, Span(i, day[1])
        if (day := parse_ordinal(tokens, i)) and not _is_choice(tokens, day[1]):
            # "fifth of march", "the fifth march"
            j = day[1] + (1 if day[1] < n and tokens[day[1]] == "of" else 0)
            month = _month_at(tokens, j)
            if month is not None and (d := _month_day(today, month, day[0])):
                return d, Span(i - (1 if i and tokens[i - 1] == "the" else 0), j + 1)
            preceded = i >= 1 and tokens[i - 1] in ("the", "on")
            if preceded or (expecting and tok != "second"):  # "hold on a second" is no date
                if (d := _day_of_month(today, day[0], None)) is not None:
                    return d, Span(i - (1 if preceded else 0), day[1])
    return None


def _is_choice(tokens: list[str], after: int) -> bool:
    return after < len(tokens) and tokens[after] in _NOT_A_DAY_AFTER


def parse_date(text: str, today: date, expecting: bool = False) -> date | None:
    found = find_date(tokenize(text), today, expecting)
    return found[0] if found else None


# --- times --------------------------------------------------------------------------------------------

_PART_OF_DAY = {"morning": "morning", "afternoon": "afternoon", "evening": "evening", "tonight": "evening",
                "lunch": "afternoon", "lunchtime": "afternoon"}


# Words a recogniser writes for an hour ("at free" for "at three" in eSpeak voices over the phone); they
# count only where a time must be (after "at", or before "am"/"pm"/"oclock").
_HOUR_ALIKES = ("to", "too", "for", "won", "ate", "tree", "free")


def _hour_at(tokens: list[str], i: int) -> tuple[int, int] | None:
    if i < len(tokens) and tokens[i] in _HOUR_ALIKES:
        return UNITS[HOMOPHONES.get(tokens[i], "three")], i + 1
    got = parse_cardinal(tokens, i, max_value=24)
    return got


def _minutes_at(tokens: list[str], i: int) -> tuple[int, int] | None:
    if i >= len(tokens):
        return None
    if tokens[i] in ("oh", "o") and (u := parse_cardinal(tokens, i + 1, max_value=9)):
        return u[0], u[1]
    if tokens[i] == "hundred":
        return 0, i + 1
    got = parse_cardinal(tokens, i, max_value=59)
    if got and (got[0] >= 10 or (tokens[i].isdigit() and len(tokens[i]) == 2)):
        return got
    return None


def _meridiem_at(tokens: list[str], i: int) -> tuple[str | None, int]:
    n = len(tokens)
    if i < n and tokens[i] == "oclock":
        i += 1
    if i < n and tokens[i] in ("am", "pm"):
        return tokens[i], i + 1
    if tokens[i:i + 3] == ["in", "the", "morning"]:
        return "am", i + 3
    if tokens[i:i + 3] in (["in", "the", "afternoon"], ["in", "the", "evening"]):
        return "pm", i + 3
    if i < n and tokens[i] in ("tonight",):
        return "pm", i + 1
    return None, i


# Bare hours read as afternoon ones ("at three" is 15:00) by default: an agent whose business opens in
# the daytime sees no one at 3 a.m. An agent open at night passes its own range (or an empty one).
DAYTIME_PM_HOURS = range(1, 8)


def _resolve_hour(hour: int, meridiem: str | None, part: str | None,
                  pm_hours: range = DAYTIME_PM_HOURS) -> int:
    if meridiem == "pm" and hour < 12:
        return hour + 12
    if meridiem == "am":
        return 0 if hour == 12 else hour
    if hour >= 12:
        return hour
    if part in ("afternoon", "evening"):
        return hour + 12
    return hour + 12 if hour in pm_hours else hour


def _anchored(tokens: list[str], i: int) -> bool:
    """Whether the words before tokens[i] make a bare number a time: 'at nine', 'make it nine'."""
    before = tokens[i - 1] if i >= 1 else ""
    two_before = tokens[i - 2] if i >= 2 else ""
    return before in _TIME_ANCHORS or (before in ("it", "that") and two_before in _IT_VERBS) or (
        before == "than" and two_before in ("later", "earlier", "sooner"))  # "no later than four"


def _clock_at(tokens: list[str], i: int, part: str | None,
              expecting: bool, pm_hours: range = DAYTIME_PM_HOURS) -> tuple[time, Span] | None:
    """An explicit clock time starting at tokens[i]."""
    n = len(tokens)
    tok = tokens[i]
    if tok in ("noon", "midday"):
        return time(12, 0), Span(i, i + 1)
    if ":" in tok:
        h, _, m = tok.partition(":")
        if h.isdigit() and m.isdigit() and int(h) <= 23 and int(m) <= 59:
            meridiem, end = _meridiem_at(tokens, i + 1)
            return time(_resolve_hour(int(h), meridiem, part, pm_hours), int(m)), Span(i, end)
        return None
    if tok.isdigit() and len(tok) in (3, 4) and int(tok[-2:]) < 60 and int(tok[:-2]) <= 23:
        meridiem, end = _meridiem_at(tokens, i + 1)
        return time(_resolve_hour(int(tok[:-2]), meridiem, part, pm_hours), int(tok[-2:])), Span(i, end)
    # "half past nine", "quarter to ten", "ten past two", "twenty to three"
    offset: int | None = None
    j = i
    if tok == "half" and i + 1 < n and tokens[i + 1] not in ("past", "after") and (
            h := parse_cardinal(tokens, i + 1, max_value=12)) and h[0] >= 1:
        meridiem, end = _meridiem_at(tokens, h[1])  # "half two": half past two, said the British way
        return time(_resolve_hour(h[0], meridiem, part, pm_hours) % 24, 30), Span(i, end)
    if tok == "half":
        offset, j = 30, i + 1
    elif tok == "quarter":
        offset, j = 15, i + 1
    elif (c := parse_cardinal(tokens, i, max_value=30)) and c[1] < n and tokens[c[1]] in ("past", "after"):
        offset, j = c[0], c[1]
    elif (c := parse_cardinal(tokens, i, max_value=25)) and c[1] < n and tokens[c[1]] in ("to", "till"):
        offset, j = c[0], c[1]
    if offset is not None and j < n and tokens[j] in ("past", "after", "to", "till", "of"):
        sign = 1 if tokens[j] in ("past", "after") else -1
        if tokens[j] == "of" and tok != "quarter":
            return None
        if (h := parse_cardinal(tokens, j + 1, max_value=12)) is None:
            return None
        meridiem, end = _meridiem_at(tokens, h[1])
        hour = _resolve_hour(h[0], meridiem, part, pm_hours)
        total = hour * 60 + sign * offset
        return time(total // 60 % 24, total % 60), Span(i, end)
    hour = _hour_at(tokens, i)
    if hour is None:
        return None
    said_as_time = i + 1 < n and tokens[i + 1] in ("am", "pm", "oclock", "thirty", "fifteen", "forty", "oh")
    if tok == "one" and i >= 1 and tokens[i - 1] in _ONE_AS_PRONOUN_AFTER and not said_as_time:
        return None  # "that one", "the first one" pick an offer; they are no time ("the one pm" is)
    if tok in _HOUR_ALIKES:
        # Homophones count only where a time must be: "at to", "to p m".
        after = tokens[i + 1] if i + 1 < n else ""
        if not ((i >= 1 and tokens[i - 1] == "at") or after in ("am", "pm", "oclock")):
            return None
    minute, j = 0, hour[1]
    explicit = False
    if (m := _minutes_at(tokens, j)) is not None:
        minute, j, explicit = m[0], m[1], True
    meridiem, end = _meridiem_at(tokens, j)
    if end > j:
        explicit = True
    explicit = explicit or tokens[end:end + 1] == ["ish"]  # "nine ish"
    # "eleven not twelve": a number corrected by another is a time
    corrected = tokens[end:end + 1] == ["not"] and parse_cardinal(tokens, end + 1, 24) is not None
    explicit = explicit or corrected
    if not (explicit or _anchored(tokens, i) or expecting):
        return None
    if hour[0] > 12 and meridiem is not None and hour[0] != 12:
        meridiem = None  # "fourteen hundred p m" is still 14:00
    if hour[0] == 0 and not explicit:
        return None
    return time(_resolve_hour(hour[0], meridiem, part, pm_hours) % 24, minute), Span(i, end)


_BOUND_WORDS = {"after": "after", "before": "before", "from": "after", "later": "after", "earlier": "before",
                "sooner": "before"}
# Parts of the day said in more than one word; checked before the single words.
_PART_PHRASES = ((("after", "work"), "evening"), (("end", "of", "the", "day"), "evening"),
                 (("late", "afternoon"), "evening"), (("later", "in", "the", "day"), "afternoon"),
                 (("after", "lunch"), "afternoon"), (("before", "lunch"), "morning"),
                 (("after", "school"), "afternoon"), (("first", "thing"), "morning"),
                 (("early", "afternoon"), "afternoon"), (("late", "morning"), "morning"))


def _bound_before(tokens: list[str], i: int) -> str | None:
    """'after three', 'after like two', 'not before ten', 'no earlier than nine', 'anytime from four'."""
    k = i - 1
    if k >= 0 and tokens[k] in ("like", "about", "around", "say"):
        k -= 1
    if k >= 0 and tokens[k] == "than":
        k -= 1
        if k < 0 or tokens[k] not in ("later", "earlier", "sooner"):
            return None
    elif k >= 0 and tokens[k] in ("later", "earlier", "sooner", "until", "till", "past"):
        return None  # "later at three", "until three" and "past three" are no bounds here
    if k < 0 or tokens[k] not in _BOUND_WORDS:
        return None
    if tokens[k] == "from" and not (k and tokens[k - 1] in ("anytime", "time", "anything", "onwards")) and \
            "onwards" not in tokens[i:i + 3]:
        return None  # "from" alone is no bound ("calling from nine")
    bound = _BOUND_WORDS[tokens[k]]
    if k and tokens[k - 1] in ("not", "no"):  # "not before ten" means after ten
        bound = "after" if bound == "before" else "before"
    return bound


def find_time(tokens: list[str], expecting: bool = False, masked: set[int] | None = None,
              pm_hours: range = DAYTIME_PM_HOURS) -> tuple[TimeRequest, list[Span]] | None:
    """A clock time and/or a part of day ('tomorrow morning', 'after three', 'nine thirty')."""
    masked = masked or set()
    part: str | None = None
    spans: list[Span] = []
    for words, value in _PART_PHRASES:
        for i in range(len(tokens) - len(words) + 1):
            if tuple(tokens[i:i + len(words)]) == words and i not in masked:
                part = value
                spans.append(Span(i, i + len(words)))
                masked = masked | set(range(i, i + len(words)))
                break
        if part:
            break
    for i, tok in enumerate(tokens):
        if part is None and i not in masked and tok in _PART_OF_DAY and not (i and tokens[i - 1] == "good"):
            part = _PART_OF_DAY[tok]
            spans.append(Span(i, i + 1))
            break
    cut = correction_cut(tokens)  # "at one, no sorry, at four": the time after the correction first
    for i in [*range(cut, len(tokens)), *range(cut)]:
        if i in masked:
            continue
        found = _clock_at(tokens, i, part, expecting, pm_hours)
        if found is None or any(k in masked for k in range(found[1].start, found[1].end)):
            continue
        at, span = found
        bound = _bound_before(tokens, i)
        spans.append(span)
        if bound:
            return TimeRequest(preference=f"{bound} {at.strftime('%H:%M')}"), spans
        return TimeRequest(at=at, preference=part), spans
    if part is not None:
        return TimeRequest(preference=part), spans
    for i, tok in enumerate(tokens):
        if tok == "early" and i not in masked and tokens[i + 1:i + 2] not in (["next"], ["this"], ["in"]):
            return TimeRequest(preference="morning"), [Span(i, i + 1)]
    return None


def parse_time(text: str, expecting: bool = False, pm_hours: range = DAYTIME_PM_HOURS) -> TimeRequest | None:
    found = find_time(tokenize(text), expecting, pm_hours=pm_hours)
    return found[0] if found else None
