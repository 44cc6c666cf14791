"""Whole caller conversations as a speech recogniser like Whisper writes them, and what must come of each.

Written as real callers speak: capitalised, punctuated, digits ("11 a.m.", "3pm", "07700 900123",
"555-0142"), fillers, contractions, corrections ("actually can we do Friday instead", "no, eleven not
twelve", "it's Kowalski with a K"), several facts in one sentence, a trailing "Thank you." Some keep the
old lower-case word style. The calendar's clock is Monday 2 March 2026, 08:30 (evals.dialogue.harness.NOW):
Tuesday is the 3rd, Thursday the 5th, Friday the 6th, "next Thursday" the 12th.

Each conversation states the calendar's exact contents afterwards (name, service, start, phone), so a
wrong name, a time changed by the phone-number turn, or a booking the caller refused all fail it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Booked = tuple[str, str, str, str | None]  # name, service, start (YYYY-MM-DDTHH:MM), phone digits


@dataclass(frozen=True)
class Conversation:
    id: str
    kind: str  # book | move | cancel | hours | price | transfer | refuse
    lines: tuple[str, ...]
    calendar: tuple[Booked, ...]  # every booking in the calendar after the call, exactly
    before: tuple[Booked, ...] = ()  # bookings already there when the call starts
    reply_has: str | None = None  # a fragment the agent's last reply must contain
    transfer: bool = False  # the call must end in a transfer to a person
    mutations: int = field(default=-1)  # mutating tool calls expected (-1: as many as the calendar shows)


ANNA = ("Anna Kowalski", "cleaning", "2026-03-03T10:00", "5550142")
JOHN = ("John Smith", "filling", "2026-03-04T14:00", None)


def _c(id: str, kind: str, lines: list[str], calendar: list[Booked], **kw: object) -> Conversation:
    return Conversation(id, kind, tuple(lines), tuple(calendar), **kw)  # type: ignore[arg-type]


CONVERSATIONS: tuple[Conversation, ...] = (
    # --- booking, one fact at a time and several at once ---------------------------------------------
    _c("book-next-thursday-afternoon", "book",
       ["Hi, I'd like to get my teeth cleaned next Thursday afternoon, my name is Anna Kowalski.",
        "2 p.m. works.", "Sure, it's 07700 900123.", "Yes, please."],
       [("Anna Kowalski", "cleaning", "2026-03-12T14:00", "07700900123")]),
    _c("book-step-by-step", "book",
       ["Hello, um, I need to book a cleaning.", "Thursday the 5th.", "11 a.m., please.",
        "My name is Anna Kowalski.", "It's 555-0142.", "Yes, that's right. Thank you."],
       [("Anna Kowalski", "cleaning", "2026-03-05T11:00", "5550142")]),
    _c("book-phone-words-keep-time", "book",
       ["I'd like a filling on Wednesday at 11 a.m.", "John Smith.", "Five five five, zero one four two.",
        "Yes."],
       [("John Smith", "filling", "2026-03-04T11:00", "5550142")]),
    _c("book-phone-with-for-and-one", "book",
       ["Can I get a cleaning Tuesday at 11?", "Maria Garcia.", "It's five five five for one two one three.",
        "Yes, that's correct."],
       [("Maria Garcia", "cleaning", "2026-03-03T11:00", "55541213")]),
    _c("book-phone-uk-mobile", "book",
       ["Hi there. Could I book a check-up for Friday at 9:30 a.m.?", "Peter Jones.",
        "Yeah, it's 07700 900 123.", "Yep, that's great."],
       [("Peter Jones", "cleaning", "2026-03-06T09:30", "07700900123")]),
    _c("book-phone-grouped-words", "book",
       ["I need an appointment for a filling on Thursday at 3pm.", "Sarah Lee.",
        "My number is five five five, zero one four two.", "Yes please."],
       [("Sarah Lee", "filling", "2026-03-05T15:00", "5550142")]),
    _c("book-all-in-one", "book",
       ["Hi, this is Peter Jones, I need a filling Tuesday at 2:30 p.m., my number is 555-0199.",
        "Yep, that's it."],
       [("Peter Jones", "filling", "2026-03-03T14:30", "5550199")]),
    _c("book-half-past-two", "book",
       ["Can I come in for a cleaning on Thursday at half past two?", "Linda Brown.", "555 0142.", "Yes."],
       [("Linda Brown", "cleaning", "2026-03-05T14:30", "5550142")]),
    _c("book-3-p-m-spaced", "book",
       ["I want to book teeth whitening on Friday at 3 p.m.", "It's Emma Wilson.", "No thanks.",
        "Sounds good."],
       [("Emma Wilson", "whitening", "2026-03-06T15:00", None)]),
    _c("book-month-day", "book",
       ["I'd like to book a cleaning on March 10th at 11:30.", "It's Anna Kowalski.",
        "Five five five, zero one four two.", "Yes please."],
       [("Anna Kowalski", "cleaning", "2026-03-10T11:30", "5550142")]),
    _c("book-day-of-month-word", "book",
       ["Um, can I book a filling for the 9th of March?", "10 a.m.", "David Miller.",
        "Uh, 555-0123.", "Yes. Thank you."],
       [("David Miller", "filling", "2026-03-09T10:00", "5550123")]),
    _c("book-april", "book",
       ["Hi! I'd like a consultation on April 7th at 9:15 a.m. My name's Olivia Taylor.",
        "I'd rather not give a number.", "Yes, that's perfect."],
       [("Olivia Taylor", "consultation", "2026-04-07T09:15", None)]),
    _c("book-fillers", "book",
       ["Um, yeah, uh, I was wondering if I could, um, get an appointment for a cleaning, uh, tomorrow "
        "morning?", "Uh, 9 a.m.?", "Um, Thomas Clark.", "It's, uh, 555-0177.", "Yeah."],
       [("Thomas Clark", "cleaning", "2026-03-03T09:00", "5550177")]),
    _c("book-toothache-soonest", "book",
       ["I've got a really bad toothache. What's the soonest you can see me?", "The first one, please.",
        "Karen White.", "07700 900456.", "Yes please, thank you."],
       [("Karen White", "emergency", "2026-03-02T08:30", "07700900456")]),
    _c("book-oclock", "book",
       ["I need a checkup on Friday at 4 o'clock.", "My name is Michael Hall.", "555-0110.", "Correct."],
       [("Michael Hall", "cleaning", "2026-03-06T16:00", "5550110")]),
    _c("book-old-word-style", "book",
       ["id like to book a cleaning on thursday at eleven", "anna kowalski",
        "five five five zero one four two", "yes"],
       [("Anna Kowalski", "cleaning", "2026-03-05T11:00", "5550142")]),
    _c("book-thank-you-trailing", "book",
       ["Can I book a filling on Tuesday at 10? Thank you.", "Robert King. Thank you.",
        "555-0188. Thank you.", "Yes. Thank you."],
       [("Robert King", "filling", "2026-03-03T10:00", "5550188")]),
    # --- corrections --------------------------------------------------------------------------------
    _c("fix-day-instead", "book",
       ["Can I book a checkup for Friday at 3pm?", "Actually, can we do Thursday instead?",
        "Maria Garcia.", "07700 900123.", "Yes, please."],
       [("Maria Garcia", "cleaning", "2026-03-05T15:00", "07700900123")]),
    _c("fix-day-instead-after-offers", "book",
       ["I'd like to get my teeth cleaned next Thursday afternoon.", "Actually, can we do Friday instead?",
        "2 p.m.", "Jessica Young.", "555-0142.", "Yes."],
       [("Jessica Young", "cleaning", "2026-03-13T14:00", "5550142")]),
    _c("fix-eleven-not-twelve", "book",
       ["I need a cleaning on Tuesday at 12.", "No, eleven, not twelve.", "Paul Walker.", "555-0142.",
        "Yes."],
       [("Paul Walker", "cleaning", "2026-03-03T11:00", "5550142")]),
    _c("fix-eleven-not-twelve-at-readback", "book",
       ["A filling on Wednesday at 12, please.", "Paul Walker.", "555-0142.",
        "No, 11, not 12.", "Yes, that's right."],
       [("Paul Walker", "filling", "2026-03-04T11:00", "5550142")]),
    _c("fix-surname-with-a-k", "book",
       ["I want to book a cleaning on Friday at 10 a.m.", "My name is Anna Cowalski.", "555 0142.",
        "Sorry, it's Kowalski with a K.", "Yes."],
       [("Anna Kowalski", "cleaning", "2026-03-06T10:00", "5550142")]),
    _c("fix-name-at-readback", "book",
       ["I'd like a cleaning Thursday at 9 a.m.", "Jon Smith.", "No thanks.",
        "No, the name's wrong. It's John Smith.", "Yes, perfect."],
       [("John Smith", "cleaning", "2026-03-05T09:00", None)]),
    _c("fix-yes-but-time", "book",
       ["Cleaning on Wednesday at 10 a.m., please.", "John Smith.", "No.", "Yes, but make it 11 instead.",
        "Yes."],
       [("John Smith", "cleaning", "2026-03-04T11:00", None)]),
    _c("fix-time-at-readback", "book",
       ["Book me a filling on Thursday at 2 p.m.", "Emily Davis.", "555-0142.",
        "Actually, can we make it 3 p.m.?", "Yes, please."],
       [("Emily Davis", "filling", "2026-03-05T15:00", "5550142")]),
    _c("fix-number-repeated", "book",
       ["I need a cleaning on Friday at 11 a.m.", "Laura Green.", "555-0142.",
        "Sorry, the number is 555-0143.", "Yes."],
       [("Laura Green", "cleaning", "2026-03-06T11:00", "5550143")]),
    # --- refusals: nothing is written ---------------------------------------------------------------
    _c("refuse-at-readback", "refuse",
       ["I'd like to book a whitening on Friday at 9 a.m.", "Tom Baker.", "No thanks.",
        "No, actually, never mind. Don't book it."],
       []),
    _c("refuse-changed-mind", "refuse",
       ["Can I get a cleaning on Thursday at 10?", "Sophie Martin.", "Forget it, I'll call back later."],
       []),
    _c("refuse-no-then-goodbye", "refuse",
       ["A checkup Tuesday at 9 a.m.", "Alice Lewis.", "555-0142.", "No.", "Never mind, that's all. Bye."],
       []),
    _c("refuse-unsure", "refuse",
       ["I need a filling Friday at 2pm.", "Mark Thompson.", "No.", "Hmm, I'm not sure."],
       []),
    # --- moving and cancelling ----------------------------------------------------------------------
    _c("move-step-by-step", "move",
       ["Hi, I need to move my appointment.", "Anna Kowalski.", "Can we do Friday at 11 a.m. instead?",
        "Yes."],
       [("Anna Kowalski", "cleaning", "2026-03-06T11:00", "5550142")], before=(ANNA,)),
    _c("move-all-in-one", "move",
       ["Hi, it's Anna Kowalski. I need to reschedule my cleaning to Thursday at 2:30 p.m.", "Yes, please."],
       [("Anna Kowalski", "cleaning", "2026-03-05T14:30", "5550142")], before=(ANNA,)),
    _c("move-instead-of", "move",
       ["Can I move my appointment to Friday instead of Tuesday? My name is Anna Kowalski.", "10 a.m.",
        "Yes, that works."],
       [("Anna Kowalski", "cleaning", "2026-03-06T10:00", "5550142")], before=(ANNA,)),
    _c("move-change-mind-day", "move",
       ["I'd like to reschedule my appointment. The name is John Smith.", "Thursday, please.",
        "Actually, can we do Friday instead?", "3pm.", "Yes."],
       [("John Smith", "filling", "2026-03-06T15:00", None)], before=(JOHN,)),
    _c("move-refused", "move",
       ["I need to change my appointment. Anna Kowalski.", "Thursday at 9 a.m.", "No, leave it as it is."],
       [ANNA], before=(ANNA,)),
    _c("cancel-yes", "cancel",
       ["Hi, I need to cancel my appointment. The name is John Smith.", "Yes, please."],
       [], before=(JOHN,), mutations=1),
    _c("cancel-cant-make-it", "cancel",
       ["Hello, I can't make my appointment on Wednesday, so I'd like to cancel it.", "John Smith.",
        "Yes, cancel it."],
       [], before=(JOHN,), mutations=1),
    _c("cancel-refused", "cancel",
       ["I want to cancel my appointment.", "Anna Kowalski.", "No, actually, keep it."],
       [ANNA], before=(ANNA,)),
    # --- questions and a person ---------------------------------------------------------------------
    _c("hours-thursday", "hours", ["What time do you close on Thursday?"], [], reply_has="7 p.m."),
    _c("hours-saturday", "hours", ["Are you open on Saturdays?"], [], reply_has="9 a.m. to 1 p.m."),
    _c("hours-then-book", "hours",
       ["Hi, what are your opening hours?", "Great. Can I book a cleaning on Saturday at 10 a.m.?",
        "Jennifer Anderson.", "555-0142.", "Yes."],
       [("Jennifer Anderson", "cleaning", "2026-03-07T10:00", "5550142")]),
    _c("price-filling", "price", ["How much does a filling cost?"], [], reply_has="180 dollars"),
    _c("price-whitening", "price", ["Hi. Um, how much is teeth whitening?"], [], reply_has="350 dollars"),
    _c("transfer-asked", "transfer", ["Can I talk to a person, please?"], [], transfer=True),
    _c("transfer-mid-booking", "transfer",
       ["I'd like to book a cleaning.", "Actually, can I just speak to a real person?"], [], transfer=True),
    _c("transfer-receptionist", "transfer", ["Could you put me through to the receptionist?"], [],
       transfer=True),
)

# Written after the fixes that made CONVERSATIONS pass and run once before any further change, so their
# first pass rate says how well the policy reads phrasings it was not tuned on (see the report).
FRESH: tuple[Conversation, ...] = (
    _c("fresh-scale-and-polish", "book",
       ["Good morning! I was hoping to book in for a scale and polish sometime next week, ideally Wednesday "
        "morning.", "Is 10:30 available?", "It's Sophie Martin, M-A-R-T-I-N.",
        "Yeah, you can reach me on 07700 900789.", "Lovely, thank you."],
       [("Sophie Martin", "cleaning", "2026-03-11T10:30", "07700900789")]),
    _c("fresh-chipped-today", "book",
       ["Hi. I chipped my tooth last night, can I get in today?", "The earliest one, please.",
        "Daniel Lewis.", "Do I have to? I'd rather not.", "Yes, please do."],
       [("Daniel Lewis", "emergency", "2026-03-02T08:30", None)]),
    _c("fresh-friday-after-2", "book",
       ["Hello, I'd like to make an appointment for a filling, please. Do you have anything on Friday after "
        "2pm?", "3:30 works.", "Mark Thompson.", "555 0123.", "Yep."],
       [("Mark Thompson", "filling", "2026-03-06T15:30", "5550123")]),
    _c("fresh-push-back", "move",
       ["Hi there, I've got an appointment tomorrow at 10 and I need to push it back. The name's Anna "
        "Kowalski.", "Thursday at 4pm would be great.", "Yes."],
       [("Anna Kowalski", "cleaning", "2026-03-05T16:00", "5550142")], before=(ANNA,)),
    _c("fresh-cancel-filling", "cancel",
       ["Yeah, hi, I need to cancel my filling on Wednesday. John Smith.", "That's right."],
       [], before=(JOHN,), mutations=1),
    _c("fresh-smyth-with-a-y", "book",
       ["Can I book a consultation for Monday the 9th at 1:30 p.m.?", "Catherine Smith.", "No thanks.",
        "Yes, but it's Smyth with a Y.", "Yes."],
       [("Catherine Smyth", "consultation", "2026-03-09T13:30", None)]),
    _c("fresh-for-my-son", "book",
       ["I'd like to book a cleaning for my son. Tuesday after school?", "3:30 p.m., please.",
        "His name is Leo Brown.", "555-0142.", "Perfect."],
       [("Leo Brown", "cleaning", "2026-03-03T15:30", "5550142")]),
    _c("fresh-questions-then-book", "book",
       ["Are you open on Sunday?", "How much is a checkup?", "Okay, can I book one for Saturday at 11?",
        "Rachel Green.", "07700 900555.", "Yes, that's right."],
       [("Rachel Green", "cleaning", "2026-03-07T11:00", "07700900555")]),
    _c("fresh-double-oh", "book",
       ["Could I book teeth whitening on Thursday at 11 o'clock?", "Yes, it's Hannah Scott.",
        "Oh seven seven double oh, nine double oh, four five six.", "Yes."],
       [("Hannah Scott", "whitening", "2026-03-05T11:00", "07700900456")]),
    _c("fresh-dont-worry", "refuse",
       ["I'd like a checkup on Friday at 9.", "Oliver Wright.", "555-0142.",
        "Actually, don't worry about it. I'll call back."],
       []),
    _c("fresh-insurance", "transfer", ["Do you take Delta Dental insurance?", "Yes, please."], [],
       transfer=True),
    _c("fresh-human", "transfer", ["Hi, can someone call me back? Actually, just put me through to a human."],
       [], transfer=True),
    _c("fresh-meant-wednesday", "book",
       ["Hi, this is James Wilson. I'd like a cleaning on Tuesday the 10th at 9:30.",
        "Sorry, I meant Wednesday the 11th.", "No phone, thanks.", "Yes."],
       [("James Wilson", "cleaning", "2026-03-11T09:30", None)]),
    _c("fresh-quarter-past", "book",
       ["I need a filling. Can you do Thursday, quarter past 2?", "Grace Hall.", "555 0199.", "Yes."],
       [("Grace Hall", "filling", "2026-03-05T14:15", "5550199")]),
    _c("fresh-12-noon", "book",
       ["Any chance of a cleaning tomorrow at 12 noon?", "George King.", "It's 555-0100.", "Mm-hmm."],
       [("George King", "cleaning", "2026-03-03T12:00", "5550100")]),
)
