"""Single caller turns in Whisper-style text (and a few in word style) and the slots each must yield.

`expecting` is what the agent had just asked for ("phone", "name", ...), as the policy passes it to
`understand`. Keys of `expect`: date (YYYY-MM-DD), time (HH:MM or a preference), name, phone, service,
answer ("yes"/"no"/None), intent (one that must be among those found). The clock is Monday 2 March 2026.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Phrasing:
    text: str
    expect: dict[str, Any]
    expecting: str | None = None


def _p(text: str, expecting: str | None = None, **expect: Any) -> Phrasing:
    return Phrasing(text, expect, expecting)


PHRASINGS: tuple[Phrasing, ...] = (
    # --- times written as Whisper writes them -------------------------------------------------------
    _p("11 a.m.", "time", time="11:00"),
    _p("11 a.m., please.", "time", time="11:00"),
    _p("At 11:30.", "time", time="11:30"),
    _p("3pm", "time", time="15:00"),
    _p("3 p.m. would be great.", "time", time="15:00"),
    _p("Half past two.", "time", time="14:30"),
    _p("Quarter to four, please.", "time", time="15:45"),
    _p("Um, 9:15?", "time", time="09:15"),
    _p("Noon, if you have it.", "time", time="12:00"),
    _p("10 o'clock.", "time", time="10:00"),
    _p("At 2:30 p.m.", "time", time="14:30"),
    _p("Can I come at 4?", "time", time="16:00"),
    _p("Uh, anytime after 3pm.", "time", time="after 15:00"),
    _p("Sometime in the morning.", "time", time="morning"),
    _p("Before 11 a.m., if possible.", "time", time="before 11:00"),
    _p("12:45 p.m.", "time", time="12:45"),
    _p("9.30 a.m.", "time", time="09:30"),
    _p("Eleven thirty.", "time", time="11:30"),
    _p("No, 11, not 12.", "name", time="11:00"),
    _p("No, eleven, not twelve.", "name", time="11:00"),
    _p("Not 12, 11.", "name", time="11:00"),
    _p("Can we make it 11 instead?", "confirm", time="11:00"),
    _p("Actually, can we make it 3 p.m.?", "confirm", time="15:00"),
    # --- dates --------------------------------------------------------------------------------------
    _p("Thursday the 5th.", "date", date="2026-03-05"),
    _p("Thursday the 12th, please.", "date", date="2026-03-12"),
    _p("March 10th.", "date", date="2026-03-10"),
    _p("On the 9th of March.", "date", date="2026-03-09"),
    _p("The 16th.", "date", date="2026-03-16"),
    _p("April 7th at 9:15 a.m.", "date", date="2026-04-07", time="09:15"),
    _p("Next Thursday afternoon.", "date", date="2026-03-12", time="afternoon"),
    _p("Tomorrow morning.", "date", date="2026-03-03", time="morning"),
    _p("Um, how about Friday?", "date", date="2026-03-06"),
    _p("Actually, can we do Friday instead?", "choose", date="2026-03-06"),
    _p("This Friday at 10.", "date", date="2026-03-06", time="10:00"),
    _p("Wednesday, March 4th.", "date", date="2026-03-04"),
    _p("A week from today.", "date", date="2026-03-09"),
    _p("In two weeks.", "date", date="2026-03-16"),
    _p("Tuesday, the 3rd, at 10 a.m.", "date", date="2026-03-03", time="10:00"),
    _p("Monday the 9th at 2pm.", "date", date="2026-03-09", time="14:00"),
    # --- phone numbers ------------------------------------------------------------------------------
    _p("07700 900123", "phone", phone="07700900123", time=None, date=None),
    _p("Sure, it's 07700 900123.", "phone", phone="07700900123", time=None, date=None),
    _p("555-0142.", "phone", phone="5550142", time=None, date=None),
    _p("It's 555-0142. Thank you.", "phone", phone="5550142", time=None, date=None),
    _p("Five five five, zero one four two.", "phone", phone="5550142", time=None, date=None),
    _p("five five five zero one four two", "phone", phone="5550142", time=None),
    _p("It's five five five for one two one three.", "phone", phone="55541213", time=None),
    _p("Five five five, two one, one two.", "phone", phone="5552112", time=None),
    _p("My number is 555 0199.", "phone", phone="5550199", time=None),
    _p("(415) 555-2345", "phone", phone="4155552345", time=None),
    _p("+44 7700 900123.", "phone", phone="447700900123", time=None),
    _p("Uh, 555, 0177.", "phone", phone="5550177", time=None),
    _p("07700 900 123", "phone", phone="07700900123", time=None),
    _p("Yeah, it's 555-0142, and the time was 11, right?", "phone", phone="5550142"),
    _p("It's 0 7 7 0 0, 9 0 0, 1 2 3.", "phone", phone="07700900123", time=None),
    _p("Oh seven seven double oh, nine double oh, one two three.", "phone", phone="07700900123"),
    _p("Five five five, one two one two, thank you.", "phone", phone="5551212", time=None),
    _p("Two one two, five five five, zero one four two.", "phone", phone="2125550142", time=None),
    _p("My number's 555-0188.", "phone", phone="5550188"),
    _p("You can reach me at 07700 900456.", None, phone="07700900456", time=None),
    # --- names --------------------------------------------------------------------------------------
    _p("My name is Anna Kowalski.", "name", name="Anna Kowalski"),
    _p("Anna Kowalski.", "name", name="Anna Kowalski"),
    _p("It's Anna Kowalski.", "name", name="Anna Kowalski"),
    _p("Um, Thomas Clark.", "name", name="Thomas Clark"),
    _p("Yeah, it's Peter Jones. Thank you.", "name", name="Peter Jones"),
    _p("The name's John Smith.", "name", name="John Smith"),
    _p("My name's Olivia Taylor.", "name", name="Olivia Taylor"),
    _p("Sure, Sarah Lee.", "name", name="Sarah Lee"),
    _p("Jennifer O'Connor.", "name", name="Jennifer O'Connor"),
    _p("It's Kowalski with a K.", "name", name="Kowalski"),
    _p("Karen White, W-H-I-T-E.", "name", name="Karen White"),
    _p("Hi, this is Peter Jones, I need a filling.", None, name="Peter Jones", service="filling"),
    _p("I'm Maria Garcia and I'd like a cleaning.", None, name="Maria Garcia", service="cleaning"),
    _p("My name is Anna Kowalski, I'm calling about a cleaning.", None, name="Anna Kowalski"),
    _p("Put it under David Miller, please.", "name", name="David Miller"),
    _p("Hi, it's Laura Green.", "name", name="Laura Green"),
    # --- several facts in one sentence ---------------------------------------------------------------
    _p("I'd like to get my teeth cleaned next Thursday afternoon, my name is Anna Kowalski.", None,
       service="cleaning", date="2026-03-12", time="afternoon", name="Anna Kowalski", intent="book"),
    _p("Hi, this is Peter Jones, I need a filling Tuesday at 2:30 p.m., my number is 555-0199.", None,
       name="Peter Jones", service="filling", date="2026-03-03", time="14:30", phone="5550199"),
    _p("Can I book a checkup for Friday at 3pm?", None, service="cleaning", date="2026-03-06", time="15:00",
       intent="book"),
    _p("I need a filling on Thursday at 11 a.m., please.", None, service="filling", date="2026-03-05",
       time="11:00"),
    _p("Could I get a whitening appointment on March 10th at 11:30?", None, service="whitening",
       date="2026-03-10", time="11:30"),
    _p("I've got a really bad toothache, can I come in today?", None, service="emergency", date="2026-03-02"),
    _p("I'd like a consultation on April 7th at 9:15 a.m. My name's Olivia Taylor.", None,
       service="consultation", date="2026-04-07", time="09:15", name="Olivia Taylor"),
    _p("Um, yeah, I was wondering if I could get a cleaning, uh, tomorrow morning?", None,
       service="cleaning", date="2026-03-03", time="morning"),
    _p("It's Anna Kowalski. I need to reschedule my cleaning to Thursday at 2:30 p.m.", None,
       name="Anna Kowalski", date="2026-03-05", time="14:30", intent="move"),
    _p("I'd like to book a cleaning on Saturday at 10 a.m.", None, service="cleaning", date="2026-03-07",
       time="10:00"),
    # --- yes, no and neither --------------------------------------------------------------------------
    _p("Yes, please.", "confirm", answer="yes"),
    _p("Yes, that's right. Thank you.", "confirm", answer="yes"),
    _p("Yep, that's great.", "confirm", answer="yes"),
    _p("Correct.", "confirm", answer="yes"),
    _p("That's perfect, thanks.", "confirm", answer="yes"),
    _p("Sounds good.", "confirm", answer="yes"),
    _p("No.", "confirm", answer="no"),
    _p("No, that's wrong.", "confirm", answer="no"),
    _p("Nope.", "confirm", answer="no"),
    _p("Hmm, I'm not sure.", "confirm", answer=None),
    _p("Yes, but make it 11 instead.", "confirm", answer=None),
    _p("Uh, what?", "confirm", answer=None),
    _p("Yeah, go ahead. Thank you.", "confirm", answer="yes"),
    _p("Mm-hmm.", "confirm", answer="yes"),
    # --- intents ------------------------------------------------------------------------------------
    _p("Can I talk to a person, please?", None, intent="human"),
    _p("Could you put me through to the receptionist?", None, intent="human"),
    _p("Actually, can I just speak to a real person?", None, intent="human"),
    _p("I'd like to speak to someone, please.", None, intent="human"),
    _p("What time do you close on Thursday?", None, intent="hours"),
    _p("Are you open on Saturdays?", None, intent="hours"),
    _p("What are your opening hours?", None, intent="hours"),
    _p("How much does a filling cost?", None, intent="price", service="filling"),
    _p("How much is teeth whitening?", None, intent="price", service="whitening"),
    _p("What do you charge for a cleaning?", None, intent="price", service="cleaning"),
    _p("Hi, I need to cancel my appointment.", None, intent="cancel"),
    _p("I can't make my appointment on Wednesday.", None, intent="cancel", date="2026-03-04"),
    _p("I need to move my appointment.", None, intent="move"),
    _p("Can I reschedule to Friday?", None, intent="move", date="2026-03-06"),
    _p("Where are you located?", None, intent="location"),
    _p("I'd like to book an appointment.", None, intent="book"),
    _p("Hi there! I'd like to make an appointment for a check-up.", None, intent="book", service="cleaning"),
    _p("That's all, thank you. Bye!", None, intent="goodbye"),
    _p("Forget it, I'll call back later.", None, intent="abort"),
)
