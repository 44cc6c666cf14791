"""A second set of callers the clinic was not tuned on, written after the first (other_callers.py) was
measured, so that each fix is checked on phrasings it was not written for.

They speak as the held-out callers are known to: a relative day with a part of the day and no clock
time ("next Thursday afternoon", then a time from the offers), a day changed with "can we do ...
instead", a question asked in the middle of the booking, the time changed after the read-back, the name
and the number in one breath, a surname spelt, and a caller who only wants a person. Each has its own
eSpeak NG voice and rate. `python -m evals.calls.bench --set more` calls them; the original seven stay
the default set, so its figures remain comparable.
"""

from __future__ import annotations

from cells.simulator.caller import CallerLine
from cells.simulator.other_callers import OtherCaller
from cells.simulator.scripts import (
    FRI,
    MON,
    THU,
    TUE,
    WED,
    BookingScript,
    Expected,
    in_next_week,
    next_weekday,
    same_week,
)

MORE_CALLERS: dict[str, OtherCaller] = {
    # A part of the day instead of a time; the time is picked from what the agent offers.
    "afternoon-then-time": OtherCaller(BookingScript([
        CallerLine("Hi, I'd like to get my teeth cleaned next Thursday afternoon."),
        CallerLine("Two o'clock would be perfect."),
        CallerLine("It's Rachel Adams."),
        CallerLine("Five five five, oh one nine eight."),
        CallerLine("Yes, that's all correct."),
        CallerLine("No, that's it. Bye now."),
    ], Expected("cleaning", lambda t: in_next_week(t, THU), "14:00", "adams", "5550198")), "en-us+f4", 170),
    # The day changed while the agent asks for the name; "double four" in the number.
    "friday-instead": OtherCaller(BookingScript([
        CallerLine("Hello there, I was hoping to book a filling for Wednesday at half past nine."),
        CallerLine("Actually, can we do Friday instead?"),
        CallerLine("The name's Owen Price."),
        CallerLine("My number's five five five, double four, two one."),
        CallerLine("Yep, go ahead."),
        CallerLine("That's everything, thanks. Goodbye."),
    ], Expected("filling", lambda t: same_week(t, WED, FRI), "09:30", "price", "5554421")),
        "en-gb-x-gbclan", 165),
    # A question about the rules in the middle of the booking: answered, and the booking goes on.
    "policy-question": OtherCaller(BookingScript([
        CallerLine("Hi, I want to book a check-up for Monday at eleven."),
        CallerLine("Before that, what's your cancellation policy?"),
        CallerLine("Okay. My name is Nina Patel."),
        CallerLine("It's five five five, seven oh three one."),
        CallerLine("Yes please."),
        CallerLine("No, bye."),
    ], Expected("cleaning", lambda t: next_weekday(t, MON), "11:00", "patel", "5557031")), "en-us+m1", 175),
    # The time changed after the read-back, with the old time named too.
    "time-changed-at-readback": OtherCaller(BookingScript([
        CallerLine("Hi, I'd like to make an appointment for teeth whitening on Tuesday at ten."),
        CallerLine("Sure, it's Grace Lee."),
        CallerLine("Five five five, two four six eight."),
        CallerLine("Oh, sorry, could you make that eleven instead of ten?"),
        CallerLine("Yes, perfect."),
        CallerLine("No thanks, bye."),
    ], Expected("whitening", lambda t: next_weekday(t, TUE), "11:00", "lee", "5552468")), "en-gb+m2", 160),
    # Only the surname spelt, after the whole name.
    "surname-spelt": OtherCaller(BookingScript([
        CallerLine("Morning. Could you fit me in for a cleaning on Friday at two?"),
        CallerLine("Kate Nowak, that's N O W A K."),
        CallerLine("Five five five, three one one nine."),
        CallerLine("That's right, thanks."),
        CallerLine("Nothing else, goodbye."),
    ], Expected("cleaning", lambda t: next_weekday(t, FRI), "14:00", "nowak", "5553119")),
        "en-gb-x-gbcwmd", 170),
    # The name and the number in one breath, when asked for the name.
    "name-and-number": OtherCaller(BookingScript([
        CallerLine("Hello, I need an emergency appointment, my tooth is killing me. "
                   "Is Monday at nine possible?"),
        CallerLine("Yes. I'm Daniel Ross, and my number is five five five, eight eight one two."),
        CallerLine("Yes, please book it."),
        CallerLine("No, that's all. Bye."),
    ], Expected("emergency", lambda t: next_weekday(t, MON), "09:00", "ross", "5558812")), "en-us+m3", 165),
    # A morning asked for, then a time that is free, though maybe not one of those offered.
    "morning-pick": OtherCaller(BookingScript([
        CallerLine("Hi, can I get a consultation about braces next Wednesday morning?"),
        CallerLine("Ten would be great."),
        CallerLine("Liam Carter."),
        CallerLine("It's five five five, nine oh oh four."),
        CallerLine("Yes."),
        CallerLine("No, bye."),
    ], Expected("consultation", lambda t: in_next_week(t, WED), "10:00", "carter", "5559004")), "en+f2", 170),
    # Wants a person: the call is handed over and nothing is booked.
    "person-please": OtherCaller(BookingScript([
        CallerLine("Hi, um, can I talk to a person please?"),
        CallerLine("Sure, thanks."),
    ], None, disposition="transfer"), "en-029+f1", 170),
}
