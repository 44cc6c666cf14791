"""Caller answers to a dental receptionist's questions, with the slot values the dialogue needs from them.

Each answer is phrased the way callers answer on the phone (often a fragment: a date alone, a name alone,
digits in groups), several ways per question, so that the measurement is not the recogniser reciting its
own templates. Slots are what the booking dialogue must be able to pull out of the recognised text: a
weekday or date, a time, a name, a digit string, a yes/no. A slot counts as recognised when its words
appear in order in the hypothesis (digits: when the digit sequence appears, "oh" read as zero).

Caveat: the LM's answer forms were written after this set, and a few carrier phrases coincide ("how about
{date}", "could i do {date} at {time}"); the slot values (names, digits) are not drawn from it. Answers of
kind "off-script" are outside the domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evals.stt.wer import normalise


@dataclass(frozen=True)
class Answer:
    text: str
    kind: str  # service, date, time, name, phone, confirm, off-script
    slots: tuple[str, ...] = ()  # word sequences, or "#" + digits for a digit string


def _a(text: str, kind: str, *slots: str) -> Answer:
    return Answer(text, kind, slots)


ANSWERS: list[Answer] = [
    # "How can I help you?"
    _a("Hi, I would like to book a cleaning please.", "service", "cleaning"),
    _a("I need a checkup.", "service", "checkup"),
    _a("Yeah hi, I've got a toothache and need to see someone.", "service", "toothache"),
    _a("Can I get my teeth whitened?", "service", "teeth"),
    _a("I think I need a filling.", "service", "filling"),
    _a("I'd like to cancel my appointment.", "service", "cancel"),
    # "What day suits you?"
    _a("Next Tuesday.", "date", "tuesday"),
    _a("Thursday.", "date", "thursday"),
    _a("How about this Friday?", "date", "friday"),
    _a("Monday the fifth.", "date", "monday", "fifth"),
    _a("The twelfth of March.", "date", "twelfth", "march"),
    _a("Could I come in on Wednesday?", "date", "wednesday"),
    _a("Tomorrow if you have anything.", "date", "tomorrow"),
    _a("Sometime next week, maybe Saturday.", "date", "saturday"),
    # "What time?"
    _a("Ten in the morning.", "time", "ten", "morning"),
    _a("At two thirty.", "time", "two thirty"),
    _a("Around three p.m.", "time", "three"),
    _a("Nine a.m. would be good.", "time", "nine"),
    _a("Half past eleven.", "time", "half past eleven"),
    _a("Four o'clock.", "time", "four"),
    _a("Anytime after one.", "time", "one"),
    # Both at once.
    _a("Next Tuesday at ten in the morning.", "date+time", "tuesday", "ten"),
    _a("Friday at two.", "date+time", "friday", "two"),
    _a("Wednesday afternoon, around three.", "date+time", "wednesday", "three"),
    _a("Could I do Monday at eight thirty?", "date+time", "monday", "eight thirty"),
    # "Can I have your name?"
    _a("My name is Maria Lopez.", "name", "maria"),
    _a("It's John Smith.", "name", "john smith"),
    _a("Sarah Johnson.", "name", "sarah johnson"),
    _a("This is David Miller.", "name", "david miller"),
    _a("Emma Wilson.", "name", "emma wilson"),
    _a("Yes, it's Robert Taylor.", "name", "robert taylor"),
    _a("Linda Brown.", "name", "linda brown"),
    _a("Kevin, Kevin Walker.", "name", "kevin walker"),
    # "And a phone number?"
    _a("Five five five, two one eight seven.", "phone", "#5552187"),
    _a("My number is five five five, zero one nine two.", "phone", "#5550192"),
    _a("It's two zero six, five five five, one two one two.", "phone", "#2065551212"),
    _a("Eight four seven, three three one, six zero nine eight.", "phone", "#8473316098"),
    _a("Nine one seven four four two.", "phone", "#917442"),
    _a("Oh seven seven zero, nine five three one.", "phone", "#07709531"),
    # Read-backs and closings.
    _a("Yes, that's right.", "confirm", "yes"),
    _a("Yes.", "confirm", "yes"),
    _a("Yep, sounds good.", "confirm", "yep"),
    _a("No.", "confirm", "no"),
    _a("No, that's wrong.", "confirm", "no"),
    _a("No, I said Thursday, not Tuesday.", "confirm", "no", "thursday"),
    _a("Correct.", "confirm", "correct"),
    _a("No, that's all. Thank you, goodbye.", "confirm", "no", "goodbye"),
    # Off-script: questions the domain LM was not written for.
    _a("What are your opening hours?", "off-script"),
    _a("Do you take my insurance?", "off-script"),
    _a("How much does a cleaning cost?", "off-script", "cleaning"),
    _a("Is there somewhere to park nearby?", "off-script"),
    _a("Can I bring my daughter as well?", "off-script"),
    _a("I'm not sure, let me check my calendar.", "off-script"),
]

# (eSpeak voice, words per minute). Answers rotate through these, each answer heard in two of them.
VOICES: list[tuple[str, int]] = [("en-us", 170), ("en-us+f2", 190), ("en-us+m3", 150), ("en-gb", 160),
                                 ("en-us+f3", 140), ("en-us", 185), ("en-us+m3", 175), ("en-us+f2", 155)]

_DIGIT = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
          "seven": "7", "eight": "8", "nine": "9"}


def digits_of(text: str) -> str:
    """The digit string a dialogue would read out of recognised words ("oh" is zero)."""
    return "".join(_DIGIT.get(w, "") for w in normalise(text))


def slot_hits(answer: Answer, hypothesis: str) -> int:
    """How many of the answer's slots the hypothesis carries."""
    words = " " + " ".join(normalise(hypothesis)) + " "
    hits = 0
    for slot in answer.slots:
        if slot.startswith("#"):
            hits += slot[1:] in digits_of(hypothesis)
        else:
            hits += re.search(rf"\b{re.escape(slot)}\b", words) is not None
    return hits
