"""Embedded TTS provider: streaming chunk by chunk, voice mapping, cancellation."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from cells.providers.base import AudioChunk, ProviderConfigError, TtsProvider
from cells.providers.tts.espeak_tts import EspeakTts

LONG = ("Thank you for calling the clinic. I can book you in with Doctor Patel on Tuesday at nine thirty, "
        "or with Doctor Garcia on Thursday afternoon; which would you prefer?")


def _synth_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "espeak-synth"]


@pytest.fixture(scope="module")
def tts() -> EspeakTts:
    return EspeakTts()


def test_long_sentence_streams_many_chunks(tts: EspeakTts) -> None:
    async def main() -> list[AudioChunk]:
        return [chunk async for chunk in tts.synthesize(LONG, "en-us-female")]

    chunks = asyncio.run(main())
    assert isinstance(tts, TtsProvider)
    assert len(chunks) > 10
    assert all(c.sample_rate == tts.sample_rate == 22050 and c.pcm.dtype == np.int16 for c in chunks)
    assert sum(c.duration_ms for c in chunks) > 5000  # a long sentence, not a stub
    assert np.abs(np.concatenate([c.pcm for c in chunks])).max() > 1000


def test_closing_the_stream_stops_synthesis(tts: EspeakTts) -> None:
    async def main() -> int:
        stream = tts.synthesize(LONG * 5)
        received = [await anext(stream) for _ in range(2)]
        await stream.aclose()
        assert not _synth_threads()  # the engine's worker has been stopped and joined
        total = 0
        async for _ in tts.synthesize(LONG):  # the library is free for the next utterance
            total += 1
        return total + len(received)

    assert asyncio.run(main()) > 2


def test_cancelling_the_consumer_task_stops_synthesis(tts: EspeakTts) -> None:
    async def main() -> int:
        received = 0
        first = asyncio.Event()

        async def consume() -> None:
            nonlocal received
            async for _ in tts.synthesize(LONG * 5):
                received += 1
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not _synth_threads()
        return received

    full = len([c for c in asyncio.run(_all(tts, LONG * 5))])
    assert asyncio.run(main()) < full


async def _all(tts: EspeakTts, text: str) -> list[AudioChunk]:
    return [c async for c in tts.synthesize(text)]


def test_voice_ids_map_to_espeak_voices(tts: EspeakTts) -> None:
    assert tts.resolve_voice("en-gb-male") == "en-gb+m3"
    assert tts.resolve_voice(None) == "en-us"
    assert tts.resolve_voice("en-us+f2") == "en-us+f2"  # eSpeak names pass through
    custom = EspeakTts(voices={"clinic": "en-gb+f3"}, voice="clinic")
    assert custom.resolve_voice(None) == "en-gb+f3"

    async def main() -> None:
        async for _ in tts.synthesize("hello", "no-such-voice"):
            pass

    with pytest.raises(ProviderConfigError, match="unknown voice"):
        asyncio.run(main())
