"""The Reception demo's clinic: Bright Smile Dental, as plain configuration data.

The calendar, the dialogue policy and the speech engine's domain vocabulary all read this one
object, so a tenant's clinic is a different instance of the same dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time

from cells.dialogue.saying import WEEKDAYS, say_time


@dataclass(frozen=True)
class Service:
    key: str  # stable identifier used in tool arguments and bookings
    name: str  # how the agent says it ("a check-up and cleaning")
    minutes: int
    price: int  # whole currency units; spoken as "about N dollars"
    synonyms: tuple[str, ...] = ()  # caller phrasings, matched as whole words in ASR text
    # What the visit is for, in a sentence: how a caller who names no synonym is matched by meaning.
    description: str = ""


@dataclass(frozen=True)
class ClinicConfig:
    name: str
    address: str
    phone: str
    # weekday index (0 = Monday) -> (open, close); missing days are closed.
    hours: dict[int, tuple[time, time]]
    services: tuple[Service, ...]
    dentists: tuple[str, ...]
    slot_minutes: int = 30  # grid for the slots the agent offers
    booking_grid_minutes: int = 15  # grid a caller-chosen start time must sit on
    horizon_days: int = 120  # how far ahead bookings are accepted
    currency: str = "dollars"
    extra_phrases: tuple[str, ...] = field(default=())

    @property
    def staff(self) -> tuple[str, ...]:
        return self.dentists

    def service(self, key: str) -> Service | None:
        for s in self.services:
            if s.key == key:
                return s
        return None


def default_clinic() -> ClinicConfig:
    weekday = (time(8, 0), time(17, 0))
    return ClinicConfig(
        name="Bright Smile Dental",
        address="42 Harbor Street, Suite 3, next to the Central Library",
        phone="555 0142",
        hours={0: weekday, 1: weekday, 2: weekday, 3: (time(8, 0), time(19, 0)), 4: weekday,
               5: (time(9, 0), time(13, 0))},
        services=(
            Service("cleaning", "check-up and cleaning", 60, 120,
                    ("cleaning", "clean", "cleaned", "checkup", "check up", "check-up", "hygiene",
                     "hygienist", "exam", "examination", "polish", "routine", "scale", "scaling"),
                    "A routine examination and a professional cleaning of the teeth."),
            Service("filling", "filling", 60, 180,
                    ("filling", "fillings", "filing", "cavity", "cavities", "hole in my tooth"),
                    "Repairing a decayed or damaged tooth by filling the cavity."),
            Service("whitening", "teeth whitening", 90, 350,
                    ("whitening", "whiten", "whitened", "bleaching", "white teeth", "teeth white", "whiter"),
                    "A cosmetic treatment that makes discoloured teeth whiter."),
            Service("emergency", "emergency visit", 30, 95,
                    ("emergency", "urgent", "toothache", "tooth ache", "tooth pain", "pain", "hurts",
                     "hurting", "broken tooth", "chipped", "cracked", "swollen", "swelling", "abscess",
                     "sore", "killing me", "aching", "aches", "throbbing", "bleeding", "infection",
                     "infected", "knocked out", "fell out", "broke my tooth", "broke a tooth"),
                    "Urgent treatment for bad toothache, pain, swelling or a broken tooth."),
            Service("consultation", "consultation", 30, 60,
                    ("consultation", "consult", "new patient", "new patients", "implant", "implants",
                     "braces", "invisalign", "crown", "veneers", "advice", "second opinion"),
                    "A talk about treatment options such as braces, implants, crowns or veneers."),
        ),
        dentists=("Dr. Patel", "Dr. Nguyen"),
    )


def spoken_hours(clinic: ClinicConfig, weekday: int | None = None) -> str:
    """Opening hours as a short phone-friendly sentence (for one day or the whole week)."""
    if weekday is not None:
        day = WEEKDAYS[weekday].capitalize()
        if weekday not in clinic.hours:
            return f"We're closed on {day}s."
        start, end = clinic.hours[weekday]
        return f"On {day}s we're open from {say_time(start)} to {say_time(end)}."
    groups: list[tuple[list[int], tuple[time, time]]] = []
    for d in range(7):
        if d not in clinic.hours:
            continue
        if groups and groups[-1][1] == clinic.hours[d] and groups[-1][0][-1] == d - 1:
            groups[-1][0].append(d)
        else:
            groups.append(([d], clinic.hours[d]))
    parts = []
    for days, (start, end) in groups:
        first, last = WEEKDAYS[days[0]].capitalize(), WEEKDAYS[days[-1]].capitalize()
        label = first if len(days) == 1 else f"{first} to {last}"
        parts.append(f"{label} {say_time(start)} to {say_time(end)}")
    closed = [WEEKDAYS[d].capitalize() for d in range(7) if d not in clinic.hours]
    text = "We're open " + ", ".join(parts) + "."
    if closed:
        text += f" We're closed on {' and '.join(closed)}."
    return text


# What the clinic's callers say around the slots, for the recogniser's language model.
# {service} {name} {date} {time} {digits} are filled from the domain.
CALLER_TEMPLATES = [
    "i'd like to book {service_np}", "i would like to book {service_np} on {date}",
    "i'd like to book {service_np} on {date} at {time}", "can i book {service_np} for {date}",
    "i want to make an appointment for {service_np}", "i need an appointment on {date} at {time}",
    "do you have anything on {date}", "do you have anything {date} at {time}",
    "is {time} on {date} available", "what about {date} at {time}", "{date} at {time}", "{date} {time}",
    "at {time}", "on {date}", "{date} please", "{time} please", "{time} works for me", "{date} works for me",
    "can i move my appointment to {date}", "i need to move my appointment to {date} at {time}",
    "i'd like to reschedule my {service} appointment", "can i reschedule to {date} at {time}",
    "i need to cancel my appointment", "i want to cancel my appointment on {date}",
    "please cancel my {service} on {date}", "cancel my appointment with {name}",
    "i'd like to see {name}", "can i see {name} on {date}", "is {name} available on {date}",
    "my name is {name}", "this is {name}", "it's {name}", "i'm a patient of {name}",
    "my number is {digits}", "my phone number is {digits}", "you can reach me at {digits}", "it's {digits}",
    "{digits}", "how much is {service_np}", "do you do {service}", "i'm calling about {service_np}",
    "yes {date} at {time} is fine", "no not {date}", "the earliest you have", "anything in the morning",
    "anything in the afternoon", "what times do you have", "what days are you open",
    "i'm calling to confirm my appointment", "i'd like to leave a message",
    "can i speak to someone", "i'm a new patient", "i have an appointment on {date}",
]

# A small set of common caller names so the STT domain model can recognise them.
# What the clinic's callers' answers sound like, for a recogniser that takes a text prompt (Whisper;
# Domain.examples): after "What would you like to come in for?" ("service") and at an open question ("").
# Without the open one tiny.en wrote "Can I book a click on when I'm happy" for "Can I book a check-up on
# Wednesday at eleven" and dropped the day and time of most first requests by eSpeak callers of other
# accents (python -m evals.calls.bench). No "real person" sentence: a tone once came out as "I'm a
# person." with one in.
CALLER_EXAMPLES = {
    "service": "A cleaning, please. A check-up. A filling.",
    "": "Hi, could I come in for a check-up on Monday at 10 in the morning? My name's Sarah Johnson.",
}

_COMMON_NAMES = (
    "john", "james", "michael", "david", "robert", "william", "daniel", "thomas", "mark", "paul",
    "peter", "steven", "kevin", "brian", "mary", "linda", "sarah", "susan", "karen", "lisa", "emma",
    "anna", "laura", "emily", "jessica", "jennifer", "maria", "olivia", "sophie", "alice", "smith",
    "johnson", "brown", "jones", "miller", "davis", "wilson", "taylor", "anderson", "thompson",
    "white", "martin", "clark", "lewis", "walker", "hall", "young", "king", "green", "baker",
)


def stt_vocabulary(clinic: ClinicConfig | None = None) -> dict[str, list[str]]:
    """Domain vocabulary for the speech recogniser's language model, as plain lists.

    Keys: "services" (service names and synonyms), "names" (dentists and common caller names),
    "phrases" (whole utterances callers typically say), "templates" (carrier sentences around the
    slots), "words" (the union, split into words).
    """
    clinic = clinic or default_clinic()
    services = sorted({s.name for s in clinic.services} | {w for s in clinic.services for w in s.synonyms})
    dentists = [d.replace("Dr. ", "doctor ").lower() for d in clinic.dentists]
    names = sorted(set(dentists) | set(_COMMON_NAMES))
    phrases = [
        "i would like to book an appointment", "i want to make an appointment",
        "can i book a cleaning", "i need a filling", "i have a toothache", "my tooth hurts",
        "i lost a filling", "my gums are bleeding", "i need to cancel my appointment",
        "i need to move my appointment", "can i reschedule", "what are your hours", "when are you open",
        "are you open on saturday", "how much is a cleaning", "what services do you offer",
        "where are you located", "can i talk to a real person", "yes please", "no thank you",
        "that's right", "that's correct", "no i said wednesday", "my name is", "my number is",
        "tuesday the fifth", "next monday", "this friday", "tomorrow morning", "nine thirty",
        "half past nine", "quarter to ten", "two p m", "ten a m", "in the afternoon", "that's all", "goodbye",
        *clinic.extra_phrases,
    ]
    words = sorted({w for text in (*services, *names, *phrases, *WEEKDAYS) for w in text.split()})
    return {"services": services, "names": names, "phrases": phrases, "templates": list(CALLER_TEMPLATES),
            "words": words}
