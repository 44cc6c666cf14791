"""The embedded eSpeak NG engine: real synthesis through the library shipped by espeakng-loader."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cells.speech.espeak import EspeakEngine, VoiceNotFoundError

SENTENCE = "Thank you for calling. How can I help you today?"


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    return EspeakEngine()


def _band_fraction(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(power[(f >= lo) & (f <= hi)].sum() / power.sum())


def test_speech_is_loud_int16_and_in_the_speech_band(engine: EspeakEngine) -> None:
    audio = engine.synthesize(SENTENCE)
    assert audio.dtype == np.int16
    assert engine.sample_rate > 8000
    assert 1.0 < len(audio) / engine.sample_rate < 10.0
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) / 32768)
    assert rms_dbfs > -35
    # Voiced speech: most energy between the lowest pitch and the top of the telephone band.
    assert _band_fraction(audio, engine.sample_rate, 80, 4000) > 0.8


def test_duration_grows_with_text_and_shrinks_with_rate(engine: EspeakEngine) -> None:
    short = engine.synthesize("Yes.")
    long = engine.synthesize(" ".join([SENTENCE] * 3))
    assert len(long) > 2.5 * len(engine.synthesize(SENTENCE)) > 2.5 * len(short)
    slow = engine.synthesize(SENTENCE, rate_wpm=120)
    fast = engine.synthesize(SENTENCE, rate_wpm=300)
    assert len(fast) < 0.7 * len(slow)


def test_voices_variants_and_language_tags(engine: EspeakEngine) -> None:
    assert {"en-us", "en-gb", "fr"} <= set(engine.languages())
    base = engine.synthesize(SENTENCE, voice="en-us")
    for voice in ("en-gb", "en-GB+f3", "en-us+m3", "en-gb-scotland"):
        other = engine.synthesize(SENTENCE, voice=voice)
        assert len(other) > 0.5 * len(base)
        assert not np.array_equal(other[: len(base)], base[: len(other)])


@pytest.mark.parametrize("voice", ["xx-nowhere", "en-us+nosuchvariant", ""])
def test_unknown_voice_raises(engine: EspeakEngine, voice: str) -> None:
    with pytest.raises(VoiceNotFoundError):
        engine.synthesize("hello", voice=voice)
    assert len(engine.synthesize("hello")) > 0  # the engine is still usable afterwards


def test_bad_parameters_raise(engine: EspeakEngine) -> None:
    with pytest.raises(ValueError):
        engine.synthesize("hello", rate_wpm=10)
    with pytest.raises(ValueError):
        engine.synthesize("hello", pitch=101)


def test_empty_text_gives_no_audio(engine: EspeakEngine) -> None:
    assert engine.synthesize("   ").size == 0


def test_streaming_matches_whole_synthesis(engine: EspeakEngine) -> None:
    chunks = list(engine.iter_synthesize(SENTENCE, voice="en-us+f3"))
    assert len(chunks) > 3
    assert all(c.dtype == np.int16 for c in chunks)
    whole = engine.synthesize(SENTENCE, voice="en-us+f3")
    # Not bit-exact: the library carries a little wave-generator state from one utterance to the next.
    assert abs(sum(len(c) for c in chunks) - len(whole)) < 0.05 * len(whole)


def test_streaming_errors_and_early_close(engine: EspeakEngine) -> None:
    with pytest.raises(VoiceNotFoundError):
        next(engine.iter_synthesize("hello", voice="xx-nowhere"))
    stream = engine.iter_synthesize(" ".join([SENTENCE] * 5))
    first = next(stream)
    assert len(first) > 0
    stream.close()  # aborts the synthesis and releases the library
    assert len(engine.synthesize("still working")) > 0


def test_concurrent_use_from_threads(engine: EspeakEngine) -> None:
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            if i % 2:
                results[i] = sum(len(c) for c in engine.iter_synthesize(SENTENCE))
            else:
                results[i] = len(EspeakEngine().synthesize(SENTENCE))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lengths = list(results.values())
    assert len(lengths) == 6
    assert max(lengths) < 1.05 * min(lengths)
