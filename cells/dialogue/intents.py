"""What a caller's turn means: intents, yes/no, service, name, phone, date, time, choice of an option.

`understand` is the single entry point the policy uses; `expecting` names the slot the agent just
asked for, which lets bare answers ("nine", "the fifth", "john smith") count without a cue word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from cells.dialogue.clinic import WEEKDAYS, ClinicConfig
from cells.dialogue.parsing import MONTHS, TimeRequest, find_date, find_time
from cells.dialogue.spoken import ORDINAL_UNITS, TENS, UNITS, parse_phone, tokenize

_YES_WORDS = {"yes", "yeah", "yea", "yep", "yup", "ya", "yah", "sure", "correct", "right", "absolutely",
              "definitely", "certainly", "ok", "okay", "perfect", "great", "fine", "alright", "affirmative",
              "exactly", "confirm", "confirmed", "please", "good", "lovely", "awesome", "excellent"}
_YES_PHRASES = ("go ahead", "do it", "book it", "sounds good", "that works", "works for me", "uh huh",
                "of course", "mm hmm", "why not", "that one", "please do", "no problem", "not a problem")
# "cancel" and "change" are not here: "yes cancel it" is a yes; the policy reads them by context.
_NO_WORDS = {"no", "nope", "nah", "not", "dont", "wrong", "incorrect", "negative", "wait", "isnt"}
_NO_PHRASES = ("hold on", "never mind", "nevermind", "not quite", "thats wrong", "no thanks", "not right")
_UNSURE_PHRASES = ("not sure", "dont know", "no idea", "im unsure")

_INTENT_PHRASES: dict[str, tuple[str, ...]] = {
    "move": ("reschedule", "rescheduling", "postpone", "move my", "move the appointment",
             "change my appointment", "change the appointment", "change my booking", "push my",
             "push back my", "move an appointment", "different day for my", "move appointment",
             "change appointment", "switch my", "move it", "reschedule it"),
    "cancel": ("cancel", "cancellation", "call off", "cant make it", "wont make it", "not going to make it",
               "cant come", "wont be able to come", "unable to make", "cant make my"),
    "human": ("human", "real person", "a person", "receptionist", "operator", "representative", "someone",
              "somebody", "staff", "front desk", "agent", "manager", "live person", "transfer me"),
    "hours": ("hours", "are you open", "you open", "opening time", "open on", "open tomorrow", "open today",
              "when do you open", "when do you close", "closing", "close today", "closed on",
              "do you close", "you close", "open until", "open till", "open late", "are you closed",
              "you guys open", "you closed"),
    "services": ("services", "what do you offer", "do you offer", "what do you do", "treatments",
                 "procedures", "kind of", "what can you do", "do you do"),
    "price": ("price", "prices", "cost", "costs", "how much", "charge", "fee", "fees", "expensive", "pricing",
              "cheap"),
    "location": ("where are you", "address", "located", "location", "directions", "parking", "get there",
                 "find you", "where is the", "where is your", "where exactly"),
    "book": ("book", "booking", "appointment", "schedule", "make an", "come in", "get in", "set up",
             "reserve", "available", "availability", "openings", "an opening", "anything open",
             "something open", "slot", "see the dentist", "see a dentist", "see doctor", "see dr"),
    # Only a booking when a service is named too ("i need a filling", but not "have a good day").
    "book_weak": ("need a", "need an", "want a", "want an", "like a", "like an", "get a", "get an", "have a",
                  "i need", "looking for", "need to", "come for", "in for"),
    "goodbye": ("bye", "goodbye", "thats all", "thats it", "nothing else", "have a good", "have a nice",
                "that will be all", "thatll be all", "im done", "im good", "all good", "hang up"),
    "thanks": ("thanks", "thank you", "thank"),
    "abort": ("never mind", "nevermind", "forget it", "forget about it", "scratch that", "dont book",
              "dont want it", "stop"),
    "repeat": ("repeat", "say that again", "come again", "pardon", "what did you say", "one more time",
               "say again", "didnt hear", "didnt catch"),
}

_NAME_INTROS = (("my", "name", "is"), ("the", "name", "is"), ("name", "is"), ("names",), ("name",),
                ("this", "is"), ("i", "am"), ("im",), ("call", "me"), ("under",), ("its",), ("it", "is"))
_WEAK_INTROS = {("its",), ("it", "is"), ("under",), ("name",)}  # only count when the name was asked for
_NOT_NAMES = {
    "and", "i", "id", "im", "ill", "my", "number", "phone", "please", "thanks", "thank", "you",
    "calling", "to", "for", "about", "from", "here", "a", "an", "the", "want", "would", "like", "need",
    "book", "booking", "appointment", "speaking", "yes", "yeah", "no", "okay", "ok", "with", "at", "on",
    "in", "is", "its", "but", "so", "um", "uh", "er", "just", "also", "again", "that", "this", "today",
    "tomorrow", "sure", "well", "oh", "hi", "hello", "hey", "free", "available", "interested", "sorry",
    "good", "fine", "not", "still", "new", "patient", "going", "looking", "trying", "wondering",
    "hoping", "name", "me", "it", "be", "was", "am", "of", "can", "could", "do", "does", "have", "has",
    "had", "we", "our", "your", "they", "morning", "afternoon", "evening", "next", "last", "right",
    "correct", "actually", "spelled", "spell", "booked", "mister", "missus", "miss", "mr", "mrs", "ms",
    "doctor", "dr", "call", "called", "as", "if", "or", "what", "who", "when", "where", "why", "how",
    "there", "then", "time", "day", "week", "month", "all", "set", "great",
}
_NOT_NAMES |= set(WEEKDAYS) | set(MONTHS) | set(UNITS) | set(TENS) | set(ORDINAL_UNITS)
# "im calling to ..." is no name; an explicit list, because King and Manning are.
_NOT_NAMES |= {"under", "surname", "first", "last", "its", "called", "bye", "goodbye", "thanks", "dentist",
               "clinic", "office", "should", "would", "will"}
_VERBS_ING = {"calling", "looking", "trying", "wondering", "hoping", "going", "booking", "asking", "phoning",
              "ringing", "checking", "coming", "getting", "having", "thinking", "wanting", "needing",
              "planning", "speaking", "doing", "making", "scheduling", "cancelling", "canceling", "moving",
              "running", "feeling", "hurting", "waiting", "interesting", "something", "nothing", "anything",
              "morning", "evening", "everything"}
_FILLERS = {"yes", "yeah", "sure", "ok", "okay", "um", "uh", "er", "well", "so", "oh", "its", "it", "is",
            "the", "name", "my", "names", "thats", "hi", "hello", "hey", "yep", "right"}

_CHOICE_WORDS = {"first": 0, "earliest": 0, "earlier": 0, "former": 0, "second": 1, "middle": 1, "third": 2,
                 "last": -1, "latest": -1, "later": -1, "latter": -1, "either": 0, "any": 0, "whichever": 0}


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

    @property
    def empty(self) -> bool:
        return not self.tokens

    @property
    def has_slots(self) -> bool:
        return any(v is not None for v in (self.service, self.date, self.time, self.name, self.phone))


def _has(joined: str, phrase: str) -> bool:
    return f" {phrase} " in joined


def yes_no(tokens: list[str]) -> str | None:
    joined = f" {' '.join(tokens)} "
    if any(_has(joined, p) for p in _UNSURE_PHRASES):
        return None
    if any(_has(joined, p) for p in ("no problem", "not a problem", "why not")):
        return "yes"
    if any(t in _NO_WORDS for t in tokens) or any(_has(joined, p) for p in _NO_PHRASES):
        return "no"
    if any(t in _YES_WORDS for t in tokens) or any(_has(joined, p) for p in _YES_PHRASES):
        return "yes"
    return None


def detect_intents(tokens: list[str]) -> set[str]:
    joined = f" {' '.join(tokens)} "
    found = {intent for intent, phrases in _INTENT_PHRASES.items() if any(_has(joined, p) for p in phrases)}
    if "book" in found and any(_has(joined, p) for p in ("anything open", "something open", "an opening")):
        found.discard("hours")
    return found


def find_service(tokens: list[str], clinic: ClinicConfig) -> str | None:
    joined = f" {' '.join(tokens)} "
    best: tuple[int, str] | None = None
    for service in clinic.services:
        for phrase in (service.key, *service.synonyms):
            pos = joined.find(f" {phrase.replace('-', ' ')} ")
            if pos >= 0 and (best is None or pos < best[0]):
                best = (pos, service.key)
    return best[1] if best else None


def _collect_name(tokens: list[str], start: int) -> str | None:
    words: list[str] = []
    for tok in tokens[start:start + 3]:
        if tok in _NOT_NAMES or tok in _VERBS_ING or not tok.isalpha() or len(tok) < 2:
            break
        words.append(tok)
    return " ".join(w.capitalize() for w in words) or None


def find_name(tokens: list[str], expecting: bool = False) -> str | None:
    for i in range(len(tokens)):
        for intro in _NAME_INTROS:
            if tuple(tokens[i:i + len(intro)]) != intro or (intro in _WEAK_INTROS and not expecting):
                continue
            if (name := _collect_name(tokens, i + len(intro))) is not None:
                return name
    if expecting:
        i = 0
        while i < len(tokens) and tokens[i] in _FILLERS:
            i += 1
        return _collect_name(tokens, i)
    return None


def choose_option(tokens: list[str], count: int) -> int | None:
    """Index of the offered option the caller picked by position ('the first one', 'the later one')."""
    for tok in tokens:
        if tok in _CHOICE_WORDS:
            idx = _CHOICE_WORDS[tok]
            idx = count - 1 if idx < 0 else idx
            return idx if idx < count else None
    return None


def understand(text: str, today: date, clinic: ClinicConfig, expecting: str | None = None) -> Understanding:
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
    joined = f" {' '.join(tokens)} "
    phone_cue = any(_has(joined, p) for p in ("number is", "phone is", "reach me", "call me at", "my number",
                                              "cell is", "mobile is"))
    if expecting == "phone" or phone_cue:
        u.phone = parse_phone(text)
    u.name = find_name(tokens, expecting=expecting == "name")
    if u.phone is None:  # the digits of a phone number would otherwise read as a date and a time
        masked: set[int] = set()
        if (found := find_date(tokens, today, expecting=expecting == "date")) is not None:
            u.date, span = found
            masked.update(range(span.start, span.end))
        if (t := find_time(tokens, expecting=expecting == "time", masked=masked)) is not None:
            u.time = t[0]
    return u
