"""Speechmatics real-time STT through `speechmatics-python` against a local server speaking its protocol."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from vendor_fakes.speechmatics_fake import SmSession, SpeechmaticsFake

from cells.providers.base import (
    EndOfTurn,
    FrameFeed,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Transcript,
)
from cells.providers.stt.speechmatics_rt import SpeechmaticsRtStt

KEY = "sm-test-key"
FRAME = np.zeros(320, dtype=np.int16)  # 20 ms at 16 kHz


def _stt(fake: SpeechmaticsFake, **kw: object) -> SpeechmaticsRtStt:
    opts: dict[str, object] = {"url": fake.url, "api_key": KEY, "connect_timeout_s": 2.0,
                               "finalize_timeout_s": 1.0}
    opts.update(kw)
    return SpeechmaticsRtStt(**opts)  # type: ignore[arg-type]


async def _frames(*turns: int, end_of_turn: bool = True):  # type: ignore[no-untyped-def]
    for n in turns:
        for _ in range(n):
            yield FRAME
            await asyncio.sleep(0)
        if end_of_turn:
            yield EndOfTurn()


async def _collect(stt: SpeechmaticsRtStt, frames: object) -> list[Transcript]:
    return [t async for t in stt.stream(frames)]  # type: ignore[arg-type]


def test_partials_then_one_final_per_turn() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            fake.default = SmSession(words=["book", "a", "table", "please"])
            # 40 frames = 800 ms = 4 words; second turn 20 frames = 2 more words.
            out = await _collect(_stt(fake), _frames(40, 20))
            finals = [t for t in out if t.is_final]
            assert [t.text for t in finals] == ["book a table please", "book a"]
            partials = [t for t in out if not t.is_final]
            assert [p.text for p in partials[:3]] == ["book", "book a", "book a table"]
            assert finals[0].start_ms == 0.0 and finals[0].end_ms == pytest.approx(800.0)
            assert finals[1].start_ms == pytest.approx(800.0)
            start = fake.received[0]
            assert start["message"] == "StartRecognition"
            assert start["audio_format"] == {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
            assert start["transcription_config"]["enable_partials"] is True
            assert [m["message"] for m in fake.received[1:]] == [
                "ForceEndOfUtterance", "ForceEndOfUtterance", "EndOfStream"]
            assert fake.paths[0].startswith("/v2/en")

    asyncio.run(main())


def test_final_at_end_of_stream_without_end_of_turn() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            out = await _collect(_stt(fake), _frames(20, end_of_turn=False))
            assert [t.text for t in out if t.is_final] == ["hello world"]

    asyncio.run(main())


def test_frame_feed_drives_a_live_session() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            feed = FrameFeed()
            stt = _stt(fake)
            results: list[Transcript] = []

            async def consume() -> None:
                async for t in stt.stream(feed):
                    results.append(t)

            task = asyncio.create_task(consume())
            for _ in range(20):
                feed.push(FRAME)
                await asyncio.sleep(0.001)
            feed.end_of_turn()
            for _ in range(50):  # the final arrives while the line is still open
                if any(t.is_final for t in results):
                    break
                await asyncio.sleep(0.02)
            assert [t.text for t in results if t.is_final] == ["hello world"]
            feed.close()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_server_ignoring_force_end_still_finalises_from_partials() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            fake.default = SmSession(ignore_force_eou=True)
            feed = FrameFeed()
            stt = _stt(fake, finalize_timeout_s=0.3)
            gen = stt.stream(feed)
            for _ in range(20):
                feed.push(FRAME)
            feed.end_of_turn()
            final = None
            async for t in gen:
                if t.is_final:
                    final = t
                    break
            assert final is not None and final.text == "hello world"
            await gen.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(("status", "error", "retryable"), [
    (401, ProviderError, False), (429, ProviderUnavailable, True), (500, ProviderUnavailable, True)])
def test_handshake_errors_are_mapped(status: int, error: type[Exception], retryable: bool) -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            fake.sessions.append(SmSession(reject_status=status))
            with pytest.raises(error) as info:
                await _collect(_stt(fake), _frames(5))
            assert info.value.retryable is retryable  # type: ignore[attr-defined]

    asyncio.run(main())


def test_bad_key_is_rejected_and_never_shown() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            stt = _stt(fake, api_key="sm-secret-wrong")
            with pytest.raises(ProviderError) as info:
                await _collect(stt, _frames(5))
            assert "sm-secret" not in str(info.value) and "sm-secret" not in repr(stt)

    asyncio.run(main())


@pytest.mark.parametrize(("error_type", "error", "retryable"), [
    ("quota_exceeded", ProviderUnavailable, True), ("invalid_config", ProviderError, False)])
def test_error_messages_are_mapped(error_type: str, error: type[Exception], retryable: bool) -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            fake.sessions.append(SmSession(error_type=error_type))
            with pytest.raises(error) as info:
                await _collect(_stt(fake), _frames(50))
            assert info.value.retryable is retryable  # type: ignore[attr-defined]
            assert error_type in str(info.value)

    asyncio.run(main())


def test_hung_start_times_out() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            fake.sessions.append(SmSession(hang_on_start=True))
            with pytest.raises(ProviderTimeout):
                await _collect(_stt(fake, connect_timeout_s=0.5), _frames(5))

    asyncio.run(main())


def test_server_that_stops_acknowledging_times_out() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            fake.sessions.append(SmSession(hang_after_bytes=3200))
            with pytest.raises(ProviderTimeout):
                await _collect(_stt(fake, ack_timeout_s=0.5, max_unacked=5), _frames(100))

    asyncio.run(main())


def test_source_errors_are_not_blamed_on_the_vendor() -> None:
    async def broken():  # type: ignore[no-untyped-def]
        yield FRAME
        raise KeyError("caller hung up")

    async def main() -> None:
        async with SpeechmaticsFake() as fake:
            with pytest.raises(KeyError):
                await _collect(_stt(fake), broken())

    asyncio.run(main())

