"""A trigram language model built from an agent's domain, for PocketSphinx.

Open-vocabulary recognition of phone audio with the generic LM is poor; a small LM over what callers of
this agent actually say (its services and names, dates, times, digits, confirmations, the sentences it
declares) is
far more accurate. A small share of general conversational English keeps off-script callers from being
forced into domain phrases. Words missing from the CMU dictionary are dropped (no g2p) and reported.

The model is Witten-Bell smoothed and written as ARPA text with back-off weights; Witten-Bell copes with
the fractional counts that weighting the general corpus produces.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cells.providers.stt.context import Domain

__all__ = ["Domain", "DomainLm", "build_domain_lm"]

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
            "eighteenth", "nineteenth", "twentieth"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]

CONFIRMATIONS = [
    "yes", "yes please", "yeah", "yep", "sure", "okay", "ok", "that's right", "that's correct", "correct",
    "sounds good", "that works", "perfect", "great", "no", "no thanks", "no thank you", "nope", "not really",
    "that's wrong", "cancel", "cancel that", "never mind", "i'm not sure", "hold on", "wait", "sorry",
    "can you repeat that", "thank you", "thanks", "goodbye", "bye", "hello", "hi",
]

# Carrier sentences around the slots when the agent declares none of its own (`Domain.templates`): what
# callers of any business that takes a name, a number, a day and a time say. {service} {name} {date}
# {time} {digits} are filled from the domain.
NEUTRAL_TEMPLATES = [
    "{date} at {time}", "{date} {time}", "at {time}", "on {date}", "{date} please", "{time} please",
    "{time} works for me", "{date} works for me", "what about {date} at {time}", "my name is {name}",
    "this is {name}", "it's {name}", "my number is {digits}", "my phone number is {digits}",
    "you can reach me at {digits}", "it's {digits}", "{digits}", "i'm calling about {service_np}",
    "do you do {service}", "how much is {service_np}", "i'd like to leave a message",
    "can i speak to someone", "what times do you have", "what days are you open",
]

# Off-script but ordinary things callers say, in the register of a phone call.
GENERAL = """\
hello how are you
i'm fine thanks how are you
good morning
good afternoon
i have a question
i was wondering if you could help me
could you help me with something
i'm not sure what i need
let me check my calendar
give me a second
hang on a minute
sorry i didn't catch that
could you say that again
could you speak a little slower
what did you say
i can't hear you very well
the line is bad
i'll call back later
i'll have to think about it
let me ask my wife
let me ask my husband
that's fine
that's okay
that sounds good to me
i don't know
i don't think so
i think so
maybe next week
maybe later
what's your address
where are you located
how do i get there
is there parking
do you take insurance
how much does it cost
how long will it take
what time do you close
what time do you open
are you open on the weekend
what are your opening hours
what are your opening times
what are your business hours
what are your hours
when are you open
when do you open
when do you close
how late are you open
how late are you open tonight
are you open today
are you open tomorrow
are you open right now
are you open on saturday
are you open on sunday
i'm running late
i'm stuck in traffic
i'll be there in ten minutes
it's an emergency
can i talk to a person
can i talk to a real person
i want to speak to the manager
is this a recording
are you a robot
thank you so much for your help
have a nice day
you too
see you then
that's all
nothing else thanks
i need to check with my work
what do you recommend
can you send me a text
can you send me an email
can you call me back
what was your name again
how do you spell that
i said yes
i said no
not that one
the other one
the first one
the second one
""".splitlines()


# Callers' names are open vocabulary; beyond the agent's own list, common US/UK first names and surnames
# (census-frequent, several origins) give a caller's name a chance to be in the vocabulary at all.
COMMON_FIRST_NAMES = """
joseph charles christopher matthew anthony andrew joshua ryan jason jose carlos luis juan ahmed
mohammed wei nancy patricia barbara elizabeth margaret michelle amanda melissa stephanie rebecca
rachel nicole ashley megan hannah grace chloe sofia isabella mia ava charlotte amelia lucy jack
oliver harry george noah liam ethan lucas john james michael david robert william daniel thomas mark
paul peter steven kevin brian mary linda sarah susan karen lisa emma anna laura emily jessica
jennifer maria olivia sophie alice""".split()
COMMON_SURNAMES = """
smith johnson williams brown jones miller davis wilson taylor anderson thomas moore martin jackson
thompson white harris clark lewis robinson walker young allen king wright scott hill green adams
baker nelson hall campbell mitchell roberts carter phillips evans turner parker collins edwards
stewart morris murphy cook rogers morgan cooper reed bailey bell kelly howard ward cox richardson
wood watson brooks bennett gray hughes price sullivan russell garcia martinez rodriguez hernandez
lopez gonzalez perez sanchez ramirez torres flores rivera gomez diaz reyes cruz morales ortiz nguyen
kim lee chen wang patel singh khan ali shah kumar cohen""".split()


def _number(n: int) -> str:
    if n < 10:
        return ONES[n]
    if n < 20:
        return TEENS[n - 10]
    tens, ones = divmod(n, 10)
    return TENS[tens] + ("" if ones == 0 else " " + ONES[ones])


def _ordinal(n: int) -> str:
    if n <= 20:
        return ORDINALS[n - 1]
    tens, ones = divmod(n, 10)
    return TENS[tens] + " " + ORDINALS[ones - 1] if ones else TENS[tens][:-1] + "ieth"


def date_phrases() -> list[str]:
    """Every date expression on its own (so each word has sentence-start and -end contexts)."""
    days = ["today", "tomorrow", "the day after tomorrow", "this week", "next week", "tomorrow morning",
            "tomorrow afternoon"]
    for d in WEEKDAYS:
        days += [d, f"next {d}", f"this {d}", f"{d} morning", f"{d} afternoon", f"this coming {d}"]
    for n in range(1, 32):
        days.append(f"the {_ordinal(n)}")
    for m in MONTHS:
        days += [f"{m} {_ordinal(n)}" for n in (1, 2, 3, 5, 10, 12, 15, 20, 21, 22, 25, 28, 30)]
        days.append(f"the {_ordinal(14)} of {m}")
    return days


def time_phrases() -> list[str]:
    times = ["noon", "midday", "twelve noon", "midnight", "the morning", "the afternoon", "lunchtime"]
    minutes = ["", "o'clock", "fifteen", "thirty", "forty five", "oh five", "ten", "twenty", "forty", "fifty"]
    for h in range(1, 13):
        for m in minutes:
            base = f"{_number(h)} {m}".strip()
            times += [base, f"{base} a m", f"{base} p m"]
        times += [f"{_number(h)} in the morning", f"{_number(h)} in the afternoon",
                  f"half past {_number(h)}", f"quarter past {_number(h)}", f"quarter to {_number(h)}"]
    return times


def digit_phrases(count: int, rng: random.Random) -> list[str]:
    """Digit strings as callers read them: 3 to 11 digits, sometimes in groups with "oh" for zero."""
    out = []
    for _ in range(count):
        length = rng.choice((3, 4, 4, 6, 7, 7, 7, 8, 10, 10, 10, 11))
        digits = [rng.choice(ONES[1:] if i == 0 and rng.random() < 0.7 else ONES) for i in range(length)]
        if rng.random() < 0.3:
            digits = ["oh" if d == "zero" else d for d in digits]
        out.append(" ".join(digits))
    return out


def normalise(text: str) -> str:
    text = text.lower().replace("a.m.", "a m").replace("p.m.", "p m").replace("dr.", "doctor")
    return " ".join(re.findall(r"[a-z]+(?:'[a-z]+)?", text))


class _Slots:
    """Random slot values, drawn the way callers use them (weekdays far more than "the fourteenth of may")."""

    def __init__(self, domain: Domain, rng: random.Random) -> None:
        self.rng = rng
        # An agent that declares none gets neutral stand-ins (a slot form needs a value), not a clinic's.
        self.services = [normalise(s) for s in domain.services] or ["a booking"]
        names = [normalise(n) for n in domain.names] or ["the manager"]
        self.titled = [n for n in names if n.split()[0] in ("doctor", "dr", "the")]
        single = [n for n in names if n not in self.titled and " " not in n]
        # The agent's own names twice over: its patients and staff are likelier than the country at large.
        self.firsts = single * 2 + COMMON_FIRST_NAMES
        self.lasts = single * 2 + COMMON_SURNAMES
        self.full_names = [n for n in names if n not in self.titled and " " in n]
        self.dates = date_phrases()
        self.times = time_phrases()

    def pick(self, values: Sequence[str]) -> str:
        return self.rng.choice(values)

    def service(self) -> str:
        return self.pick(self.services)

    def confirm(self) -> str:
        return self.pick(CONFIRMATIONS)

    def service_np(self) -> str:
        s = self.pick(self.services)
        return self.pick([s, f"{'an' if s[0] in 'aeiou' else 'a'} {s}", f"my {s}"])

    def weekday(self) -> str:
        return self.pick(WEEKDAYS)

    def date(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return self.pick(["", "", "next ", "this ", "on "]) + self.weekday()
        if r < 0.6:
            return self.pick(["today", "tomorrow", "next week", "tomorrow morning", "this week"])
        if r < 0.75:
            return f"{self.weekday()} the {_ordinal(self.rng.randint(1, 31))}"
        return self.pick(self.dates)

    def time(self) -> str:
        r = self.rng.random()
        hour = _number(self.rng.randint(1, 12))
        if r < 0.35:
            suffixes = ["", "", " o'clock", " a m", " p m", " in the morning", " in the afternoon"]
            return hour + self.pick(suffixes)
        if r < 0.55:
            return f"{hour} {self.pick(['thirty', 'fifteen', 'forty five', 'fifteen', 'thirty'])}"
        return self.pick(self.times)

    def name(self) -> str:
        r = self.rng.random()
        if r < 0.6:
            return f"{self.pick(self.firsts)} {self.pick(self.lasts)}"
        if r < 0.75 and self.full_names:
            return self.pick(self.full_names)
        return self.pick(self.firsts + self.lasts)

    def digits(self) -> str:
        return digit_phrases(1, self.rng)[0]

    def fill(self, template: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: getattr(self, m.group(1))(), template)


# Short answers to a receptionist's questions, said as whole turns. These get most of the domain mass:
# in a booking call most caller turns are such fragments, and an LM that only knows carrier sentences
# pulls a bare "five five five ..." or "thursday" towards "i'd like to ...".
ANSWER_FORMS: dict[str, tuple[float, list[str]]] = {
    "date": (0.14, ["{date}", "{date}", "{date}", "on {date}", "{date} please", "how about {date}",
                    "what about {date}", "maybe {date}", "{date} if possible", "{date} would be good",
                    "could i come in {date}", "is {date} possible", "do you have {date}",
                    "{date} is fine", "{date} works", "i can do {date}", "any time {date}"]),
    "time": (0.10, ["{time}", "{time}", "at {time}", "around {time}", "{time} please", "about {time}",
                    "after {time}", "before {time}", "{time} would be good", "how about {time}",
                    "{time} is fine"]),
    "date_time": (0.12, ["{date} at {time}", "{date} at {time}", "{date} {time}", "{date} around {time}",
                         "{weekday} morning at {time}", "{weekday} afternoon at {time}",
                         "{date} at {time} please", "how about {date} at {time}",
                         "could i do {date} at {time}",
                         "{time} on {date}", "{date} in the morning", "{date} in the afternoon"]),
    "name": (0.12, ["{name}", "{name}", "my name is {name}", "it's {name}", "this is {name}",
                    "{name} speaking", "yes it's {name}", "the name is {name}", "{name} {name}",
                    "it's {name} {name}"]),
    "digits": (0.14, ["{digits}", "{digits}", "{digits}", "my number is {digits}", "it's {digits}",
                      "my phone number is {digits}", "the number is {digits}", "that's {digits}",
                      "you can reach me at {digits}", "no it's {digits}"]),
    "confirm": (0.12, ["{confirm}", "{confirm}", "{confirm}", "{confirm} {confirm}", "no i said {date}",
                       "no {date}", "no i said {time}", "no it's {name}", "yes {date} at {time}",
                       "yes {date} is fine", "no not {date}", "{confirm} thank you", "{confirm} goodbye",
                       "no that's all thank you", "no that's all thank you goodbye", "that's all thanks"]),
    "service": (0.08, ["{service_np}", "i need {service_np}", "i'd like {service_np}",
                       "i think i need {service_np}",
                       "i'm calling about {service_np}", "i'd like to book {service_np} please",
                       "hi i would like to book {service_np}", "i want to get {service_np}"]),
    "request": (0.18, NEUTRAL_TEMPLATES),  # or the templates the agent declares
}


def domain_sentences(domain: Domain, size: int = 6000, seed: int = 0) -> list[str]:
    """The domain corpus: every slot value on its own once, then `size` sentences drawn from the answer
    forms in their shares. Drawing instead of enumerating keeps the shares independent of how many
    services, names or dates there are."""
    rng = random.Random(seed)
    slots = _Slots(domain, rng)
    out = [*slots.dates, *slots.times, *slots.services, *slots.titled, *slots.full_names,
           *slots.firsts, *slots.lasts, *digit_phrases(30, rng), *ONES, "oh", *CONFIRMATIONS]
    extra = [normalise(p) for p in domain.extra_phrases]
    out += extra * 5
    for kind, (share, forms) in ANSWER_FORMS.items():
        if kind == "request" and domain.templates:
            forms = list(domain.templates)
        for _ in range(round(size * share)):
            out.append(slots.fill(rng.choice(forms)))
    return [s for s in (normalise(s) for s in out) if s]


@lru_cache(maxsize=4)
def load_dictionary(path: str) -> dict[str, list[str]]:
    """CMU-format dictionary: word -> its pronunciation lines (alternates are "word(2)")."""
    entries: dict[str, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            entries[head.split("(", 1)[0]].append(line.rstrip("\n"))
    return dict(entries)


@dataclass
class DomainLm:
    arpa: str
    dictionary: str  # the pronunciation lines of the LM's vocabulary only (small and fast to load)
    vocabulary: list[str]
    dropped_words: list[str]  # not in the pronunciation dictionary
    sentences: int

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        lm_path, dict_path = directory / "domain.lm", directory / "domain.dict"
        lm_path.write_text(self.arpa, encoding="utf-8")
        dict_path.write_text(self.dictionary, encoding="utf-8")
        return lm_path, dict_path


def build_domain_lm(domain: Domain, dictionary_path: str, general_weight: float = 0.15,
                    extra_corpus: Sequence[str] = ()) -> DomainLm:
    """`general_weight` is the share of count mass given to the general conversational corpus."""
    pron = load_dictionary(dictionary_path)
    dropped: set[str] = set()

    def keep(sentences: Iterable[str]) -> list[list[str]]:
        out = []
        for s in sentences:
            words = normalise(s).split()
            dropped.update(w for w in words if w not in pron)
            words = [w for w in words if w in pron]
            if words:
                out.append(words)
        return out

    domain_corpus = keep(domain_sentences(domain) + list(extra_corpus))
    general_corpus = keep(GENERAL)
    d_tokens = sum(len(s) for s in domain_corpus)
    g_tokens = sum(len(s) for s in general_corpus)
    scale = general_weight / (1 - general_weight) * d_tokens / max(g_tokens, 1)
    counts = _count([(s, 1.0) for s in domain_corpus] + [(s, scale) for s in general_corpus])
    vocab = sorted({w for s in domain_corpus + general_corpus for w in s})
    lines = [line for w in vocab for line in pron[w]]
    return DomainLm(arpa=_arpa(counts, vocab), dictionary="\n".join(lines) + "\n", vocabulary=vocab,
                    dropped_words=sorted(dropped), sentences=len(domain_corpus) + len(general_corpus))


Counts = list[dict[tuple[str, ...], float]]


def _count(weighted: Iterable[tuple[list[str], float]]) -> Counts:
    counts: Counts = [defaultdict(float) for _ in range(3)]
    for words, weight in weighted:
        seq = ["<s>", *words, "</s>"]
        for n in range(1, 4):
            for i in range(len(seq) - n + 1):
                gram = tuple(seq[i:i + n])
                if gram != ("<s>",):
                    counts[n - 1][gram] += weight
    return counts


def _arpa(counts: Counts, vocab: list[str]) -> str:
    """Witten-Bell interpolated trigram as ARPA: p(w|h) = (c(hw) + T(h) p(w|h')) / (c(h) + T(h)) for seen
    hw, back-off weight T(h) / (c(h) + T(h)) for h, where T(h) is the number of word types after h."""
    words = [*vocab, "</s>"]
    uni_total = sum(counts[0].values())
    p1 = {w: (counts[0].get((w,), 0.0) + 1.0 / len(words)) / (uni_total + 1.0) for w in words}
    probs: list[dict[tuple[str, ...], float]] = [{(w,): p for w, p in p1.items()}, {}, {}]
    bows: list[dict[tuple[str, ...], float]] = [{}, {}]
    for n in (2, 3):
        ctx_total: dict[tuple[str, ...], float] = defaultdict(float)
        ctx_types: dict[tuple[str, ...], int] = defaultdict(int)
        for gram, c in counts[n - 1].items():
            ctx_total[gram[:-1]] += c
            ctx_types[gram[:-1]] += 1
        for gram, c in counts[n - 1].items():
            h = gram[:-1]
            lower = _backed_off(probs, bows, gram[1:])
            probs[n - 1][gram] = (c + ctx_types[h] * lower) / (ctx_total[h] + ctx_types[h])
        for h, total in ctx_total.items():
            bows[n - 2][h] = ctx_types[h] / (total + ctx_types[h])
    probs[0][("<s>",)] = 0.0
    out = ["\\data\\"] + [f"ngram {n}={len(probs[n - 1])}" for n in (1, 2, 3)]
    for n in (1, 2, 3):
        out.append(f"\n\\{n}-grams:")
        for gram, p in sorted(probs[n - 1].items()):
            lp = -99.0 if p <= 0 else math.log10(p)
            bow = bows[n - 1].get(gram) if n < 3 else None
            out.append(f"{lp:.6f} {' '.join(gram)}" + (f" {math.log10(bow):.6f}" if bow else ""))
    out.append("\n\\end\\\n")
    return "\n".join(out)


def _backed_off(probs: list[dict[tuple[str, ...], float]], bows: list[dict[tuple[str, ...], float]],
                gram: tuple[str, ...]) -> float:
    """p(gram[-1] | gram[:-1]) from the model built so far (orders below len(gram) + 1)."""
    if gram in probs[len(gram) - 1]:
        return probs[len(gram) - 1][gram]
    bow = bows[len(gram) - 2].get(gram[:-1], 1.0)
    return bow * _backed_off(probs, bows, gram[1:])
