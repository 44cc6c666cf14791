"""Fallback wrappers over real adapters talking to local vendor fakes: a provider that fails or hangs mid-call
is replaced in time, and an LLM chain with nothing left ends in an apology and a transfer."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from vendor_fakes import Fault
from vendor_fakes.openai_fake import ChatReply, OpenAIFake
from vendor_fakes.playht_fake import PlayHtFake
from vendor_fakes.speechmatics_fake import SmSession, SpeechmaticsFake

from cells.providers.base import EndOfTurn, Message, ProviderUnavailable, TextDelta, ToolCall, ToolSpec
from cells.providers.fallback import Attempt, FallbackLlm, FallbackStt, FallbackTts
from cells.providers.llm.openai_compat import OpenAICompatLlm
from cells.providers.stt.openai_stt import OpenAIStt
from cells.providers.stt.speechmatics_rt import SpeechmaticsRtStt
from cells.providers.tts.openai_tts import OpenAITts
from cells.providers.tts.playht import PlayHtTts

KEY = "sk-test-key"
USER = [Message("user", "Can I book a room for Friday?")]
TOOLS = [ToolSpec("transfer_to_human", "Hand the call to staff")]


def _llm(fake: OpenAIFake, model: str) -> OpenAICompatLlm:
    return OpenAICompatLlm(model=model, base_url=fake.base_url, api_key=KEY, max_retries=0, timeout_s=10)


def test_llm_hung_primary_is_replaced_before_dead_air() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.chat_script.extend([ChatReply(fault=Fault(hang=True)), ChatReply(text="Friday is free.")])
            attempts: list[tuple[str, Attempt]] = []
            chain = [("primary", _llm(fake, "primary-model")), ("backup", _llm(fake, "backup-model"))]
            # The primary hangs for ever: reaching the backup at all shows the deadline fired. The
            # deadline is generous so that a slow first request on a busy machine is not a "hang".
            llm = FallbackLlm(chain, first_token_timeout_s=1.5, observer=lambda k, a: attempts.append((k, a)))
            items = [item async for item in llm.complete(USER, TOOLS)]
            assert "".join(i.text for i in items if isinstance(i, TextDelta)) == "Friday is free."
            assert llm.last_served == "backup"
            assert [(k, a.provider, a.ok) for k, a in attempts] == [("llm", "primary", False),
                                                                    ("llm", "backup", True)]
            assert "no tokens" in (attempts[0][1].error or "")
            assert [r["model"] for r in fake.requests] == ["primary-model", "backup-model"]

    asyncio.run(main())


def test_llm_mid_stream_failure_continues_without_repeating() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.chat_script.extend([
                ChatReply(text="Yes, we have a double room", piece=5, fault=Fault(error_after=4)),
                ChatReply(text=" for Friday at 120 euros.")])
            llm = FallbackLlm([("a", _llm(fake, "a")), ("b", _llm(fake, "b"))])
            items = [i async for i in llm.complete(USER)]
            text = "".join(i.text for i in items if isinstance(i, TextDelta))
            assert text == "Yes, we have a " + " for Friday at 120 euros."  # 3 deltas, then the error
            continued = fake.requests[1]["messages"]
            assert continued[-2] == {"role": "assistant", "content": "Yes, we have a "}
            assert "without repeating" in continued[-1]["content"]

    asyncio.run(main())


def test_llm_all_failing_ends_with_apology_and_transfer() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.chat_script.extend([ChatReply(fault=Fault(status=500)), ChatReply(fault=Fault(status=429))])
            llm = FallbackLlm([("a", _llm(fake, "a")), ("b", _llm(fake, "b"))],
                              apology="Sorry, one moment while I transfer you.")
            items = [i async for i in llm.complete(USER, TOOLS)]
            assert items[0] == TextDelta("Sorry, one moment while I transfer you.")
            assert isinstance(items[1], ToolCall) and items[1].name == "transfer_to_human"
            assert llm.last_served is None

    asyncio.run(main())


def test_tts_hung_playht_falls_back_to_openai() -> None:
    async def main() -> None:
        async with PlayHtFake() as ph, OpenAIFake() as oa:
            ph.faults.extend([Fault(hang=True), Fault(hang_after=2)])
            playht = PlayHtTts(voice="v", api_url=ph.api_url, user_id=ph.user_id, api_key=ph.api_key)
            openai_tts = OpenAITts(base_url=oa.base_url, api_key=KEY, max_retries=0)
            tts = FallbackTts([("playht", playht), ("openai", openai_tts)], first_audio_timeout_s=1.5,
                              idle_timeout_s=1.5)
            for _ in range(2):  # hung before any audio, then hung mid-sentence
                chunks = [c async for c in tts.synthesize("Your room is ready.", voice_id="s3://clone")]
                assert chunks[-1].sample_rate == 24000 and tts.last_served == "openai"
                assert sum(len(c.pcm) for c in chunks if c.sample_rate == 24000) >= 12000
            assert [r["input"] for r in oa.requests] == ["Your room is ready."] * 2
            assert "voice" in oa.requests[0] and oa.requests[0]["voice"] == "alloy"  # not PlayHT's voice id
            await playht.aclose()

    asyncio.run(main())


def test_tts_all_failing_raises_unavailable() -> None:
    async def main() -> None:
        async with OpenAIFake() as oa:
            oa.speech_faults.extend([Fault(status=500), Fault(status=503)])
            tts = FallbackTts([(n, OpenAITts(base_url=oa.base_url, api_key=KEY, max_retries=0))
                               for n in ("a", "b")])
            with pytest.raises(ProviderUnavailable):
                _ = [c async for c in tts.synthesize("Hello.")]

    asyncio.run(main())


FRAME = np.full(320, 500, dtype=np.int16)  # 20 ms


async def _turns(*turns: int):  # type: ignore[no-untyped-def]
    for n in turns:
        for _ in range(n):
            yield FRAME
            await asyncio.sleep(0.001)
        yield EndOfTurn()


def test_stt_primary_hanging_mid_call_replays_the_turn_into_the_secondary() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as sm, OpenAIFake() as oa:
            # Turn 1 (20 frames, 12,800 bytes) is served; the server then stalls during turn 2.
            sm.sessions.append(SmSession(hang_after_bytes=16000))
            oa.transcripts.append("and a late checkout")
            primary = SpeechmaticsRtStt(url=sm.url, api_key="sm-test-key", finalize_timeout_s=10.0,
                                        ack_timeout_s=10.0)
            secondary = OpenAIStt(base_url=oa.base_url, api_key=KEY, max_retries=0)
            attempts: list[Attempt] = []
            stt = FallbackStt([("speechmatics", primary), ("openai", secondary)], final_timeout_s=1.5,
                              observer=lambda _k, a: attempts.append(a))
            finals = [t async for t in stt.stream(_turns(20, 25)) if t.is_final]
            assert [t.text for t in finals] == ["hello world", "and a late checkout"]
            assert finals[1].start_ms == pytest.approx(400.0) and finals[1].end_ms == pytest.approx(900.0)
            assert [(a.provider, a.ok) for a in attempts] == [("speechmatics", False), ("openai", True)]
            assert len(oa.uploads) == 1 and len(oa.uploads[0]) == 44 + 25 * 640  # only turn 2, replayed
            assert stt.last_served == "openai"

    asyncio.run(main())


def test_stt_primary_refused_at_start() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as sm, OpenAIFake() as oa:
            sm.sessions.append(SmSession(reject_status=503))
            oa.transcripts.append("hello")
            stt = FallbackStt([("sm", SpeechmaticsRtStt(url=sm.url, api_key="sm-test-key")),
                               ("oa", OpenAIStt(base_url=oa.base_url, api_key=KEY, max_retries=0))])
            finals = [t.text async for t in stt.stream(_turns(10)) if t.is_final]
            assert finals == ["hello"]

    asyncio.run(main())


def test_stt_all_failing_raises_unavailable() -> None:
    async def main() -> None:
        async with SpeechmaticsFake() as sm:
            sm.sessions.extend([SmSession(reject_status=500), SmSession(error_type="quota_exceeded")])
            stt = FallbackStt([(n, SpeechmaticsRtStt(url=sm.url, api_key="sm-test-key")) for n in "ab"])
            with pytest.raises(ProviderUnavailable):
                _ = [t async for t in stt.stream(_turns(30))]

    asyncio.run(main())
