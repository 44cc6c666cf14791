"""Answers any agent's questions get, read from a caller's turn in plain spoken English: yes or no
(`yes_no`), the caller's name (`find_name`, `written_name`, `as_written`) and a pick among offered
options by position (`choose_option`). No vertical's words live here: an agent passes its own (its
services) as `not_names`. The booking reader (cells.agents.reception.intents) and the call loop's confirmation
and hand-off build on it."""

from __future__ import annotations

import re
from collections.abc import Set

from cells.dialogue.parsing import MONTHS
from cells.dialogue.saying import WEEKDAYS
from cells.dialogue.spoken import ORDINAL_UNITS, TENS, UNITS, tokenize

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

_RELATIONS = ("wife", "husband", "son", "daughter", "mother", "mom", "mum", "father", "dad", "kid", "child",
              "partner", "friend", "brother", "sister", "grandmother", "grandma", "grandfather", "grandpa",
              "grandson", "granddaughter", "boyfriend", "girlfriend", "niece", "nephew", "aunt", "uncle",
              "boy", "girl", "baby", "fiance", "fiancee")
_NAME_INTROS = (("my", "name", "is"), ("the", "name", "is"), ("name", "is"), ("names",), ("name",),
                ("this", "is"), ("i", "am"), ("im",), ("call", "me"), ("under",), ("its",), ("it", "is"),
                ("patient",), ("as",), *(("my", r) for r in _RELATIONS))
# Only count when the name was asked for ("its tuesday", "as soon as", "my son has a cold").
_WEAK_INTROS = {("its",), ("it", "is"), ("under",), ("name",), ("as",), *(("my", r) for r in _RELATIONS)}
_SURNAME_INTROS = (("last", "name"), ("surname",), ("family", "name"), ("second", "name"))
_SELF_NAMED_AFTER = {"here", "calling", "speaking"}  # "john smith here"
_SPELLING_CUES = {"spelled", "spelt", "thats", "spelling", "as", "like"}
NOT_NAMES = {
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
NOT_NAMES |= set(WEEKDAYS) | set(MONTHS) | set(UNITS) | set(TENS) | set(ORDINAL_UNITS)
# "perfect" or "sounds great", asked for the name, acknowledges; it names no one.
NOT_NAMES |= _YES_WORDS | _NO_WORDS | {w for p in _YES_PHRASES + _NO_PHRASES for w in p.split()}
# "im calling to ..." is no name; an explicit list, because King and Manning are.
NOT_NAMES |= {"under", "surname", "first", "last", "its", "called", "bye", "goodbye", "thanks",
               "clinic", "office", "should", "would", "will", "put", "down", "thats", "soon", "possible",
               "spelt", "spelling", "letters", "usually", "has", "sorry", "family", "second",
               "emergency", "consultation", "exam"}
# "im open to anything", "im flexible": how the caller is, not who
NOT_NAMES |= {"open", "flexible", "easy", "happy", "ready", "busy", "away", "out", "off", "back", "late",
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
_RELATIVE_CHOICES = {"earlier", "later"}
_CHOICE_WORDS = {"first": 0, "earliest": 0, "earlier": 0, "former": 0, "second": 1, "middle": 1, "third": 2,
                 "last": -1, "latest": -1, "later": -1, "latter": -1, "either": 0, "any": 0, "whichever": 0}


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



def _spelled(tokens: list[str], start: int) -> tuple[str, int] | None:
    """A word spelled letter by letter ('r a m a n'), and where the letters end."""
    j = start
    while j < len(tokens) and len(tokens[j]) == 1 and tokens[j].isalpha():
        j += 1
    return ("".join(tokens[start:j]), j) if j - start >= 2 else None


def _name_word(word: str) -> str:
    return "O'" + word[2:].capitalize() if word.startswith("o'") else word.capitalize()


def _collect_name(tokens: list[str], start: int, stop: Set[str] = NOT_NAMES) -> str | None:
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
                tokens[i + 1] not in stop:
            words.append("o'" + tokens[i + 1])  # "o connor"
            i += 2
            continue
        if tok in stop or tok in _VERBS_ING or not tok.isalpha() or len(tok) < 2:
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


def _surname(tokens: list[str], after: int, stop: Set[str] = NOT_NAMES) -> str | None:
    """'... and my last name is raman', said after the first name."""
    for i in range(after, len(tokens)):
        for intro in _SURNAME_INTROS:
            if tuple(tokens[i:i + len(intro)]) == intro:
                j = i + len(intro) + (1 if tokens[i + len(intro):i + len(intro) + 1] == ["is"] else 0)
                return _collect_name(tokens, j, stop)
    return None


def _name_like(tok: str, stop: Set[str]) -> bool:
    return len(tok) > 1 and tok.isalpha() and tok not in stop and tok not in _VERBS_ING


def _with_letter(tokens: list[str], stop: Set[str]) -> str | None:
    """'it's Kowalski with a K', 'Smith with an I': the name said before the letter it starts with."""
    for j in range(1, len(tokens) - 2):
        letter = tokens[j + 2]
        if tokens[j:j + 2] not in (["with", "a"], ["with", "an"]) or len(letter) != 1:
            continue
        k = j
        while k > 0 and j - k < 3 and _name_like(tokens[k - 1], stop):
            k -= 1
        if k < j and letter in tokens[j - 1]:  # "Kowalski with a K", "Smyth with a Y"
            return " ".join(_name_word(t) for t in tokens[k:j])
    return None


def find_name(tokens: list[str], expecting: bool = False, not_names: Set[str] = frozenset()) -> str | None:
    """The caller's name in a turn; `expecting`: the name was asked for, so bare words and weak intros
    ("it's ...") count. `not_names`: an agent's own words that name no one (its services)."""
    stop = NOT_NAMES | not_names if not_names else NOT_NAMES
    if (lettered := _with_letter(tokens, stop)) is not None:
        return lettered
    for i in range(len(tokens)):
        for intro in _NAME_INTROS:
            if tuple(tokens[i:i + len(intro)]) != intro or (intro in _WEAK_INTROS and not expecting):
                continue
            if (name := _collect_name(tokens, i + len(intro), stop)) is not None:
                if (last := _surname(tokens, i + len(intro), stop)) and last not in name:
                    name = f"{name} {last}"
                return name
    i = 0
    while i < len(tokens) and (tokens[i] in _FILLERS or tokens[i] in ("good", "morning", "afternoon")):
        i += 1
    if not expecting:  # "john smith here", "hi its mary calling about my appointment"
        name = _collect_name(tokens, i, stop)
        end = i + len(name.split()) if name else i
        return name if name and end < len(tokens) and tokens[end] in _SELF_NAMED_AFTER else None
    return _collect_name(tokens, i, stop) or _surname(tokens, 0, stop)


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



def as_written(name: str | None, text: str) -> str | None:
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


def written_name(tokens: list[str], text: str, not_names: Set[str],
                 stop: Set[str] = NOT_NAMES) -> str | None:
    """A name after a weak intro ('it's Anna Kowalski', 'under Tom Baker') that the recogniser wrote
    capitalised: Whisper capitalises names, so 'it's Thursday' or 'it's fine' stay no name."""
    for i in range(len(tokens)):
        for intro in _WEAK_INTROS:
            if tuple(tokens[i:i + len(intro)]) != intro:
                continue
            name = _collect_name(tokens, i + len(intro), stop)
            if name and all(_capitalised_mid_sentence(w.lower(), text) for w in name.split()):
                return name
    # A sentence of its own that is only a capitalised full name: "I need to cancel. John Smith."
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        words = re.findall(r"[A-Za-z'\u2019-]+", sentence)
        if 2 <= len(words) <= 3 and all(w[:1].isupper() for w in words) and sentence.endswith("."):
            name = _collect_name(tokenize(sentence), 0, stop)
            if name and len(name.split()) == len(words) and not set(tokenize(name)) & not_names:
                return name
    return None
