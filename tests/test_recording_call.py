"""Whole calls through the worker's stream lifecycle and sink, recorded as a cell's worker records them
(cells.worker.stream.run_call, CallSink, RecordingTransport, a sealed region store): card capture is
silenced in the decrypted recording with pause/resume events, and where the caller's number needs
all-party consent, a "no" leaves no recording and a "yes" records the call."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from call_harness import FRAME_S, Phone, media_message, noise_frames, speech_frames

import media_core
from cells.call.recorder import RATE, CallRecorder, RecordingTransport
from cells.call.recording_consent import QUESTION, consent_needed, jurisdiction_of
from cells.call.session import CallConfig, CallSession
from cells.call.transport import AudioIn, CarrierEvent, DtmfIn, StreamStop
from cells.contract.call_redaction import CallRedactor
from cells.dialogue.chunker import SentenceChunker
from cells.observability import WorkerTelemetry
from cells.worker.local import LocalLease
from cells.worker.sink import CallSink, Recording
from cells.worker.stream import run_call
from loadtest.calls.instant import InstantLlm, InstantStt, InstantTts, NoTools
from regions.kms import LocalKms
from regions.objectstore import RegionStore
from regions.sealed_store import SealedStore

TENANT = str(uuid.uuid4())
DISCLOSURE = "Hi, this call is answered by an AI assistant and may be recorded."


class Line(Phone):
    """The Twilio transport of a started stream whose carrier events the test sends one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[CarrierEvent] = asyncio.Queue()

    async def events(self) -> AsyncIterator[CarrierEvent]:  # type: ignore[override]
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, StreamStop):
                return


class Agent:
    def __init__(self, line: Line, stt_lines: list[str]) -> None:
        self.line, self.stt_lines = line, stt_lines

    def new_session(self, transport: Any, **kwargs: Any) -> CallSession:
        session = CallSession(CallConfig(disclosure=DISCLOSURE), stt=InstantStt(self.stt_lines),
                              llm=InstantLlm(), tts=InstantTts(), tools=NoTools(),
                              chunker_factory=SentenceChunker, transport=transport, **kwargs)
        self.line.session = session
        return session


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.items.append((kind, data))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.items]

    async def close(self, timeout: float = 0.0) -> None:
        return None


class Call:
    """One stream: the caller's audio and keys sent in real time, the agent answering."""

    def __init__(self, tmp_path: Path, stt_lines: list[str], caller: str = "+442071234567") -> None:
        self.line, self.events = Line(), Events()
        self.store = SealedStore(RegionStore(tmp_path, "eu"), LocalKms(os.urandom(32)))
        self.key = RegionStore.key(TENANT, f"call-1-{uuid.uuid4().hex[:8]}.wav")
        self.recording = Recording(self.key, self.store, CallRecorder(), redactor=CallRedactor(pii=True),
                                   consent=consent_needed(caller))
        self.sink = CallSink(lease=LocalLease("call-1", "agent-1"), publisher=self.events,
                             observer=WorkerTelemetry(region="eu", capacity=1, active=lambda: 0).call(
                                 call_id="call-1", tenant_id=TENANT, agent_id="agent-1"),
                             worker_id="w1", recording=self.recording, resumable=False)
        self.agent = Agent(self.line, stt_lines)
        self.seq = 0

    async def send(self, frames: list[bytes]) -> None:
        t0 = asyncio.get_running_loop().time()
        for i, frame in enumerate(frames):
            await self.line.queue.put(AudioIn(media_message(frame, self.seq)))
            self.seq += 1
            await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_S - asyncio.get_running_loop().time()))

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        noise = noise_frames(timeout + 1, seed=self.seq)
        for i in range(int(timeout / FRAME_S)):
            if predicate():
                return
            await self.send([noise[i]])
        raise AssertionError("timed out")

    def idle(self) -> bool:
        s = self.sink.session
        return s is not None and not s.playout.speaking and (s._reply is None or s._reply.done())

    def run(self, script: Any) -> None:
        async def main() -> None:
            transport = RecordingTransport(self.line, self.recording.recorder, self.sink.guard.on_dtmf)
            call = asyncio.create_task(run_call(self.agent, transport, self.line.protocol.start, self.sink))
            await self.until(lambda: self.sink.session is not None and self.line.count("mark") >= 1
                             and self.idle())
            await script(self)
            await self.line.queue.put(StreamStop())
            await asyncio.wait_for(call, 30)

        asyncio.run(main())

    def said(self) -> list[str]:
        return [d["text"] for k, d in self.events.items if k == "agent_said"]


def channels(wav: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, RATE)
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)


def dtmf_tone(seconds: float = 0.1) -> list[bytes]:
    """A keypad tone (697 + 1209 Hz, loud) as the carrier's inbound audio carries it."""
    t = np.arange(int(RATE * seconds)) / RATE
    pcm = (5000 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t))).astype(np.int16)
    data = media_core.ulaw_encode(pcm)
    return [data[i:i + 160] for i in range(0, len(data), 160)]


def test_keyed_card_digits_are_silence_in_the_decrypted_recording(tmp_path: Path) -> None:
    call = Call(tmp_path, ["thanks", "goodbye"])

    async def script(c: Call) -> None:
        await c.send(noise_frames(1.0, seed=1))
        for digit in "4111111111111111#":
            await c.send(dtmf_tone())
            await c.line.queue.put(DtmfIn(digit))
            await c.send(noise_frames(0.06, seed=2))
        await c.until(lambda: "transcript" in c.events.kinds() and c.idle())
        await c.send(noise_frames(1.0, seed=3))

    call.run(script)
    kinds = call.events.kinds()
    paused = [d for k, d in call.events.items if k == "recording_paused"]
    resumed = [d for k, d in call.events.items if k == "recording_resumed"]
    assert [p["reason"] for p in paused] == ["keypad"] and [r["reason"] for r in resumed] == ["keypad"]
    assert kinds.index("recording_paused") < kinds.index("transcript") < kinds.index("recording_resumed")
    assert "recording_ready" in kinds
    raw = call.store.store.get(call.key)
    assert b"RIFF" not in raw
    pcm = channels(call.store.get(call.key))
    start, end = paused[0]["at_ms"] * RATE // 1000, resumed[0]["at_ms"] * RATE // 1000
    assert end - start >= 17 * 0.16 * RATE  # every key's tone and the gaps between them
    assert not pcm[start:end].any(), "both channels silent over the keyed digits"
    assert np.abs(pcm[:, 0]).max() < 1000, "no keypad tone anywhere on the caller's track"
    assert pcm[:start, 0].std() > 5 and pcm[end:, 0].std() > 5  # the rest of the call is recorded
    assert pcm[end:, 1].any()  # the agent's reply after the entry


def test_a_spoken_card_is_blanked_over_its_turn(tmp_path: Path) -> None:
    call = Call(tmp_path, ["my card number is 4111 1111 1111 1111", "thanks"])
    spoken = speech_frames("four one one one, one one one one, one one one one, one one one one")

    async def script(c: Call) -> None:
        await c.send(noise_frames(0.6, seed=1))
        await c.send(spoken)
        await c.until(lambda: "transcript" in c.events.kinds() and c.idle())
        await c.send(noise_frames(0.6, seed=3))

    call.run(script)
    paused = [d for k, d in call.events.items if k == "recording_paused"]
    # One pause, or one per part when a pause between the groups ended the turn early (each part heard
    # as part of the card is blanked); never any other reason.
    assert paused and {p["reason"] for p in paused} == {"card_spoken"}
    pcm = channels(call.store.get(call.key))
    loud = np.abs(pcm[:, 0]) > 2000  # the caller's speech (the line noise is far below)
    assert not loud.any(), "the spoken card left no trace on the caller's track"
    assert pcm[:RATE // 2, 0].std() > 5  # audio before the card is recorded


def test_all_party_consent_no_leaves_no_recording_and_a_consent_event(tmp_path: Path) -> None:
    assert jurisdiction_of("+14155550123").id == "US-CA"  # type: ignore[union-attr]
    call = Call(tmp_path, ["No, I'd rather not.", "thanks"], caller="+14155550123")

    async def script(c: Call) -> None:
        await c.until(lambda: any(QUESTION in t for t in c.said()) and c.idle())
        await c.send(speech_frames("no I would rather not"))
        await c.until(lambda: "recording_consent" in c.events.kinds() and c.idle())
        await c.send(noise_frames(0.5))

    call.run(script)
    [consent] = [d for k, d in call.events.items if k == "recording_consent"]
    assert consent == {"jurisdiction": "US-CA", "answer": "no", "recorded": False}
    assert "recording_ready" not in call.events.kinds()
    assert RegionStore(call.store.store.root.parent, "eu").keys() == []  # nothing written, not even a key
    assert call.sink.lease.state.get("recording_consent") == "no"


def test_all_party_consent_yes_is_recorded_and_elsewhere_nothing_is_asked(tmp_path: Path) -> None:
    call = Call(tmp_path, ["Yes, that's fine.", "thanks"], caller="+12155550123")  # Pennsylvania

    async def script(c: Call) -> None:
        await c.until(lambda: any(QUESTION in t for t in c.said()) and c.idle())
        await c.send(speech_frames("yes that is fine"))
        await c.until(lambda: "recording_consent" in c.events.kinds() and c.idle())

    call.run(script)
    [consent] = [d for k, d in call.events.items if k == "recording_consent"]
    assert consent == {"jurisdiction": "US-PA", "answer": "yes", "recorded": True}
    assert "recording_ready" in call.events.kinds() and channels(call.store.get(call.key))[:, 0].any()

    elsewhere = Call(tmp_path, ["hello"], caller="+442071234567")
    elsewhere.run(lambda c: c.send(noise_frames(0.3)))
    assert not any(QUESTION in t for t in elsewhere.said())
    kinds = elsewhere.events.kinds()
    assert "recording_consent" not in kinds and "recording_ready" in kinds


def coordination(tmp_path: Path, monkeypatch: Any, key: bool = True) -> Any:
    from cells.worker.coordinated import Coordination

    if key:
        monkeypatch.setenv("AUTOSPEAK_SECRETS_KEY", "A" * 43)
    else:
        monkeypatch.delenv("AUTOSPEAK_SECRETS_KEY", raising=False)
    coord = Coordination(nats_url="nats://unused", region="eu", worker_id="w1", stream_url="ws://unused",
                         capacity=1, data_dir=None, object_store=tmp_path)
    coord.js = object()  # the publisher is never used here
    return coord


def test_a_cells_worker_asks_where_needed_and_a_resumed_stream_keeps_the_answer(
        tmp_path: Path, monkeypatch: Any) -> None:
    coord = coordination(tmp_path, monkeypatch)
    key = RegionStore.key(TENANT, "call-1-MZ2.wav")

    def sink(number: str, resume: bool, answer: str | None) -> CallSink:
        lease = LocalLease("call-1", "agent-1")
        if answer is not None:
            lease.state["recording_consent"] = answer
        request = {"region": "eu", "from": number, "direction": "inbound", "resume": resume, "agent": {}}
        return coord._sink(lease, TENANT, request, None, "MZ2", key, None)

    first = sink("+14155550123", False, None)
    assert first.recording is not None and first.hooks is not None  # asked on the first stream
    assert isinstance(first.recording.store, SealedStore)
    yes = sink("+14155550123", True, "yes")
    assert yes.recording is not None and yes.hooks is None  # not asked again
    for answer in ("no", "no_answer", None):
        assert sink("+14155550123", True, answer).recording is None
    elsewhere = sink("+442071234567", False, None)
    assert elsewhere.recording is not None and elsewhere.hooks is None


def test_a_worker_without_the_region_key_records_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    coord = coordination(tmp_path, monkeypatch, key=False)
    agent = type("A", (), {"record_calls": True})()
    assert coord._recording_key(agent, TENANT, "call-1", "MZ1") is None
    coord = coordination(tmp_path, monkeypatch)
    assert coord._recording_key(agent, TENANT, "call-1", "MZ1") == RegionStore.key(TENANT, "call-1-MZ1.wav")


def guard_with(recorder: CallRecorder) -> tuple[Any, Events]:
    from cells.call.recording_guard import RecordingGuard

    events = Events()
    return RecordingGuard(recorder, events.emit, CallRedactor(pii=False), lambda: None), events


def test_a_keypad_entry_the_call_loop_ignored_still_resumes_and_a_spanless_card_is_blanked() -> None:
    recorder = CallRecorder()
    guard, events = guard_with(recorder)
    loud = b"\x10" * 160  # mu-law: a loud sample
    for _ in range(50):
        recorder.caller_ulaw(loud)
    guard.on_event("transcript", {"text": "I want to pay", "turn": 0})
    guard.on_dtmf()
    for _ in range(10):
        recorder.caller_ulaw(loud)
    guard.on_event("transcript", {"text": "keypad 1 2", "ignored": True, "reason": "agent not interruptible"})
    assert events.kinds() == ["recording_paused", "recording_resumed"] and not recorder.paused
    for _ in range(10):
        recorder.caller_ulaw(loud)
    assert recorder.caller[-160:] == loud  # recording again after the entry
    # A card heard without a span (no clock): everything since the last clear point goes.
    guard.on_event("transcript", {"text": "it is 4111 1111 1111 1111"})
    assert events.kinds()[-2:] == ["recording_paused", "recording_resumed"]
    assert set(recorder.caller[-1600:]) == {0xFF}
