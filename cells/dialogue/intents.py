"""What a caller's turn means: intents, yes/no, service, name, phone, date, time, choice of an option.

`understand` is the single entry point the policy uses; `expecting` names the slot the agent just
asked for, which lets bare answers ("nine", "the fifth", "john smith") count without a cue word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from cells.dialogue.catalogue import Catalogue
from cells.dialogue.parsing import MONTHS, TimeRequest, find_date, find_time
from cells.dialogue.saying import WEEKDAYS
from cells.dialogue.spoken import (
    ORDINAL_UNITS,
    TENS,
    UNITS,
    find_phone,
    is_bare_number,
    number_runs,
    tokenize,
)

if TYPE_CHECKING:
    from cells.dialogue.semantic import SemanticReader
    from cells.nlu.intents import IntentMatch

_YES_WORDS = {"yes", "yeah", "yea", "yep", "yup", "ya", "yah", "sure", "correct", "right", "absolutely",
              "definitely", "certainly", "ok", "okay", "perfect", "great", "fine", "alright", "affirmative",
              "exactly", "confirm", "confirmed", "please", "good", "lovely", "awesome", "excellent", "mhm",
              "mmhm", "mmhmm", "uhhuh", "yeh", "aye", "cool", "brilliant", "fab", "fantastic", "super",
              "wonderful", "splendid", "deal", "ideal", "indeed"}
_YES_PHRASES = ("go ahead", "do it", "book it", "sounds good", "that works", "works for me", "uh huh",
                "of course", "mm hmm", "why not", "that one", "please do", "no problem", "not a problem",
                "you bet", "go for it", "the one", "thatll work", "that will work", "that would work",
                "works fine", "works great", "do that", "lets do", "mm hm")
# "cancel" and "change" are not here: "yes cancel it" is a yes; the policy reads them by context.
_NO_WORDS = {"no", "nope", "nah", "not", "dont", "wrong", "incorrect", "negative", "wait", "isnt", "naw",
             "nay", "doesnt", "wont", "cant", "none", "neither"}
_NO_PHRASES = ("hold on", "never mind", "nevermind", "not quite", "thats wrong", "no thanks", "not right",
               "uh uh", "rather not", "no way")
_CLEAR_YES = {"yes", "yeah", "yep", "yup", "yea", "yeh"}
_CLEAR_NO = {"no", "nope", "nah", "naw", "wrong", "incorrect", "wait"}
_UNSURE_PHRASES = ("not sure", "dont know", "no idea", "im unsure")
# Yes answers that contain a no word.
_YES_DESPITE_NO = ("no problem", "not a problem", "why not", "doesnt matter", "dont mind")
# Every word a yes or a no is read from (a recogniser may be held to them when it expects one).
ANSWER_WORDS = frozenset(_YES_WORDS | _NO_WORDS | {w for p in (*_YES_PHRASES, *_NO_PHRASES, *_YES_DESPITE_NO)
                                                    for w in p.split()})

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


_RELATIONS = ("wife", "husband", "son", "daughter", "mother", "mom", "mum", "father", "dad", "kid", "child",
              "partner", "friend", "brother", "sister", "grandmother", "grandma", "grandfather", "grandpa",
              "grandson", "granddaughter", "boyfriend", "girlfriend", "niece", "nephew", "aunt", "uncle",
              "boy", "girl", "baby", "fiance", "fiancee")
_NAME_INTROS = (("my", "name", "is"), ("the", "name", "is"), ("name", "is"), ("names",), ("name",),
                ("this", "is"), ("i", "am"), ("im",), ("call", "me"), ("under",), ("its",), ("it", "is"),
                ("patient",), ("as",), *(("my", r) for r in _RELATIONS))
# Only count when the name was asked for ("its tuesday", "as soon as", "my son has a toothache").
_WEAK_INTROS = {("its",), ("it", "is"), ("under",), ("name",), ("as",), *(("my", r) for r in _RELATIONS)}
_SURNAME_INTROS = (("last", "name"), ("surname",), ("family", "name"), ("second", "name"))
_SELF_NAMED_AFTER = {"here", "calling", "speaking"}  # "john smith here"
_SPELLING_CUES = {"spelled", "spelt", "thats", "spelling", "as", "like"}
_NOT_NAMES = {
    "and", "i", "id", "im", "ill", "my", "number", "numbers", "phone", "mobile", "cell", "please", "thanks",
    "thank", "you",
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
# "perfect" or "sounds great", asked for the name, acknowledges; it names no one.
_NOT_NAMES |= _YES_WORDS | _NO_WORDS | {w for p in _YES_PHRASES + _NO_PHRASES for w in p.split()}
# "im calling to ..." is no name; an explicit list, because King and Manning are.
_NOT_NAMES |= {"under", "surname", "first", "last", "its", "called", "bye", "goodbye", "thanks", "dentist",
               "clinic", "office", "should", "would", "will", "put", "down", "thats", "soon", "possible",
               "spelt", "spelling", "letters", "usually", "has", "sorry", "family", "second",
               "cleaning", "checkup", "filling", "fillings", "whitening", "emergency", "consultation",
               "toothache", "cavity", "exam", "hygienist", "tooth", "teeth"}
# "im open to anything", "im flexible": how the caller is, not who
_NOT_NAMES |= {"open", "flexible", "easy", "happy", "ready", "busy", "away", "out", "off", "back", "late",
               "early", "due", "scared", "nervous", "worried", "afraid", "unsure", "glad", "able", "unable",
               "allergic", "pregnant", "retired", "stuck", "home", "around", "currently", "only", "really",
               "very", "quite", "kind", "pretty", "totally", "after", "before", "up", "free", "pm", "am"}
_VERBS_ING = {"calling", "looking", "trying", "wondering", "hoping", "going", "booking", "asking", "phoning",
              "ringing", "checking", "coming", "getting", "having", "thinking", "wanting", "needing",
              "planning", "speaking", "doing", "making", "scheduling", "cancelling", "canceling", "moving",
              "running", "feeling", "hurting", "waiting", "interesting", "something", "nothing", "anything",
              "morning", "evening", "everything"}
_FILLERS = {"yes", "yeah", "sure", "ok", "okay", "um", "uh", "er", "well", "so", "oh", "its", "it", "is",
            "the", "name", "my", "names", "thats", "hi", "hello", "hey", "yep", "right"}

# A read-back answer that mentions the name is about the name ("no, the name's wrong, it's John Smith").
NAME_CUES = frozenset({"name", "names", "spelled", "spelt", "spell", "surname"})
# "not 12, 11": the correction said the other way round; the comma is all that tells them apart.
_CORRECTION_ORDER = re.compile(r"\bnot\s+(\w+),\s*(\w+)\b", re.IGNORECASE)
_RELATIVE_CHOICES = {"earlier", "later"}
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


def yes_no(tokens: list[str]) -> str | None:
    joined = f" {' '.join(tokens)} "
    if any(_has(joined, p) for p in _UNSURE_PHRASES):
        return None
    for phrase in _YES_DESPITE_NO:  # "no problem" is a yes; "sure why not ... actually no" is not
        joined = joined.replace(f" {phrase} ", " yes ")
    tokens = joined.split()
    if any(t in _NO_WORDS for t in tokens) or any(_has(joined, p) for p in _NO_PHRASES):
        # "Yes, not right." is Whisper's "yes, that's right" as often as a caller's change of mind:
        # an opening yes contradicted only by "not"/"don't" later asks again rather than reads a no.
        if tokens[0] in _CLEAR_YES and not any(t in _CLEAR_NO for t in tokens):
            return None
        return "no"
    if any(t in _YES_WORDS for t in tokens) or any(_has(joined, p) for p in _YES_PHRASES):
        # "yeah but make it eleven" is no plain yes: it agrees with something else
        return None if any(t in ("but", "except") for t in tokens) else "yes"
    return None


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


def _spelled(tokens: list[str], start: int) -> tuple[str, int] | None:
    """A word spelled letter by letter ('r a m a n'), and where the letters end."""
    j = start
    while j < len(tokens) and len(tokens[j]) == 1 and tokens[j].isalpha():
        j += 1
    return ("".join(tokens[start:j]), j) if j - start >= 2 else None


def _name_word(word: str) -> str:
    return "O'" + word[2:].capitalize() if word.startswith("o'") else word.capitalize()


def _collect_name(tokens: list[str], start: int) -> str | None:
    words: list[str] = []
    i = start
    while i < len(tokens) and len(words) < 3:
        tok = tokens[i]
        if (spelled := _spelled(tokens, i)) is not None:
            # "raman r a m a n", or only the letters: the spelling wins over what was heard
            if words and spelled[0] != words[-1]:
                words[-1] = spelled[0]
            elif not words:
                words.append(spelled[0])
            i = spelled[1]
            break
        if tok == "o" and i + 1 < len(tokens) and tokens[i + 1].isalpha() and len(tokens[i + 1]) > 2 and \
                tokens[i + 1] not in _NOT_NAMES:
            words.append("o'" + tokens[i + 1])  # "o connor"
            i += 2
            continue
        if tok in _NOT_NAMES or tok in _VERBS_ING or not tok.isalpha() or len(tok) < 2:
            break
        words.append(tok)
        i += 1
    if words and i < len(tokens) and tokens[i] in _SPELLING_CUES and (spelled := _spelled(tokens, i + 1)):
        words[-1] = spelled[0]  # "its jon spelled j o n"
    return " ".join(_name_word(w) for w in _said_again(words)) or None


def _said_again(words: list[str]) -> list[str]:
    """The name once, when the caller said part of it twice: "Hughes. Laura Hughes." -> Laura Hughes,
    "Laura, Laura Hughes" -> Laura Hughes."""
    words = [w for k, w in enumerate(words) if k == 0 or w != words[k - 1]]
    if len(words) >= 2 and words[-1] in words[:-1]:
        words = words[words.index(words[-1]) + 1:]
    return words


def _surname(tokens: list[str], after: int) -> str | None:
    """'... and my last name is raman', said after the first name."""
    for i in range(after, len(tokens)):
        for intro in _SURNAME_INTROS:
            if tuple(tokens[i:i + len(intro)]) == intro:
                j = i + len(intro) + (1 if tokens[i + len(intro):i + len(intro) + 1] == ["is"] else 0)
                return _collect_name(tokens, j)
    return None


def _name_like(tok: str) -> bool:
    return len(tok) > 1 and tok.isalpha() and tok not in _NOT_NAMES and tok not in _VERBS_ING


def _with_letter(tokens: list[str]) -> str | None:
    """'it's Kowalski with a K', 'Smith with an I': the name said before the letter it starts with."""
    for j in range(1, len(tokens) - 2):
        letter = tokens[j + 2]
        if tokens[j:j + 2] not in (["with", "a"], ["with", "an"]) or len(letter) != 1:
            continue
        k = j
        while k > 0 and j - k < 3 and _name_like(tokens[k - 1]):
            k -= 1
        if k < j and letter in tokens[j - 1]:  # "Kowalski with a K", "Smyth with a Y"
            return " ".join(_name_word(t) for t in tokens[k:j])
    return None


def find_name(tokens: list[str], expecting: bool = False) -> str | None:
    if (lettered := _with_letter(tokens)) is not None:
        return lettered
    for i in range(len(tokens)):
        for intro in _NAME_INTROS:
            if tuple(tokens[i:i + len(intro)]) != intro or (intro in _WEAK_INTROS and not expecting):
                continue
            if (name := _collect_name(tokens, i + len(intro))) is not None:
                if (last := _surname(tokens, i + len(intro))) and last not in name:
                    name = f"{name} {last}"
                return name
    i = 0
    while i < len(tokens) and (tokens[i] in _FILLERS or tokens[i] in ("good", "morning", "afternoon")):
        i += 1
    if not expecting:  # "john smith here", "hi its mary calling about my appointment"
        name = _collect_name(tokens, i)
        end = i + len(name.split()) if name else i
        return name if name and end < len(tokens) and tokens[end] in _SELF_NAMED_AFTER else None
    return _collect_name(tokens, i) or _surname(tokens, 0)


def choose_option(tokens: list[str], count: int) -> int | None:
    """Index of the offered option the caller picked by position ('the first one', 'the later one')."""
    for i, tok in enumerate(tokens):
        if tok in _CHOICE_WORDS:
            if tok in _RELATIVE_CHOICES and not (i and tokens[i - 1] in ("the", "that")):
                continue  # "anything later" asks for other times; "the later one" picks one
            idx = _CHOICE_WORDS[tok]
            idx = count - 1 if idx < 0 else idx
            return idx if idx < count else None
    return None


def _name_expected(tokens: list[str], expecting: str | None) -> bool:
    """Asked for the name, or correcting it at a read-back ('no, the name's wrong, it's john smith')."""
    if expecting == "name":
        return True
    return expecting in ("confirm", "change", "phone") and any(t in NAME_CUES for t in tokens)


def _surface(name: str | None, text: str) -> str | None:
    """The name as the recogniser wrote it when it wrote it capitalised ('O'Connor', 'McDonald')."""
    if not name:
        return name
    written: dict[str, str] = {}
    for w in text.split():
        if "-" not in w:  # "W-H-I-T-E" spells a name; it is not how to write it
            written.setdefault(re.sub(r"[^a-z]", "", w.lower()), w.strip(".,!?;:\""))
    out = []
    for word in name.split():
        surface = written.get(re.sub(r"[^a-z]", "", word.lower()), "")
        out.append(surface if surface[:1].isupper() and
                   re.sub(r"[^a-z]", "", surface.lower()) == re.sub(r"[^a-z]", "", word.lower()) else word)
    return " ".join(out)


def _capitalised_mid_sentence(word: str, text: str) -> bool:
    """Whether the recogniser wrote this word capitalised where a sentence does not start (a name)."""
    words = re.findall(r"[^\s]+", text)
    for k, w in enumerate(words):
        if re.sub(r"[^a-z]", "", w.lower()) != word or not w[:1].isupper():
            continue
        if k and not re.search(r"[.!?]$", words[k - 1]):
            return True
    return False


def _written_name(tokens: list[str], text: str, not_names: set[str]) -> str | None:
    """A name after a weak intro ('it's Anna Kowalski', 'under Tom Baker') that the recogniser wrote
    capitalised: Whisper capitalises names, so 'it's Thursday' or 'it's fine' stay no name."""
    for i in range(len(tokens)):
        for intro in _WEAK_INTROS:
            if tuple(tokens[i:i + len(intro)]) != intro:
                continue
            name = _collect_name(tokens, i + len(intro))
            if name and all(_capitalised_mid_sentence(w.lower(), text) for w in name.split()):
                return name
    # A sentence of its own that is only a capitalised full name: "I need to cancel. John Smith."
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        words = re.findall(r"[A-Za-z'\u2019-]+", sentence)
        if 2 <= len(words) <= 3 and all(w[:1].isupper() for w in words) and sentence.endswith("."):
            name = _collect_name(tokenize(sentence), 0)
            if name and len(name.split()) == len(words) and not set(tokenize(name)) & not_names:
                return name
    return None


def understand(text: str, today: date, clinic: Catalogue, expecting: str | None = None,
               reader: SemanticReader | None = None) -> Understanding:
    """The rules' reading of a turn; with a `reader`, the embedding matcher's where the rules fall short
    (cells.dialogue.semantic: at open questions, and for a service the synonyms miss)."""
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
    u.name = _surface(find_name(tokens, expecting=name_expected), text)
    if u.name is None and not name_expected:
        clinic_words = set(tokenize(f"{clinic.name} {' '.join(clinic.staff)}"))
        u.name = _surface(_written_name(tokens, text, clinic_words), text)
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
