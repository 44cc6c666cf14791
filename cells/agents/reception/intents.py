"""What a booking caller's turn means (the clinic's reader): intents, yes/no, service, name, phone, date,
time. The answers any agent gets (yes/no, a name, a pick among options) are read by the neutral
cells.dialogue.answers; this module adds the requests of a business that takes bookings and the
clinic's own words.

`understand` is the single entry point the policy uses; `expecting` names the slot the agent just
asked for, which lets bare answers ("nine", "the fifth", "john smith") count without a cue word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from cells.dialogue import answers
from cells.dialogue.answers import NAME_CUES, as_written, written_name, yes_no
from cells.dialogue.catalogue import Catalogue
from cells.dialogue.parsing import TimeRequest, find_date, find_time
from cells.dialogue.saying import WEEKDAYS
from cells.dialogue.spoken import find_phone, is_bare_number, number_runs, tokenize

if TYPE_CHECKING:
    from cells.agents.reception.semantic import SemanticReader
    from cells.nlu.intents import IntentMatch


_INTENT_PHRASES: dict[str, tuple[str, ...]] = {
    "move": ("reschedule", "rescheduling", "postpone", "move my", "move the appointment",
             "change my appointment", "change the appointment", "change my booking", "push my",
             "push back my", "move an appointment", "different day for my", "move appointment",
             "change appointment", "switch my", "move it", "reschedule it", "rebook", "re book"),
    "cancel": ("cancel", "cancellation", "cancelling", "canceling", "call off", "get rid of my",
               "take me off", "no longer need",
               "wont need", "dont need my", "dont need the appointment", "dont need that appointment"),
    "human": ("human", "real person", "a person", "receptionist", "operator", "representative",
              "staff", "front desk", "agent", "manager", "live person", "transfer me", "put me through",
              "actual person"),
    "hours": ("hours", "opening time", "opening times", "closing time", "how late", "how early",
              "are you closed", "you closed", "what time do you start", "what time do you finish"),
    "services": ("services", "what do you offer", "do you offer", "what do you do", "treatments",
                 "procedures", "kind of", "what can you do", "do you do", "do you see", "do you take",
                 "do you treat", "do you accept", "do you work with", "do you provide"),
    "price": ("price", "prices", "cost", "costs", "how much", "charge", "fee", "fees", "expensive", "pricing",
              "cheap", "rate", "rates", "set me back", "afford"),
    "duration": ("how long", "how many minutes", "how many hours", "take long"),
    "location": ("where are you", "address", "located", "location", "directions", "parking", "get there",
                 "find you", "where is the", "where is your", "where exactly", "get to you", "to park",
                 "can i park", "what street", "which street", "you near", "whereabouts", "get to the clinic",
                 "you close to", "you close by", "what area", "which area", "part of town",
                 "neighborhood", "neighbourhood",
                 "get to your"),
    "book": ("book", "booking", "appointment", "schedule", "make an", "make a booking", "come in", "get in",
             "set up",
             "reserve", "available", "availability", "openings", "an opening", "anything open",
             "something open", "slot", "see the dentist", "see a dentist", "see doctor", "see dr",
             "see me", "fit me in", "squeeze me in", "get me in", "come by", "pop in", "drop in",
             "anything free", "any free", "got anything", "have anything", "see someone", "see somebody"),
    # Only a booking when a service is named too ("i need a filling", but not "have a good day").
    "book_weak": ("need a", "need an", "want a", "want an", "like a", "like an", "get a", "get an", "have a",
                  "i need", "looking for", "need to", "come for", "in for", "due for", "my teeth",
                  "my tooth", "i have", "ive got", "i got", "is killing"),
    "goodbye": ("bye", "goodbye", "thats all", "thats it", "nothing else", "have a good", "have a nice",
                "that will be all", "thatll be all", "im done", "im good", "all good", "hang up",
                "thats everything", "that is everything", "thatd be it", "that would be it", "thats about it",
                "that will do", "thatll do", "im all set", "were done", "were all set", "all sorted",
                "that is all", "that is it"),
    "thanks": ("thanks", "thank you", "thank", "cheers", "ta", "appreciate it"),
    "abort": ("never mind", "nevermind", "forget it", "forget about it", "scratch that", "dont book",
              "dont want it", "stop"),
    "repeat": ("repeat", "say that again", "come again", "pardon", "what did you say", "one more time",
               "say again", "didnt hear", "didnt catch"),
    # Questions only the front desk can answer.
    "front_desk": ("insurance", "insured", "medicaid", "medicare", "billing", "my bill", "invoice",
                   "payment plan", "finance", "financing", "refund", "x ray results", "my records",
                   "prescription", "my results"),
}

# Rules over word windows, for families of phrasings a phrase list would miss.
_OPEN_WORDS = {"open", "opens", "close", "closes", "closed", "shut", "shuts"}
_HOURS_CUES = {"when", "time", "late", "early", "till", "til", "until", "are", "do", "does", "is", "today",
               "tomorrow", "tonight", "now", "weekend", "weekends", "still", "yet", "usually", "normally"}
_NOT_HOURS_AFTER = {"slot", "slots", "appointment", "appointments", "spot", "spots", "space", "spaces"}
_MOVE_VERBS = {"reschedule", "postpone", "move", "moving", "push", "bump", "shift", "rearrange", "change",
               "changing", "switch", "swap", "delay"}
_NOT_MOVED = {"number", "phone", "name", "address", "email", "mind", "insurance"}  # "change my number"
_MOVE_OBJECTS = {"my", "it", "appointment", "booking", "time", "date", "day", "me", "days", "times", "dates"}
_CANCEL_VERBS = {"scrap", "drop", "delete", "remove", "axe", "ditch"}
_CANCEL_OBJECTS = {"my", "it", "appointment", "booking", "the"}
_DAY_NAMES = set(WEEKDAYS) | {"today", "tomorrow", "next", "the"}
# Said about an existing appointment, these ask for a new time ("i need a different day").
_MOVE_HINTS = ("another day", "another time", "another date", "different day", "different time",
               "different date", "later date", "later time", "earlier time", "instead", "can i come",
               "could i come", "something came up", "rebook", "new time", "new date")
_NEGATIONS = {"cant", "cannot", "wont", "unable", "couldnt", "not"}
_ATTEND = {"make", "come", "coming", "attend", "attending", "keep", "there", "go", "making"}
_SPEAK_VERBS = {"talk", "speak", "speaking", "talking", "chat", "connect", "transfer"}
_PERSON_WORDS = {"someone", "somebody", "anyone", "anybody", "person", "people", "doctor", "dr", "dentist",
                 "human", "receptionist", "nurse", "hygienist"}
_REAL = {"real", "actual", "live", "proper"}
_WHERE_OBJECTS = {"you", "your", "office", "clinic", "practice", "surgery", "building", "located", "park",
                  "based", "situated"}
_PLURAL_DAYS = {f"{d}s" for d in WEEKDAYS} | {"weekends"}
_WEEKDAY_FORMS = set(WEEKDAYS) | {f"{d}s" for d in WEEKDAYS}


# The clinic's words a name reader must not take for a name ("it's a cleaning", "im due a checkup").
CLINIC_NOT_NAMES = frozenset({"dentist", "cleaning", "checkup", "filling", "fillings", "whitening",
                              "toothache", "cavity", "hygienist", "tooth", "teeth"})
_STOP = answers.NOT_NAMES | CLINIC_NOT_NAMES
# "not 12, 11": the correction said the other way round; the comma is all that tells them apart.
_CORRECTION_ORDER = re.compile(r"\bnot\s+(\w+),\s*(\w+)\b", re.IGNORECASE)


@dataclass
class Understanding:
    text: str
    tokens: list[str]
    intents: set[str] = field(default_factory=set)
    answer: str | None = None  # "yes" | "no" | None
    service: str | None = None
    date: date | None = None
    time: TimeRequest | None = None
    name: str | None = None
    phone: str | None = None
    last_date: date | None = None  # a second date in the same turn, when there is one
    bare_weekday: bool = False  # the date was a weekday alone ("friday"), not "next friday" or "the 6th"
    # "book" was read only from a noun ("appointment", "booking"), which move and cancel requests name too
    weak_book: bool = False
    semantic: IntentMatch | None = None  # the embedding matcher's reading, when it was asked

    @property
    def empty(self) -> bool:
        return not self.tokens

    @property
    def has_slots(self) -> bool:
        return any(v is not None for v in (self.service, self.date, self.time, self.name, self.phone))



def _has(joined: str, phrase: str) -> bool:
    return f" {phrase} " in joined


def _near(tokens: list[str], i: int, words: set[str], before: int, after: int) -> bool:
    window = tokens[max(0, i - before):i] + tokens[i + 1:i + after + 1]
    return any(t in words for t in window)


def intent_tokens(tokens: list[str]) -> list[str]:
    """Tokens for intent matching: 'you guys', 'you all', 'yall' read as 'you'."""
    out: list[str] = []
    for tok in tokens:
        if tok in ("guys", "folks", "all", "lot") and out and out[-1] == "you":
            continue
        out.append("you" if tok in ("yall", "youse") else tok)
    return out


def _asks_hours(tokens: list[str], i: int) -> bool:
    """'when do you close on fridays', 'what time does the office open', 'are you open saturdays'."""
    after = tokens[i + 1] if i + 1 < len(tokens) else ""
    before = tokens[i - 1] if i else ""
    if after in _NOT_HOURS_AFTER or before in ("anything", "something", "nothing", "an", "any"):
        return False
    if after in ("to", "by") or any(t in ("whatever", "whichever", "anything", "something") for t in tokens):
        return False  # "are you close to the station", "whatever is open is fine"
    return any(t in _HOURS_CUES or t in _WEEKDAY_FORMS for k, t in enumerate(tokens) if k != i)


def _rule_intents(tokens: list[str]) -> set[str]:
    found: set[str] = set()
    for i, tok in enumerate(tokens):
        if tok in _OPEN_WORDS and _asks_hours(tokens, i):
            found.add("hours")
        # "do you work weekends", "do you do saturdays": days said as a habit ask about the hours
        habit = tok in _PLURAL_DAYS or (tok in _WEEKDAY_FORMS | {"weekend"} and "work" in tokens)
        if habit and tokens[0] in ("do", "are", "does", "is") and "you" in tokens:
            found.add("hours")
        # "can i change the time of my appointment", "i have to bump my appointment"
        if tok in _MOVE_VERBS and any(t in _MOVE_OBJECTS for t in tokens[i + 1:i + 4]) and not any(
                t in _NOT_MOVED for t in tokens[i + 1:i + 5]):
            found.add("move")
        # "i wont be able to make my appointment", "not going to make it", "i cant come tomorrow"
        if tok in _NEGATIONS and any(t in _ATTEND for t in tokens[i + 1:i + 5]) and (
                tok != "not" or tokens[i + 1:i + 2] in (["going"], ["gonna"], ["able"], ["make"], ["come"])):
            found.add("soft_cancel")
        # "is there anyone i can talk to", "can i speak to doctor patel", "someone real"
        if tok in _SPEAK_VERBS and _near(tokens, i, _PERSON_WORDS, 4, 4):
            found.add("human")
        if tok in _PERSON_WORDS and _near(tokens, i, _REAL, 1, 1):
            found.add("human")
        # "scrap my appointment", "delete my booking"
        if tok in _CANCEL_VERBS and any(t in _CANCEL_OBJECTS for t in tokens[i + 1:i + 3]) and any(
                t in ("appointment", "booking", "it", "visit") for t in tokens[i + 1:i + 4]):
            found.add("cancel")
        # "friday instead of tuesday", "i booked tuesday but i need thursday": a new day for an old booking
        if (tok == "instead" and tokens[i + 1:i + 2] == ["of"] and any(
                t in _DAY_NAMES for t in tokens[i + 2:i + 4])) or (
                tok == "but" and any(t in ("booked", "scheduled", "appointment") for t in tokens[:i]) and any(
                    t in WEEKDAYS or t in ("today", "tomorrow") for t in tokens[i + 1:])):
            found.add("move_hint")
        # "where can i park", "wheres your office"
        if tok in ("where", "wheres") and any(t in _WHERE_OBJECTS for t in tokens[i + 1:i + 5]):
            found.add("location")
        # "what does a filling run", "what would a crown run me"
        if tok in ("run", "runs") and (tokens[0] in ("what", "how", "whats") or "much" in tokens):
            found.add("price")
    return found


# "book" read from these alone is a guess: "can i move my appointment" names one as well.
_BOOK_NOUNS = ("appointment", "booking")


def book_from_nouns(tokens: list[str]) -> bool:
    """Whether every cue for "book" in the turn is a noun naming an appointment, none a request for one."""
    joined = f" {' '.join(intent_tokens(tokens))} "
    cues = [p for p in _INTENT_PHRASES["book"] if _has(joined, p)]
    return bool(cues) and all(p in _BOOK_NOUNS for p in cues)


# Words of a question about the rules for a task rather than a request to do it.
_RULE_WORDS = {"policy", "policies", "fee", "fees", "penalty", "notice", "rules", "charged", "charge"}
# ("can i cancel without a fee" stays a request: the cancellation is read back before it is done)
_QUESTION_LEADS = {"what", "whats", "how", "is", "are", "do", "does", "will", "would", "if", "any", "when",
                   "tell"}
_LEAD_FILLERS = {"and", "so", "oh", "um", "uh", "also", "actually", "sorry", "hi", "hello", "quick",
                 "question", "but", "just", "well", "ok", "okay", "yes", "yeah", "by", "the", "way"}


def asks_about_rules(tokens: list[str]) -> bool:
    """Whether the turn asks about the rules of cancelling or moving ("what's your cancellation policy",
    "is there a fee if I cancel", "how much notice do you need") instead of asking to do it."""
    if not any(t in _RULE_WORDS for t in tokens):
        return False
    lead = next((t for t in tokens if t not in _LEAD_FILLERS), "")
    return lead in _QUESTION_LEADS or ("cancellation" in tokens and any(
        t in ("policy", "policies", "fee", "fees", "penalty", "rules") for t in tokens))


def detect_intents(tokens: list[str]) -> set[str]:
    tokens = intent_tokens(tokens)
    joined = f" {' '.join(tokens)} "
    found = {intent for intent, phrases in _INTENT_PHRASES.items() if any(_has(joined, p) for p in phrases)}
    found |= _rule_intents(tokens)
    if "book" in found and any(_has(joined, p) for p in ("anything open", "something open", "an opening")):
        found.discard("hours")
    if "hours" in found and not any(t in ("services", "offer", "treatments", "procedures") for t in tokens):
        found.discard("services")  # "do you do saturdays"
    if "human" in found and _has(joined, "in person") and not any(t in _SPEAK_VERBS for t in tokens):
        found.discard("human")  # "can i pay in person"
    if "move_hint" in found:
        found.discard("move_hint")
        if "cancel" not in found:
            found.add("move")
    hinted = any(_has(joined, h) for h in _MOVE_HINTS)
    if "soft_cancel" in found:
        if "cancel" in found:
            found.discard("soft_cancel")  # the caller said the word: a plain cancellation
        elif "move" in found or hinted:
            found.discard("soft_cancel")  # "i cant make it tuesday, can i come another day"
            found.add("move")
        else:
            found.add("cancel")
    elif hinted and "cancel" not in found and (
            "came" in tokens or ("my" in tokens and any(t in _MOVE_OBJECTS - {"me", "my"} for t in tokens))):
        found.add("move")  # "i need a different time for my appointment", "something came up"
    if "abort" in found and [p for p in _INTENT_PHRASES["abort"] if _has(joined, p)] == ["stop"] and any(
            t in ("instead", "make", "change", "actually", "rather") for t in tokens):
        found.discard("abort")  # "make it stop there instead": a change asked for (the day misheard)
    if ({"cancel", "move"} & found) and asks_about_rules(tokens):
        # "what's your cancellation policy", "is there a fee if i cancel": a question about the rules
        found = (found - {"cancel", "move", "soft_cancel", "price"}) | {"ask_rules"}
    if "duration" in found and not any(t in ("take", "takes", "last", "lasts", "be") for t in tokens):
        found.discard("duration")  # "how long until ..." asks nothing about a visit's length
    return found


def find_service(tokens: list[str], clinic: Catalogue) -> str | None:
    joined = f" {' '.join(tokens)} "
    best: tuple[int, str] | None = None
    for service in clinic.services:
        for phrase in (service.key, *service.synonyms):
            pos = joined.find(f" {phrase.replace('-', ' ')} ")
            if pos >= 0 and (best is None or pos < best[0]):
                best = (pos, service.key)
    return best[1] if best else None



def find_name(tokens: list[str], expecting: bool = False) -> str | None:
    """The neutral name reader with the clinic's words as no names."""
    return answers.find_name(tokens, expecting, CLINIC_NOT_NAMES)


def _name_expected(tokens: list[str], expecting: str | None) -> bool:
    """Asked for the name, or correcting it at a read-back ('no, the name's wrong, it's john smith')."""
    if expecting == "name":
        return True
    return expecting in ("confirm", "change", "phone") and any(t in NAME_CUES for t in tokens)




def understand(text: str, today: date, clinic: Catalogue, expecting: str | None = None,
               reader: SemanticReader | None = None) -> Understanding:
    """The rules' reading of a turn; with a `reader`, the embedding matcher's where the rules fall short
    (cells.agents.reception.semantic: at open questions, and for a service the synonyms miss)."""
    text = _CORRECTION_ORDER.sub(r"\2 not \1", text)  # "not 12, 11" -> "11 not 12": the comma goes
    tokens = tokenize(text)
    u = Understanding(text=text, tokens=tokens)
    if not tokens:
        return u
    u.intents = detect_intents(tokens)
    u.answer = yes_no(tokens)
    u.service = find_service(tokens, clinic)
    if "book_weak" in u.intents:
        u.intents.discard("book_weak")
        if u.service is not None:
            u.intents.add("book")
    u.weak_book = "book" in u.intents and book_from_nouns(tokens)
    joined = f" {' '.join(tokens)} "
    phone_cue = any(_has(joined, p) for p in ("number is", "phone is", "reach me", "call me at", "my number",
                                              "numbers", "cell is", "mobile is", "reach me at"))
    masked: set[int] = set()
    # A number is taken whatever was asked (mixed initiative): with a cue or when asked, any run of
    # seven digits; unasked and without a cue, only a run no date or time could be (is_bare_number).
    phone = find_phone(tokens)
    if phone is not None and (expecting == "phone" or phone_cue or is_bare_number(tokens, phone)):
        u.phone = phone[0]
        masked.update(range(phone[1], phone[2]))  # its digits are no date and no time
    if expecting == "phone":
        masked |= number_runs(tokens)  # half a number is no time either ("five five five for one")
    elif (digits := find_phone(tokens, min_digits=4)) is not None and (
            digits[2] - digits[1] >= 4 or len(digits[0]) >= 5):
        masked.update(range(digits[1], digits[2]))  # "3 4 1 2", "555 0198": a number said early is no time
    name_expected = _name_expected(tokens, expecting)
    u.name = as_written(find_name(tokens, expecting=name_expected), text)
    if u.name is None and not name_expected:
        clinic_words = set(tokenize(f"{clinic.name} {' '.join(clinic.staff)}"))
        u.name = as_written(written_name(tokens, text, clinic_words, _STOP), text)
    if expecting == "phone" and u.phone:
        return u  # the number's turn never changes the agreed day or time ("555-0142, call after 5")
    free = [t if i not in masked else "_" for i, t in enumerate(tokens)]
    if (found := find_date(free, today, expecting=expecting == "date")) is not None:
        u.date, span = found
        masked.update(range(span.start, span.end))
        if span.end - span.start == 1 and tokens[span.start] in WEEKDAYS:
            u.bare_weekday = True
        if (again := find_date(free[span.end:], today)) is not None:  # "tuesday but i need thursday"
            u.last_date = again[0]
            masked.update(range(span.end + again[1].start, span.end + again[1].end))
    if (t := find_time(tokens, expecting=expecting == "time", masked=masked)) is not None:
        u.time = t[0]
    if reader is not None:
        reader.refine(u, clinic, expecting)
        if "ask_rules" in u.intents:  # a question about cancelling is no cancellation, by meaning either
            u.intents -= {"cancel", "move", "soft_cancel"}
    return u
