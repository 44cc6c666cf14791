"""Does speech over the agent interrupt it?

Callers make sounds while the agent talks that are not bids for the turn: backchannels ("uh-huh",
"mm-hm", "yeah", "right"), coughs, line noise. Speech that lasts at least `min_ms` interrupts
the agent only once the recogniser has heard `min_words` words with content in it (not
backchannels; two, because a recogniser hears a word or so in a cough), or once it has lasted
`sure_ms` (a recogniser that gives no partials, or one that lags). A final transcript that arrives
while the agent still talks takes the turn only with as many content words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Words a listener says to show they are following, not to take the turn.
BACKCHANNEL_WORDS = frozenset(
    "uh-huh uhhuh uh huh mm mmm mhm mm-hm mm-hmm hm hmm um uh ah oh aha yeah yep yes yup okay ok "
    "right sure alright cool great".split()
)
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def content_words(text: str) -> int:
    """How many words of `text` are not backchannel words."""
    return sum(w not in BACKCHANNEL_WORDS for w in _WORD.findall(text.lower()))


def is_backchannel(text: str) -> bool:
    """Nothing but backchannel words (or nothing at all)."""
    return content_words(text) == 0


def voiced(speaking: bool, speech_probs: Sequence[float], floor: float = 0.35) -> bool:
    """The VAD is in speech and this frame sounds like it: not its release hangover (~170 ms of
    silence it still calls speech), which would otherwise stretch every short sound."""
    return speaking and (not speech_probs or max(speech_probs) >= floor)


def interrupts(speech_ms: float, partial: str, *, min_ms: float, sure_ms: float, min_words: int = 1) -> bool:
    """Whether `speech_ms` of caller speech over the agent, heard so far as `partial`, cuts it off
    (`min_words`: how many non-backchannel words it takes)."""
    if speech_ms < min_ms:
        return False
    return speech_ms >= sure_ms or content_words(partial) >= max(1, min_words)
