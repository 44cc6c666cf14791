"""Reproducible eSpeak NG synthesis for simulated callers (cells/speech/espeak_fresh.py): a line comes
out the same samples whatever the process (or the helper) synthesised before it."""

from __future__ import annotations

import numpy as np
import pytest

from cells.speech import espeak_fresh
from cells.speech.espeak import EspeakEngine

LINE = "This is Anna Kowalski, please call me back about my filling."


def test_a_line_is_the_same_samples_whatever_was_said_before() -> None:
    espeak_fresh._cached.cache_clear()
    first = espeak_fresh.synthesize(LINE, voice="en-us", rate_wpm=170)
    # Other speech in between, in this process's own library and in the helper.
    EspeakEngine().synthesize("Something else entirely, at another rate.", voice="en-us+f2", rate_wpm=150)
    espeak_fresh.synthesize("And more words from the helper.", voice="en-gb", rate_wpm=190)
    espeak_fresh._cached.cache_clear()  # synthesised again, not served from the cache
    again = espeak_fresh.synthesize(LINE, voice="en-us", rate_wpm=170)
    assert first.dtype == np.int16 and len(first) > EspeakEngine().sample_rate  # over a second of speech
    assert np.array_equal(first, again)
    assert not np.array_equal(first, espeak_fresh.synthesize(LINE, voice="en-us", rate_wpm=150))


def test_bad_arguments_are_refused_as_the_engine_refuses_them() -> None:
    with pytest.raises(ValueError, match="rate_wpm"):
        espeak_fresh.synthesize("hello", rate_wpm=5)
    with pytest.raises(ValueError, match="nosuch"):
        espeak_fresh.synthesize("hello", voice="en-us+nosuch")
    assert len(espeak_fresh.synthesize("hello")) > 0  # the helper is still serving
