"""Decoder processes: a failure surfaces as ProviderError, the pool recovers, streams stay apart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from cells.providers.base import EndOfTurn, Frame, ProviderError, Transcript
from cells.providers.stt.decoder_pool import shared_pool
from cells.providers.stt.pocketsphinx_stt import PocketsphinxStt
from cells.speech.espeak import EspeakEngine
from evals.stt.bench import CLINIC, spoken

UTTERANCES = [
    ("can i reschedule to wednesday at one forty five", ("en-us", 170)),
    ("my name is sarah johnson", ("en-us+f2", 190)),
    ("do you have anything on april twelfth at eleven a m", ("en-us+f2", 190)),
]


@pytest.fixture(scope="module")
def stt(tmp_path_factory: pytest.TempPathFactory) -> PocketsphinxStt:
    return PocketsphinxStt(CLINIC, cache_dir=str(tmp_path_factory.mktemp("lm")))


@pytest.fixture(scope="module")
def audios() -> list[np.ndarray]:
    engine = EspeakEngine()
    return [spoken(engine, text, voice) for text, voice in UTTERANCES]


async def _frames(*turns: np.ndarray, pause_s: float = 0.0) -> AsyncIterator[Frame]:
    for audio in turns:
        for i in range(0, len(audio), 320):
            yield audio[i:i + 320]
            if pause_s:
                await asyncio.sleep(pause_s)
        yield EndOfTurn()


async def _finals(stt: PocketsphinxStt, *turns: np.ndarray, pause_s: float = 0.0) -> list[str]:
    return [t.text async for t in stt.stream(_frames(*turns, pause_s=pause_s)) if t.is_final]


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_decoder_process_killed_mid_stream_fails_the_stream_and_is_replaced(
        stt: PocketsphinxStt, audios: list[np.ndarray]) -> None:
    expected = asyncio.run(_finals(stt, audios[0]))
    pool = shared_pool()
    before = pool.pids
    assert len(before) == pool.size

    async def killed_mid_stream() -> list[Transcript]:
        seen: list[Transcript] = []
        async for transcript in stt.stream(_frames(audios[0], audios[1])):
            seen.append(transcript)
            if len(seen) == 1:
                for pid in before:  # whichever process serves this stream
                    os.kill(pid, signal.SIGKILL)
        return seen

    with pytest.raises(ProviderError, match="exited"):
        asyncio.run(killed_mid_stream())
    assert asyncio.run(_finals(stt, audios[0])) == expected
    _wait_for(lambda: len(pool.pids) == pool.size and not set(pool.pids) & set(before))
    for pid in before:
        assert subprocess.run(["ps", "-p", str(pid), "-o", "stat="], capture_output=True,
                              text=True).stdout.strip() == ""  # reaped, not a zombie


def test_many_concurrent_streams_get_their_own_results(stt: PocketsphinxStt,
                                                       audios: list[np.ndarray]) -> None:
    expected = [asyncio.run(_finals(stt, audio, audios[(i + 1) % 3])) for i, audio in enumerate(audios)]
    assert all(len(texts) == 2 and all(texts) for texts in expected)

    async def main() -> list[list[str]]:
        # Two turns each, interleaved across processes; a small pause per frame so the streams overlap.
        return await asyncio.gather(*(_finals(stt, audios[i % 3], audios[(i % 3 + 1) % 3], pause_s=0.001)
                                      for i in range(12)))

    results = asyncio.run(main())
    assert results == [expected[i % 3] for i in range(12)]


def test_a_cancelled_stream_does_not_disturb_the_next_on_the_same_process(
        stt: PocketsphinxStt, audios: list[np.ndarray]) -> None:
    expected = asyncio.run(_finals(stt, audios[1]))

    async def main() -> list[str]:
        for _ in range(2 * shared_pool().size):  # every process ends up with an abandoned stream
            stream = stt.stream(_frames(audios[2]))
            await anext(stream)
            await stream.aclose()
        return await _finals(stt, audios[1])

    assert asyncio.run(main()) == expected


def test_decoder_processes_end_with_the_interpreter() -> None:
    code = ("import asyncio\n"
            "from cells.providers.stt.pocketsphinx_stt import PocketsphinxStt\n"
            "from cells.providers.stt.decoder_pool import shared_pool\n"
            "asyncio.run(PocketsphinxStt(spares=0).warm_up())\n"
            "print(' '.join(map(str, shared_pool().pids)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_turn_of_pure_silence_gives_an_empty_final_not_an_error() -> None:
    from cells.providers.base import FrameFeed
    from cells.providers.stt.pocketsphinx_stt import PocketsphinxStt

    async def run() -> list[str]:
        feed = FrameFeed()
        feed.push(np.zeros(16000, np.int16))
        feed.close()
        return [t.text async for t in PocketsphinxStt().stream(feed) if t.is_final]

    assert asyncio.run(run()) == [""]
