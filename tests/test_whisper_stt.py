"""Whisper as the embedded recogniser, on real audio: eSpeak NG speech through the 8 kHz mu-law phone
path, line noise, and the call loop's frame stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from cells.providers.base import EndOfTurn, Frame, FrameFeed, ProviderConfigError
from cells.providers.stt.context import Domain
from cells.providers.stt.whisper_engine import looks_looped
from cells.providers.stt.whisper_stt import WhisperStt
from cells.speech.espeak import EspeakEngine
from evals.stt.phone_path import Variant, phone_audio
from evals.stt.scoring import hypothesis_digits, words

RATE = 16000


@pytest.fixture(scope="module")
def stt() -> WhisperStt:
    return WhisperStt()


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    return EspeakEngine()


def phone(engine: EspeakEngine, text: str, voice: str = "en-us") -> np.ndarray:
    pcm = engine.synthesize(text, voice=voice, rate_wpm=150)
    return phone_audio(pcm, engine.sample_rate, Variant("clean"), np.random.default_rng(1))


async def _frames(*turns: tuple[np.ndarray, str | None]) -> AsyncIterator[Frame]:
    for audio, hint in turns:
        for i in range(0, len(audio), 320):
            yield audio[i:i + 320]
        yield EndOfTurn(hint)


def finals(stt: WhisperStt, *turns: tuple[np.ndarray, str | None]) -> list[str]:
    async def run() -> list[str]:
        return [t.text async for t in stt.stream(_frames(*turns)) if t.is_final]
    return asyncio.run(run())


def test_sentences_over_the_phone_path_are_transcribed(stt: WhisperStt, engine: EspeakEngine) -> None:
    said = ["my name is sarah johnson", "i need to cancel my appointment", "where are you located"]
    heard = finals(stt, *((phone(engine, text), None) for text in said))
    assert [words(h) for h in heard] == [words(s) for s in said], heard


def test_a_digits_hint_yields_the_digits(stt: WhisperStt, engine: EspeakEngine) -> None:
    # Without the hint these voices come out as words ("and the three one eyes"); see the bench for
    # the effect on real speech. With it each comes out as digits; tiny.en's first digit is a near tie
    # for one voice, and once in four CI runs it dropped the "7" on a loaded machine, so one voice may
    # miss a digit (all three coming out as words is what a broken hint looks like).
    heard = [finals(stt, (phone(engine, "seven three one nine", voice), "digits"))[0]
             for voice in ("en-us", "en-gb", "en-us+m3")]
    digits = [hypothesis_digits(h) for h in heard]
    assert all(d and d in "7319" for d in digits), heard
    assert digits.count("7319") >= 2, heard


def test_a_long_digit_string_with_the_hint(stt: WhisperStt, engine: EspeakEngine) -> None:
    (heard,) = finals(stt, (phone(engine, "eight one two five five zero nine"), "digits"))
    assert hypothesis_digits(heard) == "8125509", heard


def test_noise_and_near_silence_give_empty_finals(stt: WhisperStt) -> None:
    rng = np.random.default_rng(3)
    line = rng.normal(0, 8, 2 * RATE).astype(np.int16)
    hiss = rng.normal(0, 3000, 2 * RATE).astype(np.int16)  # loud enough for Whisper to invent a sentence
    click = line.copy()
    click[RATE:RATE + 40] = 20000  # a 2.5 ms click on a quiet line
    silence = np.zeros(RATE, dtype=np.int16)
    heard = finals(stt, (line, None), (hiss, None), (click, "digits"), (silence, None))
    assert heard == ["", "", "", ""]


def test_a_turn_without_speech_energy_is_not_decoded(stt: WhisperStt) -> None:
    """The energy gate: steady hiss and a click never reach the model (nor cost a decode)."""
    rng = np.random.default_rng(4)
    hiss = rng.normal(0, 3000, 2 * RATE).astype(np.int16)
    click = rng.normal(0, 8, RATE).astype(np.int16)
    click[RATE // 2:RATE // 2 + 40] = 20000
    engine = stt.engine
    calls = []
    original = engine.submit

    async def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    engine.submit = counting  # type: ignore[method-assign]
    try:
        assert finals(stt, (hiss, None), (click, None)) == ["", ""]
    finally:
        del engine.submit
    assert calls == []


def test_sounds_the_model_doubts_give_empty_finals(stt: WhisperStt) -> None:
    """Past the energy gate, a tone, noise bursts or a hum are decoded; Whisper writes "You" for each,
    with a high no-speech probability and a low log probability, and the result gate drops it."""
    rng = np.random.default_rng(0)
    line = rng.normal(0, 8, 2 * RATE)
    half = np.arange(RATE // 2) / RATE
    tone = line.copy()
    tone[RATE // 2:RATE] += 6000 * np.sin(2 * np.pi * 300 * half)
    bursts = line.copy()
    for k in range(4):
        start = RATE // 4 + k * RATE // 3
        bursts[start:start + 1600] += rng.normal(0, 5000, 1600)
    t = np.arange(2 * RATE)
    hum = line + 3000 * np.sin(2 * np.pi * 100 * t / RATE) * (t > RATE // 2)
    sounds = [x.astype(np.int16) for x in (tone, bursts, hum)]
    assert finals(stt, *((x, None) for x in sounds)) == ["", "", ""]


def test_turn_times_follow_the_stream(stt: WhisperStt, engine: EspeakEngine) -> None:
    audio = phone(engine, "yes please")

    async def run() -> list[tuple[float, float]]:
        return [(t.start_ms, t.end_ms) async for t in stt.stream(_frames((audio, None), (audio, None)))]

    spans = asyncio.run(run())
    length = 1000 * len(audio) / RATE
    assert spans == [(0.0, length), (length, 2 * length)]


def test_decoding_leaves_the_event_loop_free(stt: WhisperStt, engine: EspeakEngine) -> None:
    """A ticker coroutine keeps ticking while a turn is decoded (a blocking decode would freeze it)."""
    audio = phone(engine, "i would like to book a cleaning on tuesday morning please")

    async def run() -> tuple[list[float], float, float]:
        await stt.warm_up()
        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.001)

        feed = FrameFeed()
        for i in range(0, len(audio), 320):
            feed.push(audio[i:i + 320])
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.monotonic()
        feed.end_of_turn()
        feed.close()
        texts = [t.text async for t in stt.stream(feed) if t.is_final]
        ended = time.monotonic()
        stop.set()
        await task
        assert texts and texts[0]
        return ticks, started, ended

    ticks, started, ended = asyncio.run(run())
    during = [t for t in ticks if started < t < ended]
    assert during, "the event loop did not run while the turn was being decoded"


def test_bad_frames_fail_clearly(stt: WhisperStt) -> None:
    async def frames() -> AsyncIterator[Frame]:
        yield np.zeros(320, dtype=np.float32)
        yield EndOfTurn()

    async def run() -> None:
        async for _ in stt.stream(frames()):
            pass

    with pytest.raises(ValueError, match=r"int16 numpy arrays .* got float32"):
        asyncio.run(run())


def test_bad_configuration_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ProviderConfigError, match=r"model\.bin"):
        WhisperStt(model=str(tmp_path))
    with pytest.raises(ProviderConfigError, match="beam_size"):
        WhisperStt(beam_size=0)
    with pytest.raises(ProviderConfigError, match="bad whisper gate"):
        WhisperStt.from_options(gate={"loudness": 3})


# With -m slow: eSpeak's audio varies from run to run and tiny.en's reading of the name with it; in CI it
# came out right for one voice of three once. A quality figure more than a behaviour (the prompt's
# assembly is tested in test_stt_hints.py).
@pytest.mark.slow
def test_the_domain_names_reach_the_transcript(stt: WhisperStt, engine: EspeakEngine) -> None:
    """The agent's vocabulary is the prompt: a dentist's name is heard and spelled as the agent spells it.
    Without the domain the same audio comes out as "not to knew, Ian" or "not to who you". (eSpeak's
    output varies slightly from call to call, so this counts over three voices.)"""
    audio = [phone(engine, "i would like to see doctor nguyen", v) for v in ("en-gb", "en-us+f2", "en-us")]
    with_domain = WhisperStt(Domain(services=["cleaning"], names=["Doctor Nguyen"]))
    heard = [finals(with_domain, (a, None))[0] for a in audio]
    plain = [finals(stt, (a, None))[0] for a in audio]
    hits = sum("nguyen" in words(h) for h in heard)
    assert hits >= 2 and hits > sum("nguyen" in words(p) for p in plain), (heard, plain)


def test_loop_detection() -> None:
    assert looks_looped("5 5 0 1 3 4 5 5 0 1 3 4".split(), False)
    assert looks_looped("thank you thank you thank you".split(), False)
    assert looks_looped(["fine"], True)
    assert not looks_looped("5 5 5 5 0 1 2 3".split(), False)
    assert not looks_looped("i'm sorry i'm sorry".split(), False)


def test_loading_the_model_leaves_the_event_loop_free() -> None:
    """A worker loads Whisper when its first call is accepted; calls already running keep their pacing."""
    fresh = WhisperStt(compute_type="int8_float32")  # a configuration no other test loaded

    async def run() -> tuple[list[float], float, float]:
        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await fresh.loaded()
        ended = time.monotonic()
        stop.set()
        await task
        return ticks, started, ended

    ticks, started, ended = asyncio.run(run())
    assert [t for t in ticks if started < t < ended], "the event loop did not run while the model loaded"
