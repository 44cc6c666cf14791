"""OpenAI speech and transcription adapters through the `openai` SDK against a local server speaking the
`/v1/audio/*` formats."""

from __future__ import annotations

import asyncio
import io
import wave

import numpy as np
import pytest
from vendor_fakes import Fault
from vendor_fakes.openai_fake import OpenAIFake

from cells.providers.base import (
    AudioChunk,
    EndOfTurn,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Transcript,
)
from cells.providers.stt.openai_stt import OpenAIStt
from cells.providers.tts.openai_tts import OpenAITts

KEY = "sk-test-key"


def _tts(fake: OpenAIFake, **kw: object) -> OpenAITts:
    opts: dict[str, object] = {"base_url": fake.base_url, "api_key": KEY, "max_retries": 0, "timeout_s": 5.0}
    opts.update(kw)
    return OpenAITts(**opts)  # type: ignore[arg-type]


def _stt(fake: OpenAIFake, **kw: object) -> OpenAIStt:
    opts: dict[str, object] = {"base_url": fake.base_url, "api_key": KEY, "max_retries": 0, "timeout_s": 5.0}
    opts.update(kw)
    return OpenAIStt(**opts)  # type: ignore[arg-type]


async def _speak(tts: OpenAITts, text: str = "Hello there.") -> list[AudioChunk]:
    return [c async for c in tts.synthesize(text)]


def test_tts_streams_pcm_chunks() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.speech_seconds = 0.5
            chunks = await _speak(_tts(fake, voice="nova"), "Your table is booked.")
            assert len(chunks) > 3 and all(c.sample_rate == 24000 for c in chunks)
            pcm = np.concatenate([c.pcm for c in chunks])
            assert pcm.dtype == np.int16 and len(pcm) == 12000  # odd-sized network chunks reassembled
            assert np.abs(pcm).max() > 5000  # real samples, not noise from misaligned bytes
            assert np.abs(np.diff(pcm.astype(np.int32))).max() < 2000  # a smooth tone: aligned
            req = fake.requests[0]
            assert (req["voice"], req["input"], req["response_format"]) == ("nova", "Your table is booked.",
                                                                            "pcm")

    asyncio.run(main())


@pytest.mark.parametrize(("status", "error"), [(401, ProviderError), (429, ProviderUnavailable),
                                                (500, ProviderUnavailable)])
def test_tts_errors_are_mapped(status: int, error: type[Exception]) -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.speech_faults.append(Fault(status=status))
            with pytest.raises(error):
                await _speak(_tts(fake))

    asyncio.run(main())


def test_tts_hang_times_out() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.speech_faults.extend([Fault(hang=True), Fault(hang_after=2)])
            with pytest.raises(ProviderTimeout):
                await _speak(_tts(fake, timeout_s=0.5))
            got: list[AudioChunk] = []
            with pytest.raises(ProviderTimeout):
                async for c in _tts(fake, timeout_s=0.5).synthesize("x"):
                    got.append(c)
            assert got  # the audio before the stall was delivered

    asyncio.run(main())


async def _turns(*turns: int):  # type: ignore[no-untyped-def]
    for n in turns:
        for _ in range(n):
            yield np.full(320, 1000, dtype=np.int16)
        yield EndOfTurn()


def test_stt_one_final_per_turn_with_a_wav_upload() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.transcripts.extend(["I'd like to book a table.", "For two, please."])
            out: list[Transcript] = [t async for t in _stt(fake, language="en").stream(_turns(50, 25, 1))]
            assert [t.text for t in out] == ["I'd like to book a table.", "For two, please.", ""]
            assert all(t.is_final for t in out)
            assert (out[0].start_ms, out[0].end_ms) == (0.0, 1000.0)
            assert (out[1].start_ms, out[1].end_ms) == (1000.0, 1500.0)
            assert len(fake.uploads) == 2  # the 20 ms blip was not worth a round trip
            with wave.open(io.BytesIO(fake.uploads[0])) as w:
                assert (w.getframerate(), w.getnframes(), w.getsampwidth()) == (16000, 16000, 2)
            assert fake.requests[0]["model"] == "gpt-4o-mini-transcribe"

    asyncio.run(main())


@pytest.mark.parametrize(("fault", "error"), [(Fault(status=401), ProviderError),
                                               (Fault(status=503), ProviderUnavailable),
                                               (Fault(hang=True), ProviderTimeout)])
def test_stt_errors_are_mapped(fault: Fault, error: type[Exception]) -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.transcripts.append(fault)
            with pytest.raises(error):
                _ = [t async for t in _stt(fake, timeout_s=0.5).stream(_turns(20))]

    asyncio.run(main())
