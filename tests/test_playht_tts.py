"""PlayHT TTS through `pyht`'s asyncio client against a local server speaking PlayHT's HTTP streaming API."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from vendor_fakes import Fault
from vendor_fakes.playht_fake import PlayHtFake

from cells.providers.base import (
    AudioChunk,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from cells.providers.tts.playht import PlayHtTts

VOICE = "s3://voice-cloning-zero-shot/fake/manifest.json"


def _tts(fake: PlayHtFake, **kw: object) -> PlayHtTts:
    opts: dict[str, object] = {"voice": VOICE, "api_url": fake.api_url, "user_id": fake.user_id,
                               "api_key": fake.api_key, "first_audio_timeout_s": 3.0, "chunk_timeout_s": 3.0}
    opts.update(kw)
    return PlayHtTts(**opts)  # type: ignore[arg-type]


async def _speak(tts: PlayHtTts, text: str = "Welcome to the Grand Hotel.") -> list[AudioChunk]:
    try:
        return [c async for c in tts.synthesize(text)]
    finally:
        await tts.aclose()


def test_streams_raw_pcm_at_the_configured_rate() -> None:
    async def main() -> None:
        async with PlayHtFake() as fake:
            chunks = await _speak(_tts(fake, sample_rate=16000))
            assert len(chunks) > 2 and all(c.sample_rate == 16000 for c in chunks)
            pcm = np.concatenate([c.pcm for c in chunks])
            assert len(pcm) == int(16000 * fake.seconds)
            assert np.abs(np.diff(pcm.astype(np.int32))).max() < 3000  # aligned samples, a smooth tone
            body = fake.requests[0]
            assert body["text"] == ["Welcome to the Grand Hotel."]
            assert (body["voice"], body["output_format"], body["sample_rate"], body["voice_engine"]) == (
                VOICE, "raw", 16000, "Play3.0-mini")

    asyncio.run(main())


def test_voice_id_overrides_the_default_voice() -> None:
    async def main() -> None:
        async with PlayHtFake() as fake:
            tts = _tts(fake)
            try:
                _ = [c async for c in tts.synthesize("Hi.", voice_id="s3://cloned/voice.json")]
                _ = [c async for c in tts.synthesize("Again.")]
            finally:
                await tts.aclose()
            assert [r["voice"] for r in fake.requests] == ["s3://cloned/voice.json", VOICE]
            assert fake.auth_calls == 1  # coordinates are cached between requests

    asyncio.run(main())


@pytest.mark.parametrize(("status", "error", "retryable"), [
    (403, ProviderError, False), (429, ProviderUnavailable, True), (500, ProviderUnavailable, True),
    (400, ProviderError, True)])
def test_http_errors_are_mapped(status: int, error: type[Exception], retryable: bool) -> None:
    async def main() -> None:
        async with PlayHtFake() as fake:
            fake.faults.append(Fault(status=status))
            with pytest.raises(error) as info:
                await _speak(_tts(fake))
            assert info.value.retryable is retryable  # type: ignore[attr-defined]

    asyncio.run(main())


def test_bad_credentials_fail_at_sdk_auth_without_showing_the_key() -> None:
    async def main() -> None:
        async with PlayHtFake() as fake:
            tts = _tts(fake, api_key="ph-secret-wrong")
            with pytest.raises(ProviderError) as info:
                await _speak(tts)
            assert info.value.retryable is False  # type: ignore[attr-defined]
            assert "ph-secret" not in str(info.value) and "ph-secret" not in repr(tts)

    asyncio.run(main())


def test_hangs_time_out_before_first_audio_and_mid_stream() -> None:
    async def main() -> None:
        async with PlayHtFake() as fake:
            fake.faults.extend([Fault(hang=True), Fault(hang_after=2)])
            with pytest.raises(ProviderTimeout):
                await _speak(_tts(fake, first_audio_timeout_s=0.4))
            tts = _tts(fake, chunk_timeout_s=0.4)
            got: list[AudioChunk] = []
            with pytest.raises(ProviderTimeout):
                async for c in tts.synthesize("x"):
                    got.append(c)
            await tts.aclose()
            assert got

    asyncio.run(main())


def test_unreachable_server_is_unavailable() -> None:
    async def main() -> None:
        tts = PlayHtTts(voice=VOICE, api_url="http://127.0.0.1:9/api/v4", user_id="u", api_key="k")
        with pytest.raises(ProviderUnavailable):
            await _speak(tts)

    asyncio.run(main())


def test_missing_credentials_are_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYHT_USER_ID", raising=False)
    monkeypatch.delenv("PLAYHT_API_KEY", raising=False)
    with pytest.raises(ProviderConfigError):
        PlayHtTts(voice=VOICE)
