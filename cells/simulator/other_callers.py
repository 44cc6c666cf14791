"""Callers the team never scripted: other phrasings in other eSpeak NG voices and rates.

Each caller speaks as people do on the phone: two or three sentences in one turn with the natural
pause between them, the day corrected after the agent has read it back, a surname spelt out, a
"sounds good" for yes. Every one names the voice and rate it is heard in, so that `python -m
evals.calls.bench` calls each the same way every run. None of these lines is in BOOKING_SCRIPTS'
originals: they are how the clinic is measured on callers it was not tuned on.
"""

from __future__ import annotations

from dataclasses import dataclass

from cells.simulator.caller import CallerLine
from cells.simulator.scripts import FRI, MON, THU, TUE, BookingScript, Expected, next_weekday


@dataclass(frozen=True)
class OtherCaller:
    script: BookingScript
    voice: str  # eSpeak NG voice[+variant]
    rate_wpm: int


OTHER_CALLERS: dict[str, OtherCaller] = {
    # Two sentences in one turn: the service, then after the sentence pause the day and time.
    "two-sentences": OtherCaller(BookingScript([
        CallerLine("Hi. I need to get a filling done. Could I come in on Friday at ten in the morning?"),
        CallerLine("My name is Sarah Green."),
        CallerLine("Five five five, four four one eight."),
        CallerLine("Sounds good."),
        CallerLine("No, that's all. Thank you."),
    ], Expected("filling", lambda t: next_weekday(t, FRI), "10:00", "green", "5554418")), "en-us+f3", 180),
    # Name first, then the request, in a slow Received Pronunciation voice.
    "name-first": OtherCaller(BookingScript([
        CallerLine("Good morning, this is Laura Hughes. "
                   "I'd like to book a cleaning for Tuesday at nine, please."),
        CallerLine("Of course. It's five five five, three three zero seven."),
        CallerLine("Yes, lovely."),
        CallerLine("No, that's everything. Goodbye."),
    ], Expected("cleaning", lambda t: next_weekday(t, TUE), "09:00", "hughes", "5553307")),
        "en-gb-x-rp", 150),
    # The day corrected after the read-back ("actually ... Thursday").
    "correct-after-readback": OtherCaller(BookingScript([
        CallerLine("Yeah, hello. Can I book a check-up on Wednesday at eleven?"),
        CallerLine("Mark Brown."),
        CallerLine("Five five five, eight two six one."),
        CallerLine("Actually, can we make it Thursday instead?"),
        CallerLine("Yes, that's right."),
        CallerLine("That's it, bye."),
    ], Expected("cleaning", lambda t: next_weekday(t, THU), "11:00", "brown", "5558261")), "en-029", 165),
    # Surname spelt out letter by letter after saying it.
    "spelt-name": OtherCaller(BookingScript([
        CallerLine("Hello. I'd like to come in for teeth whitening on Monday at two in the afternoon."),
        CallerLine("It's John Smith, S M I T H."),
        CallerLine("Five five five, one nine nine two."),
        CallerLine("Yes, please book it."),
        CallerLine("No, thanks. Bye bye."),
    ], Expected("whitening", lambda t: next_weekday(t, MON), "14:00", "smith", "5551992")),
        "en-gb-scotland", 170),
    # A fast New York caller, clipped phrasing.
    "clipped": OtherCaller(BookingScript([
        CallerLine("Hi, yeah, I wanna book a cleaning. Thursday, three o'clock."),
        CallerLine("Mike Miller."),
        CallerLine("Five five five, six six two zero."),
        CallerLine("Yeah, go for it."),
        CallerLine("Nah, I'm good. Thanks."),
    ], Expected("cleaning", lambda t: next_weekday(t, THU), "15:00", "miller", "5556620")), "en-us-nyc", 195),
    # A toothache described in two sentences, the name after a "yes".
    "emergency-two-sentences": OtherCaller(BookingScript([
        CallerLine("Hi there. I've got a really bad toothache. Can you see me on Monday at nine?"),
        CallerLine("Yes. My name is Emma Wood."),
        CallerLine("My number is five five five, two seven seven one."),
        CallerLine("Yes, correct."),
        CallerLine("No, that's all, thank you. Bye."),
    ], Expected("emergency", lambda t: next_weekday(t, MON), "09:00", "wood", "5552771")), "en-gb+f3", 175),
    # The time corrected in the same breath it was given.
    "time-correction": OtherCaller(BookingScript([
        CallerLine("Could I book a filling for Tuesday at one, no sorry, at four in the afternoon?"),
        CallerLine("Peter Clark."),
        CallerLine("Five five five, nine three zero zero."),
        CallerLine("Perfect, yes."),
        CallerLine("No, goodbye."),
    ], Expected("filling", lambda t: next_weekday(t, TUE), "16:00", "clark", "5559300")), "en-us+m3", 160),
}
