"""The Reception state machine: one caller turn or one tool result in, what to say and call out.

Deterministic code decides everything; in particular a mutating tool (create, move or cancel a
booking) is emitted only from `_confirmed`, which runs only when the agent's last question was the
read-back of exactly the current details and the caller's answer was a plain yes with no changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from cells.agents.reception.clinic import WEEKDAYS, ClinicConfig, spoken_hours
from cells.agents.reception.intents import Understanding, find_name, understand
from cells.agents.reception.questions import FreeQuestionSteps
from cells.agents.reception.replies import (
    booking_phrase,
    duration_sentence,
    hours_sentence,
    location_sentence,
    price_sentence,
    say_date,
    say_hhmm,
    say_phone,
    say_slots,
    service_name,
    services_sentence,
)
from cells.agents.reception.results import ToolResultSteps
from cells.agents.reception.semantic import SemanticReader
from cells.agents.reception.state import Action, Call, DialogueState, Say
from cells.dialogue.answers import NAME_CUES, choose_option
from cells.dialogue.knowledge_answer import is_question
from cells.dialogue.parsing import MONTHS
from cells.dialogue.spoken import find_phone, parse_phone, tokenize

_SOON = ("as soon as", "soonest", "earliest", "asap", "first available", "next available", "right away",
         "whenever", "any day", "anyday", "any time", "anytime", "whatever works", "whatever you have",
         "dont mind", "doesnt matter", "no preference", "im flexible", "first thing you have")
_SLOT_WORDS = {"time": ("time", "hour"), "date": ("day", "date"), "service": ("service", "treatment", "type"),
               "name": ("name",), "phone": ("phone", "number")}
_DECLINE = ("rather not", "skip", "dont have", "no phone", "not now", "no number", "same number",
            "this number", "calling from", "on file", "you have it", "already have", "same one", "this one",
            "you have my", "youve got", "use this", "same as", "the one im", "one on file", "prefer not",
            "dont want to give", "not necessary", "no need")
_GREETINGS = {"hi", "hello", "hey", "hiya", "morning", "afternoon", "evening", "good", "there", "yes", "yeah"}
_ASK_OPTIONS = ("what times", "what time", "what do you have", "whats available", "what is available",
                "anything available", "what have you got", "when are you free", "whats free", "options")
_DAY_WORDS = {*WEEKDAYS, *MONTHS, "today", "tomorrow"}
_TRANSFER_QUESTION = "Would you like me to transfer you to"
_ASKS_HOURS = {"hours", "when", "late", "early", "close", "closes", "closing", "shut", "until", "till"}
# Asked again after a turn not understood: more specifically, with another way to give it.
_REASK = {"phone": "Could you say the number again, digit by digit, or type it on your keypad?",
          "name": "Could you say your name again, or spell it for me?"}
_INFO_INTENTS = frozenset({"price", "hours", "services", "location", "duration"})
# Digits heard for a number that is still short: from this many on, a digit was likely missed (the
# caller said the whole number), below it the caller paused inside it.
_ALMOST_A_NUMBER = 5
# At a read-back, a yes with one of these is no plain yes: "yeah but make it eleven".
_CHANGE_WORDS = ("change", "wrong", "different", "mistake", "but", "instead", "except")


def _same_week(said: date, agreed: str, today: date) -> date:
    """A weekday alone, said once a date is agreed, means that weekday in the agreed date's week."""
    current = date.fromisoformat(agreed)
    candidate = current + timedelta(days=said.weekday() - current.weekday())
    return candidate if candidate > today else said  # today is said "today"; "monday" then is next week's


def _corrected_name(current: str | None, said: str) -> str:
    """A one-word correction replaces the word of the name it resembles most ('Kowalski' for 'Cowalski')."""
    words = (current or "").split()
    if len(said.split()) > 1 or len(words) < 2:
        return said
    scores = [difflib.SequenceMatcher(None, said.lower(), w.lower()).ratio() for w in words]
    best = max(range(len(words)), key=lambda k: scores[k])
    words[best if scores[best] >= 0.5 else -1] = said
    return " ".join(words)


_CHANGE_CUES = frozenset({"instead", "change", "actually", "rather", "move", "earlier", "later", "am", "pm",
                          "oclock", *WEEKDAYS, "tomorrow", "today"})


def _changes_slot(text: str) -> bool:
    """Whether a turn answering the number asks to change the day or time instead ("actually, can we
    make it 11 30 instead?", "Monday at 2 pm"): its numbers are then a time, not digits of the number."""
    tokens = tokenize(text)
    if set(tokens) & {"number", "phone", "mobile", "cell"} or find_phone(tokens) is not None:
        return False  # "555-0142, reach me at 4pm": the number, and when to call it
    return bool(set(tokens) & _CHANGE_CUES)


def _names_itself(u: Understanding, agreed: str) -> bool:
    """Whether a turn that was not asked for the name corrects it on purpose ("my name's ...", "the name
    is wrong, it's ...", "no, it's Laura Hughes", "Kowalski with a K", a word of the agreed name said
    again): capitalised words the recogniser wrote in a turn about something else ("It's Pound Stod"
    for "sounds good") never replace the name already agreed."""
    said = {w.lower() for w in (u.name or "").split()}
    return (bool(set(u.tokens) & (NAME_CUES | _CORRECTING)) or u.answer == "no"
            or find_name(u.tokens) is not None or bool(said & {w.lower() for w in agreed.split()}))


_CORRECTING = frozenset({"actually", "sorry", "not", "instead", "mean"})


class ReceptionSteps(ToolResultSteps, FreeQuestionSteps):
    def __init__(self, clinic: ClinicConfig, clock: Callable[[], datetime], *, ask_phone: bool = True,
                 max_failures: int = 3, reader: SemanticReader | None = None) -> None:
        self.clinic = clinic
        self.reader = reader  # reads by meaning where the rules fall short; None: rules only
        self.clock = clock
        self.ask_phone = ask_phone
        self.max_failures = max_failures

    @property
    def today(self) -> date:
        return self.clock().date()

    # --- entry points ---------------------------------------------------------------------------------

    def greeting(self, s: DialogueState) -> list[Action]:
        s.expecting = "intent"
        s.last_prompt = "How can I help you today?"
        return [Say(f"Thank you for calling {self.clinic.name}."), Say(s.last_prompt)]

    def on_user(self, s: DialogueState, text: str) -> list[Action]:
        expect = "time" if s.expecting in ("choose", "change") else s.expecting
        if s.expecting == "phone" and _changes_slot(text):
            expect = None  # "can we make it 11 30 instead", asked for the number: a time, not digits
        begun = (s.phone_start or "") if expect == "phone" else ""
        s.phone_start = None
        if begun and not (len(begun) >= _ALMOST_A_NUMBER and parse_phone(text)):
            text = f"{begun} {text}"  # the rest of a number begun last turn (not the whole number again)
        u = understand(text, self.today, self.clinic, expecting=expect, reader=self.reader)
        part = find_phone(u.tokens, min_digits=3) if expect == "phone" and not u.phone else None
        if part and len(part[0]) > len(begun):  # new digits, not a repeat of the kept ones
            s.phone_start = part[0]
            if len(part[0]) < _ALMOST_A_NUMBER:
                return [Say("Okay.")]  # a pause inside the number ended the turn early: let it go on
            # Nearly a whole number: digits were missed. Say what was heard; the rest or all of it again.
            return self._ask(s, f"I got {say_phone(part[0])}, which seems too short. Could you "
                                "say the whole number again, or type it on your keypad?")
        if u.service:
            s.topic = u.service
        elif s.topic and "book" in u.intents and any(t in ("one", "it", "that", "them") for t in u.tokens):
            u.service = s.topic  # "how much is a checkup?" ... "can i book one for saturday"
        if u.empty:
            return self._not_understood(s, "Sorry, I didn't catch that.")
        if s.expecting == "name" and u.name and not is_question(u.text):
            u.intents -= _INFO_INTENTS  # "the name's Owen Price" gives a name; it asks for no price
        if s.expecting == "transfer":
            if u.answer == "yes" or "human" in u.intents:
                return self._transfer(s, "caller accepted after repeated misunderstandings")
            if u.answer == "no":
                lead = "Okay, let's try again." if s.failures else "Okay."
                s.failures = 0
                s.expecting = s.resume or "intent"
                if s.last_prompt.startswith(_TRANSFER_QUESTION):
                    s.last_prompt = ""  # ask the question it was asking before the offer, not the offer
                if s.expecting == "name" and s.flow in ("move", "cancel"):
                    return [Say(lead), *self._ask(s, "What name is the appointment under?")]
                return [Say(lead), *self._prompt(s)]
        if "human" in u.intents:
            return self._transfer(s, "caller asked for a person")
        if "repeat" in u.intents and not u.has_slots:
            return [Say(s.last_prompt or "How can I help you today?")]
        if self._is_goodbye(s, u):
            return self._goodbye(s)
        from_knowledge = self._from_knowledge(s, u)
        if from_knowledge is not None:
            return from_knowledge
        if s.flow in ("book", "move") and "hours" in u.intents and (u.date or u.time) and not any(
                t in _ASKS_HOURS for t in u.tokens):
            u.intents.discard("hours")  # "is tuesday at ten open" asks for a slot, not for opening hours
        if "front_desk" in u.intents and not u.has_slots and not ({"book", "move", "cancel"} & u.intents):
            s.failures = 0
            if s.expecting != "transfer":
                s.resume = s.expecting if s.flow else "anything_else"
            s.expecting = "transfer"
            s.last_prompt = "Would you like me to transfer you to someone at the front desk?"
            return [Say("I can't help with that myself, but our front desk can."), Say(s.last_prompt)]
        info = self._answers(u)
        if info and not ({"book", "move", "cancel"} & u.intents):
            s.failures = 0
            if s.flow is None:
                s.expecting = "anything_else"
                s.last_prompt = "Is there anything else I can help you with?"
                return [*info, Say(s.last_prompt)]
            return [*info, *self._prompt(s)]
        switched = self._switch_flow(s, u)
        if switched is not None:
            return [*info, *switched]
        if s.flow is None:
            return self._idle(s, u)
        actions = self._in_flow(s, u)
        return [*info, *actions]

    def on_tool_result(self, s: DialogueState, call: Call, result: dict[str, Any]) -> list[Action]:
        handler = {"check_availability": self._on_availability, "create_booking": self._on_created,
                   "find_booking": self._on_found, "move_booking": self._on_moved,
                   "cancel_booking": self._on_cancelled}.get(call.name)
        if handler is None:
            if call.name == "transfer_to_human" and not result.get("ok", True):
                s.expecting = "intent"
                return [Say("I'm sorry, no one is available right now. Can I help you with anything else?")]
            return []
        return handler(s, result)

    # --- routing --------------------------------------------------------------------------------------

    def _is_goodbye(self, s: DialogueState, u: Understanding) -> bool:
        has_slots = any(v is not None for v in (u.service, u.date, u.time, u.phone))
        strong = any(t in ("bye", "goodbye") for t in u.tokens)
        if "goodbye" in u.intents and not has_slots and not ({"book", "move", "cancel"} & u.intents):
            # Mid-task, only an explicit bye ends the call: "thats it" may also answer a question.
            return strong or s.expecting in ("intent", "anything_else")
        if s.expecting == "anything_else" and not has_slots and not (u.intents - {"thanks"}):
            return u.answer == "no" or "thanks" in u.intents
        return False

    def _answers(self, u: Understanding) -> list[Action]:
        out: list[Action] = []
        if "hours" in u.intents:
            day = u.date or (self.today if any(t in ("now", "currently") for t in u.tokens) else None)
            if "week" in u.tokens:
                day = None  # "what are your hours next week": the whole week
            if any(t in ("weekend", "weekends") for t in u.tokens):
                out.extend(Say(spoken_hours(self.clinic, wd)) for wd in (5, 6))
            else:
                out.append(Say(hours_sentence(self.clinic, day)))
        if "price" in u.intents:
            out.append(Say(price_sentence(self.clinic, u.service)))
        elif "duration" in u.intents:
            out.append(Say(duration_sentence(self.clinic, u.service)))
        elif "services" in u.intents:
            if u.service:
                s = self.clinic.service(u.service)
                assert s is not None
                out.append(Say(f"Yes, we do offer {s.name}. It takes about {s.minutes} minutes."))
            else:
                out.append(Say(services_sentence(self.clinic)))
        if "location" in u.intents:
            out.append(Say(location_sentence(self.clinic)))
        return out

    def _switch_flow(self, s: DialogueState, u: Understanding) -> list[Action] | None:
        mentions_existing = any(t in u.tokens for t in ("my", "appointment", "booking", "existing"))
        cancel = "cancel" in u.intents
        owns = any(t in ("my", "existing", "booked", "already") for t in u.tokens)
        if cancel and "soft_cancel" in u.intents and not owns and (
                s.flow == "book" or "book" in u.intents or u.service):
            cancel = False  # "i need a cleaning but i cant come before five": a preference, no cancellation
        if s.flow == "cancel" and s.booking is not None and not cancel and (
                "move" in u.intents or u.date or (u.time and u.time.at)):
            # "no, can i move it to thursday instead" at the cancel read-back: keep the booking, move it
            s.flow, s.readback, s.failures = "move", None, 0
            self._apply(s, u)
            b = s.booking
            if s.date == b.get("date") and s.time in (None, b.get("time")) and not s.preference:
                s.date = s.time = None  # only named the old appointment
            return self._next(s)
        if s.flow == "book" and (("abort" in u.intents) or (cancel and not mentions_existing)):
            s.end_flow()
            s.last_prompt = "Is there anything else I can help you with?"
            return [Say("Okay, I won't book anything."), Say(s.last_prompt)]
        if s.flow in ("move", "cancel") and "abort" in u.intents:
            s.end_flow()
            s.last_prompt = "Is there anything else I can help you with?"
            return [Say("Okay, I'll leave your appointment as it is."), Say(s.last_prompt)]
        if cancel and s.flow != "cancel":
            s.start_flow("cancel")
            return self._identify(s, u, "Sure, I can cancel that for you.")
        if "move" in u.intents and s.flow != "move" and (s.flow != "book" or mentions_existing):
            s.start_flow("move")
            return self._identify(s, u, "Sure, I can move your appointment.")
        wants_booking = "book" in u.intents or (s.flow is None and (u.service or u.date or u.time))
        another = "book" in u.intents and any(t in u.tokens for t in ("new", "another"))
        if (wants_booking and s.flow is None) or (another and s.flow in ("move", "cancel")):
            s.start_flow("book")
            s.failures = 0
            self._apply(s, u)
            return self._next(s)
        return None

    def _idle(self, s: DialogueState, u: Understanding) -> list[Action]:
        greets = set(u.tokens) <= _GREETINGS or u.tokens[0] in _GREETINGS
        if s.expecting == "intent" and greets and not u.name:
            s.last_prompt = "How can I help you today?"
            return [Say(f"Hi, this is {self.clinic.name}."), Say(s.last_prompt)]
        if u.name:
            s.name = u.name
            s.failures = 0
            s.expecting = "intent"
            s.last_prompt = "How can I help you today?"
            return [Say(f"Hi {u.name.split()[0]}."), Say(s.last_prompt)]
        if s.expecting == "anything_else" and u.answer == "yes":
            s.failures = 0
            s.expecting = "intent"
            s.last_prompt = "Sure, what can I do for you?"
            return [Say(s.last_prompt)]
        return self._not_understood(s, "Sorry, I didn't get that.")

    def _in_flow(self, s: DialogueState, u: Understanding) -> list[Action]:
        if s.flow in ("move", "cancel") and s.booking is None:
            return self._identify(s, u, "")
        changed = self._apply(s, u)
        if changed:
            s.failures = 0
            if s.expecting == "phone" and not u.phone:
                s.phone_asked = False  # a correction instead of the number: ask for the number again
            return self._next(s)
        if s.expecting == "confirm":
            change_words = any(t in u.tokens for t in _CHANGE_WORDS)
            answer = u.answer
            if s.flow == "cancel" and {"cancel"} == u.intents & {"cancel", "soft_cancel"} and answer != "no":
                answer = "yes"  # "just cancel it", asked "would you like me to cancel it?"
            if answer == "yes" and not change_words and s.readback == s.details():
                return self._confirmed(s)
            if answer == "no" or change_words:
                s.failures = 0
                if s.flow == "cancel":
                    s.end_flow()
                    s.last_prompt = "Is there anything else I can help you with?"
                    return [Say("Okay, I'll keep your appointment."), Say(s.last_prompt)]
                s.expecting = "change"
                return self._ask(s, "No problem. What would you like to change?")
            return self._not_understood(s, "Sorry, was that a yes or a no?")
        if s.expecting == "change":
            for slot, words in _SLOT_WORDS.items():
                if any(w in u.tokens for w in words):
                    s.failures = 0
                    self._clear(s, slot)
                    return self._next(s)
            if u.answer in ("no", "yes"):  # nothing to change after all: read back again, ask again
                return self._next(s)
        if s.expecting == "phone" and (u.answer == "no" or any(p in u.text for p in _DECLINE)):
            s.failures = 0
            s.phone_asked = True
            return [Say("That's fine."), *self._next(s)]
        asks_options = any(p in f" {' '.join(u.tokens)} " for p in _ASK_OPTIONS)
        if asks_options and s.date and (s.service or s.booking):
            s.failures = 0
            if s.offered:
                return self._ask(s, f"I have {say_slots(s.offered)}. Which works best for you?", "choose")
            if s.date and not s.time:
                return self._next(s)
        shift = next((t for t in u.tokens if t in ("later", "earlier")), None)
        picked = choose_option(u.tokens, len(s.offered)) if s.offered else None
        if s.expecting == "choose" and s.offered and shift and picked is None:
            # "anything later?": other times on the same day, past the last (or before the first) offered
            last = datetime.strptime(s.offered[-1], "%H:%M") + timedelta(minutes=1)
            s.preference = f"after {last:%H:%M}" if shift == "later" else f"before {s.offered[0]}"
            s.time, s.offered, s.verified, s.failures = None, [], False, 0
            return self._next(s)
        if s.expecting == "choose":
            if u.answer == "no":
                s.time, s.offered, s.preference = None, [], None
                s.expecting = "time"
                return [Say("Okay."), *self._ask(s, "What other day or time would suit you?")]
            if u.answer == "yes" and len(s.offered) > 1:
                return self._ask(s, f"Which one works best: {say_slots(s.offered)}?")
        if s.expecting in ("name", "phone") and u.answer == "yes" and not u.has_slots and not s.failures:
            s.failures += 1  # "sure", "perfect": an acknowledgement, not the answer yet
            ask = "What name should I put it under?" if s.expecting == "name" else "What's the number?"
            return self._ask(s, f"Sure. {ask}")
        if s.expecting == "phone" and s.phone_asked and s.failures >= 1:
            return [Say("No worries, we'll go without a number."), *self._next(s, skip_phone=True)]
        return self._not_understood(s, "Sorry, I didn't get that.")

    # --- slots ----------------------------------------------------------------------------------------

    def _apply(self, s: DialogueState, u: Understanding) -> bool:
        """Copies what the caller said into the state; True if anything changed (a correction counts)."""
        before = [*s.details(), s.preference]
        if s.expecting == "choose" and s.offered:
            idx = choose_option(u.tokens, len(s.offered))
            if idx is None and u.answer == "yes" and len(s.offered) == 1:
                idx = 0
            named_day = any(t in _DAY_WORDS for t in u.tokens)
            if idx is not None and not (u.time and u.time.at) and not named_day:
                u.date = None  # "the second one" picks an offer; it is not the 2nd of the month
                s.time, s.verified = s.offered[idx], True
        if s.expecting == "phone" and s.date and find_phone(u.tokens, min_digits=3) is not None and (
                not _changes_slot(u.text)):
            u.date = u.time = None  # a turn of digits answers the number; it never moves the agreed slot
        if u.service and s.flow == "book" and u.service != s.service:
            s.service, s.verified, s.offered = u.service, False, []
        if u.date and u.bare_weekday and s.date:
            u.date = _same_week(u.date, s.date, self.today)  # "next thursday" ... "friday instead"
        if u.date and u.date.isoformat() != s.date:
            s.date, s.verified, s.offered = u.date.isoformat(), False, []
        elif s.date is None and any(p in u.text.lower() for p in _SOON):
            s.date, s.offered = self.today.isoformat(), []
        if u.time is not None and s.expecting == "phone" and u.time.at is None and s.time:
            u.time = None  # "call me in the evening" while giving a number is no new appointment time
        if u.time is not None:
            at = u.time.as_argument() if u.time.at else None
            if at and at != s.time:
                s.time = at
                s.verified = at in s.offered
            elif at is None and u.time.preference != s.preference:
                s.time, s.verified, s.offered = None, False, []
            s.preference = u.time.preference
        if u.name and (s.expecting == "name" or u.name != s.name) and s.flow == "book" and not (
                s.expecting == "phone" and u.phone) and (  # the number's turn keeps the agreed name
                s.expecting in ("name", "change") or s.name is None or _names_itself(u, s.name)):
            s.name = u.name if s.expecting == "name" else _corrected_name(s.name, u.name)
        if u.phone:
            s.phone = u.phone
        return [*s.details(), s.preference] != before

    def _clear(self, s: DialogueState, slot: str) -> None:
        if slot == "date":
            s.date = s.time = None
        setattr(s, slot, None)
        s.offered, s.verified = [], False
        if slot == "phone":
            s.phone_asked = False

    # --- next step ------------------------------------------------------------------------------------

    def _next(self, s: DialogueState, skip_phone: bool = False) -> list[Action]:
        """Asks for the first missing detail, checks the calendar, or reads back for confirmation."""
        if s.flow == "book" and not s.service:
            return self._ask(s, "What would you like to come in for? We do check-ups and cleanings, "
                                "fillings, whitening, emergency visits and consultations.", "service")
        if not s.date and s.flow == "move" and s.booking and (s.time or s.preference):
            s.date = s.booking.get("date")  # "can i move it to eleven": the same day, a new time
        if not s.date:
            q = "What day would you like to move it to?" if s.flow == "move" else "What day works for you?"
            return self._ask(s, q, "date")
        service = s.service or (s.booking or {}).get("service")
        if not s.time:
            pref = {"time_preference": s.preference} if s.preference else {}
            return [Call("check_availability", {"service": service, "date": s.date, **pref})]
        if not s.verified:
            args = {"service": service, "date": s.date, "time_preference": s.time}
            return [Call("check_availability", args)]
        if s.flow == "book" and not s.name:
            # The day and time said back as heard: a misheard day is caught here, not at the read-back.
            when = f"{say_date(s.date, self.today)} at {say_hhmm(s.time)}"
            return [Say(f"Great, {when} is free."),
                    *self._ask(s, "Can I have your full name, please?", "name")]
        if s.flow == "book" and self.ask_phone and not s.phone and not s.phone_asked and not skip_phone:
            s.phone_asked = True
            return self._ask(s, "And what's the best phone number to reach you?", "phone")
        return self._read_back(s)

    def _read_back(self, s: DialogueState) -> list[Action]:
        assert s.date and s.time
        s.readback = s.details()
        when = booking_phrase(self.clinic, s.service, s.date, s.time, self.today)
        if s.flow == "move":
            b = s.booking or {}
            new = f"{say_date(s.date, self.today)} at {say_hhmm(s.time)}"
            text = f"Just to confirm, I'll move your {service_name(self.clinic, b.get('service'))} to {new}."
            return [Say(text), *self._ask(s, "Is that right?", "confirm")]
        name = f", for {s.name}" if s.name else ""
        article = "an" if when[0] in "aeiou" else "a"
        # The number is read back too, digit by digit: a misheard digit is the caller's to catch.
        number = [Say(f"And your number is {say_phone(s.phone)}.")] if s.phone else []
        return [Say(f"So that's {article} {when}{name}."), *number,
                *self._ask(s, "Shall I book it?", "confirm")]

    def _confirmed(self, s: DialogueState) -> list[Action]:
        """The confirmation gate's only exit: the read-back was answered yes with nothing changed."""
        s.expecting = "intent"
        if s.flow == "book":
            args = {"name": s.name, "service": s.service, "start": f"{s.date}T{s.time}"}
            if s.phone:
                args["phone"] = s.phone
            return [Call("create_booking", args)]
        booking_id = (s.booking or {}).get("id")
        if s.flow == "move":
            return [Call("move_booking", {"booking_id": booking_id, "new_start": f"{s.date}T{s.time}"})]
        return [Call("cancel_booking", {"booking_id": booking_id})]

    def _identify(self, s: DialogueState, u: Understanding, lead: str) -> list[Action]:
        """Move and cancel start by finding the caller's booking under their name."""
        name = u.name or (find_name(u.tokens, expecting=True) if s.expecting == "name" else None)
        if s.flow == "move":  # of two days ("friday instead of tuesday"), the new one is the one not booked
            self._apply(s, Understanding(text=u.text, tokens=u.tokens, date=u.date, time=u.time))
            if u.last_date is not None:
                s.alternative = u.last_date.isoformat()
        if name:
            s.name = name
        elif s.name is None or s.expecting == "name":
            if s.expecting == "name" and not lead:
                return self._not_understood(s, "Sorry, I didn't catch the name.")
            lead_say = [Say(lead)] if lead else []
            return [*lead_say, *self._ask(s, "What name is the appointment under?", "name")]
        s.failures = 0
        return [Call("find_booking", {"name": s.name})]

    # --- prompts and fallbacks --------------------------------------------------------------------

    def _ask(self, s: DialogueState, question: str, expecting: str | None = None) -> list[Action]:
        if expecting:
            s.expecting = expecting
        s.last_prompt = question
        return [Say(question)]

    def _prompt(self, s: DialogueState) -> list[Action]:
        if s.expecting == "confirm" and s.readback == s.details() and s.date and s.time:
            return self._read_back(s)
        if s.flow and s.expecting not in ("intent", "anything_else", "transfer"):
            if s.expecting == "choose" and s.offered:
                return self._ask(s, f"Would {say_slots(s.offered)} work for you?")
            return [Say(s.last_prompt)] if s.last_prompt else self._next(s)
        if s.expecting == "anything_else":
            return self._ask(s, "Is there anything else I can help you with?")
        return self._ask(s, "How can I help you today?", "intent")

    def _not_understood(self, s: DialogueState, lead: str) -> list[Action]:
        s.failures += 1
        if s.failures >= self.max_failures:
            if s.expecting != "transfer":
                s.resume = s.expecting
            s.expecting = "transfer"
            s.last_prompt = "Would you like me to transfer you to someone at the front desk?"
            return [Say("I'm sorry, I'm having trouble understanding."), Say(s.last_prompt)]
        if s.flow is None and s.expecting in ("intent", "anything_else"):
            s.last_prompt = ("I can book, move or cancel an appointment, or tell you about our hours, "
                             "services and prices. What would you like to do?")
            return [Say(lead), Say(s.last_prompt)]
        if s.flow == "book" and s.failures == 1 and s.expecting in _REASK:
            return [Say(lead), *self._ask(s, _REASK[s.expecting])]  # once more, and how else to give it
        return [Say(lead), *self._prompt(s)]

    def _transfer(self, s: DialogueState, reason: str) -> list[Action]:
        s.expecting = "intent"
        s.failures = 0
        return [Say("Of course, let me transfer you to a member of our team."),
                Call("transfer_to_human", {"reason": reason})]

    def _goodbye(self, s: DialogueState) -> list[Action]:
        s.ended = True
        s.readback = None  # nothing said after goodbye can confirm an earlier read-back
        s.expecting = "intent"
        return [Say(f"Thank you for calling {self.clinic.name}. Have a great day, goodbye!"),
                Call("end_call", {})]
