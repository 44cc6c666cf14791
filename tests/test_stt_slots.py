"""Slot-constrained decoding (cells/providers/stt/whisper_slots.py): when the agent expects digits, Whisper
may write only digits; a turn that is not a number stays as the caller said it; other slots are untouched.

Real human recordings come from the speech-dev set (8 kHz Speech Commands clips) when it is present
(AUTOSPEAK_SPEECH_DEV, or ../shared/speech-dev beside the checkout); they go through the phone path first.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from cells.agents.reception.clinic import CALLER_EXAMPLES
from cells.providers.base import EndOfTurn, Frame
from cells.providers.stt.whisper_prompt import HINT_PROMPTS
from cells.providers.stt.whisper_slots import ALLOWED, fits_slot, suppress_tokens
from cells.providers.stt.whisper_stt import WhisperStt
from cells.speech.espeak import EspeakEngine
from evals.stt.digit_sequences import build
from evals.stt.phone_path import Variant, phone_audio, read_wav
from evals.stt.scoring import hypothesis_digits, reference_digits

# As in test_stt_bench.py: CI checks the repository out beside ../shared; AUTOSPEAK_SPEECH_DEV overrides.
SPEECH_DEV = Path(os.environ.get("AUTOSPEAK_SPEECH_DEV")
                  or Path(__file__).resolve().parents[2] / "shared" / "speech-dev")
needs_dev = pytest.mark.skipif(not (SPEECH_DEV / "manifest.csv").is_file(),
                               reason=f"speech-dev set not found at {SPEECH_DEV}")
ONLY_DIGITS = re.compile(r"[\s0-9.,+\-]*")


@pytest.fixture(scope="module")
def stt() -> WhisperStt:
    return WhisperStt()


def dev_clip(name: str) -> np.ndarray:
    pcm, rate = read_wav(SPEECH_DEV / "audio" / name)
    return phone_audio(pcm, rate, Variant("clean"), np.random.default_rng(0))


def final(stt: WhisperStt, audio: np.ndarray, hint: str | None) -> str:
    async def frames() -> AsyncIterator[Frame]:
        for i in range(0, len(audio), 320):
            yield audio[i:i + 320]
        yield EndOfTurn(hint)

    async def run() -> list[str]:
        return [t.text async for t in stt.stream(frames()) if t.is_final]

    (text,) = asyncio.run(run())
    return text


def test_the_digit_constraint_leaves_only_number_tokens(stt: WhisperStt) -> None:
    tokenizer = stt.engine.tokenizer
    banned = set(suppress_tokens(tokenizer, "digits") or [])
    assert -1 in banned  # the model's own suppressed symbols stay suppressed
    allowed = [i for i in range(tokenizer.eot) if i not in banned]
    assert all(ALLOWED["digits"].fullmatch(tokenizer.decode([i])) for i in allowed)
    for text in (" 5", "5", " 0", ",", "."):
        assert set(tokenizer.encode(text)) <= set(allowed), text
    for text in (" nine", " five", " Right", " oh", " Sarah"):
        assert set(tokenizer.encode(text)) & banned, text
    assert tokenizer.eot not in banned


def test_other_slots_are_not_constrained(stt: WhisperStt) -> None:
    for hint in (None, "", "name", "yes_no", "date", "time", "service", "unknown"):
        assert suppress_tokens(stt.engine.tokenizer, hint) is None
        assert fits_slot("Sarah Johnson.", hint)


def test_what_counts_as_a_number_already() -> None:
    assert fits_slot("5 5 5, 4 4 1 8.", "digits")
    assert fits_slot("Five five five, double four one eight.", "digits")
    assert not fits_slot("Right.", "digits")
    assert not fits_slot("It's 5 5 5, 0 1 2.", "digits")
    assert not fits_slot(".", "digits")


def test_a_spoken_number_is_written_in_digits_under_the_constraint(stt: WhisperStt) -> None:
    engine = EspeakEngine()
    pcm = engine.synthesize("It's five five five, four four one eight.", voice="en-us", rate_wpm=160)
    audio = phone_audio(pcm, engine.sample_rate, Variant("clean"), np.random.default_rng(1))
    audio = audio.astype(np.float32) / 32768
    free = stt.engine.decode(audio, HINT_PROMPTS["digits"])
    decoded = stt.engine.decode(audio, HINT_PROMPTS["digits"],
                                suppress=suppress_tokens(stt.engine.tokenizer, "digits"))
    # Over the phone band eSpeak's "five" loses its /f/: unconstrained tiny.en hears "time time time".
    assert re.search(r"[a-z]{2}", free.text.lower().replace("it's", "")), free.text
    assert ONLY_DIGITS.fullmatch(decoded.text), decoded.text
    # Whisper still merges a repeated digit ("5 5 4 4 1 8"): the tail must be right.
    assert hypothesis_digits(decoded.text).endswith("4418") and hypothesis_digits(decoded.text)[0] == "5"


@needs_dev
def test_a_real_recording_of_a_digit_decodes_to_the_digit(stt: WhisperStt) -> None:
    audio = dev_clip("sc_nine_fb495c43_nohash_0.wav").astype(np.float32) / 32768
    prompt = CALLER_EXAMPLES[""]  # the clinic's open-question prompt: a request in words
    free = stt.engine.decode(audio, prompt)
    constrained = stt.engine.decode(audio, prompt, suppress=suppress_tokens(stt.engine.tokenizer, "digits"))
    assert re.search(r"[a-z]", free.text.lower()), free.text  # unconstrained it writes the word
    assert ONLY_DIGITS.fullmatch(constrained.text) and hypothesis_digits(constrained.text) == "9"


@needs_dev
def test_a_word_said_where_digits_were_expected_is_kept(stt: WhisperStt) -> None:
    # The constrained decode writes a digit for "right", but unsure of it; the caller's word stands.
    for name in ("sc_right_f292725f_nohash_0.wav", "sc_right_fac74f6a_nohash_0.wav"):
        text = final(stt, dev_clip(name), "digits")
        assert text.strip(" .?!").lower() == "right", (name, text)


@needs_dev
def test_phone_numbers_are_built_from_real_digit_recordings(tmp_path: Path) -> None:
    rows = build(SPEECH_DEV / "manifest.csv", tmp_path, count=4, seed=3)
    assert len(rows) == 4 and (tmp_path / "manifest.csv").is_file()
    for file, text in rows:
        digits = reference_digits(text)
        assert digits is not None and 7 <= len(digits) <= 11
        pcm, rate = read_wav(tmp_path / file)
        assert rate == 8000 and len(pcm) > 0.3 * rate * len(digits)  # every word is there, trimmed
    assert build(SPEECH_DEV / "manifest.csv", tmp_path / "again", count=4, seed=3) == rows  # reproducible
