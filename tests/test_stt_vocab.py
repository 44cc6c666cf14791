"""Word answers held to their slot's vocabulary (cells/providers/stt/whisper_vocab.py): a name, yes/no, day
or time turn that Whisper wrote as something else is decoded again with only the slot's words, and the
result is taken only when it reads as the slot. The audio is eSpeak NG through the phone path, in the
voices of the unscripted callers (cells/simulator/other_callers.py) whose turns tiny.en misheard."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from cells.agents.reception.clinic import stt_vocabulary
from cells.dialogue.answers import yes_no
from cells.dialogue.spoken import tokenize
from cells.providers.stt.context import Domain
from cells.providers.stt.whisper_stt import WhisperStt
from cells.providers.stt.whisper_vocab import vocab_slot, vocab_suppress
from cells.simulator.caller import CallerLine, line_audio
from cells.speech.espeak import EspeakEngine
from evals.calls.turns import phone_pcm16
from evals.stt.phone_path import Variant, phone_audio, read_wav

# As in test_stt_slots.py: the shared speech-dev set beside the checkout, or AUTOSPEAK_SPEECH_DEV.
SPEECH_DEV = Path(os.environ.get("AUTOSPEAK_SPEECH_DEV")
                  or Path(__file__).resolve().parents[2] / "shared" / "speech-dev")
NAMES = ["sarah green", "peter clark", "emma", "doctor patel"]


@pytest.fixture(scope="module")
def stt() -> WhisperStt:
    vocab = stt_vocabulary()
    domain = Domain(services=vocab["services"], names=vocab["names"], extra_phrases=vocab["phrases"])
    return WhisperStt(domain, hold_words=True)


def phone(text: str, voice: str, rate: int) -> np.ndarray:
    """The line as the simulated caller sends it (8 kHz mu-law) and the worker hands it on (16 kHz)."""
    return phone_pcm16(line_audio(CallerLine(text), EspeakEngine(), voice, rate))


def test_a_name_fits_only_when_every_word_of_it_is_declared() -> None:
    slot = vocab_slot("name", Domain(names=NAMES))
    assert slot is not None
    assert slot.fits("My name is Sarah Green.") and slot.fits("Peter Clark.")
    assert not slot.fits("My name is Erin Reed.")  # read as a name, but not one the agent knows
    assert not slot.fits("Bigger Clark.")
    # A held name with fewer words than the first loses the surname: "Emma Worg" -> "Emma" is not taken.
    assert not slot.takes("My name is Emma.", "My name is Emma Worg.")
    assert slot.takes("My name is Sarah Green.", "My name is Erin Reed.")
    assert not slot.takes("My.", "My problem.")
    assert vocab_slot("name", Domain()) is None and vocab_slot("name", None) is None  # nothing to hold to


def test_the_hold_is_off_unless_asked_for() -> None:
    # It invents answers from real speech ("Nine." -> "Yes." at a yes/no question): opt-in only.
    assert WhisperStt()._vocab_slot("yes_no") is None
    assert WhisperStt(hold_words=True)._vocab_slot("yes_no") is not None


def test_slots_without_a_vocabulary_are_left_alone() -> None:
    for hint in (None, "", "digits", "service", "unknown"):
        assert vocab_slot(hint, Domain(names=NAMES)) is None


def test_a_long_turn_is_no_yes_or_no_to_hold() -> None:
    slot = vocab_slot("yes_no", None)
    assert slot is not None
    assert not slot.fits("And stored.")  # short and no answer: decoded again
    assert slot.fits("Actually, can we make it stop there instead.")  # a correction: left as heard
    assert slot.fits("Yes, lovely.")


def test_the_vocabulary_allows_the_slot_words_and_bans_others(stt: WhisperStt) -> None:
    tokenizer = stt.engine.tokenizer
    day = vocab_slot("date", None)
    assert day is not None
    banned = set(vocab_suppress(tokenizer, day))
    assert -1 in banned and tokenizer.eot not in banned
    for text in (" Tuesday", " Thursday", " at", " 9", " o'clock", ".", " next", " March"):
        assert not set(tokenizer.encode(text)) & banned, text
    for text in (" refuse", " toothache", " Sarah", " cleaning"):
        assert set(tokenizer.encode(text)) & banned, text
    name = vocab_slot("name", Domain(names=NAMES))
    assert name is not None
    banned = set(vocab_suppress(tokenizer, name))
    assert not set(tokenizer.encode(" Green")) & banned and set(tokenizer.encode(" Reed")) & banned
    assert set(tokenizer.encode(" 5")) & banned  # no numerals in a name


def test_a_declared_name_misheard_is_heard_under_the_name_hint(stt: WhisperStt) -> None:
    # The "two-sentences" caller (en-us+f3, 180 wpm): unconstrained tiny.en writes "Erin Reed".
    audio = phone("My name is Sarah Green.", "en-us+f3", 180)
    assert "sarah green" in asyncio_transcribe(stt, audio, "name").lower()


def test_sounds_good_is_heard_as_a_yes_under_the_yes_no_hint(stt: WhisperStt) -> None:
    # Unconstrained: "And stored." (no answer; the agent asks again or reads a later "no" as the answer).
    audio = phone("Sounds good.", "en-us+f3", 180)
    assert yes_no(tokenize(asyncio_transcribe(stt, audio, "yes_no"))) == "yes"


def test_a_correction_at_the_read_back_is_not_made_a_yes(stt: WhisperStt) -> None:
    # The "correct-after-readback" caller (en-029, 165 wpm) changes the day when asked to confirm. Held to
    # answer words it came out as "Can we can we can do it." - a yes that would book the wrong day.
    audio = phone("Actually, can we make it Thursday instead?", "en-029", 165)
    assert yes_no(tokenize(asyncio_transcribe(stt, audio, "yes_no"))) is None


@pytest.mark.skipif(not (SPEECH_DEV / "manifest.csv").is_file(), reason="speech-dev set not found")
def test_a_real_word_held_to_answers_is_kept_when_the_answer_is_unlikely(stt: WhisperStt) -> None:
    # Real people saying "nine" where a yes/no was expected: held to answer words each comes out as
    # "No, no.", far less likely than the "Nine." Whisper heard; the caller's word stands.
    for n in (2, 3, 4):
        pcm, rate = read_wav(SPEECH_DEV / "audio" / f"sc_nine_f5733968_nohash_{n}.wav")
        audio = phone_audio(pcm, rate, Variant("clean"), np.random.default_rng(0))
        text = asyncio_transcribe(stt, audio, "yes_no")
        assert yes_no(tokenize(text)) is None and "nine" in text.lower(), (n, text)


def asyncio_transcribe(stt: WhisperStt, audio: np.ndarray, hint: str) -> str:
    return asyncio.run(stt.transcribe(audio, hint))
