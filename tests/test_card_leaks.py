"""Card digits never reach a store, under attack (tests/card_attacks.py): every way of reading or keying
a card through one call's redaction; then whole calls through the real call loop (a brain that repeats
the caller back and writes what it heard into a tool's arguments), its event publisher on a real
nats-server, its call state in the real KV bucket, the control plane's ingest into a real PostgreSQL
(call rows, turns, events, webhook deliveries), the embedded worker's call record, its log lines at
DEBUG, its traces and metrics, the LLM's prompts, the TTS's text and the tools' arguments; each is
searched for the card's digits. Phone numbers given on the same calls survive."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
from call_harness import Phone
from card_attacks import PHONE_SCENARIOS, SCENARIOS, VISA, Scenario, digit_runs, leaks
from ingest_world import World, env, ingest, open_world
from prometheus_client import generate_latest
from sqlalchemy import text

from cells.call.recorder import CallRecorder
from cells.call.recording_guard import RecordingGuard
from cells.call.session import CallConfig, CallSession
from cells.contract.call_redaction import CallRedactor
from cells.contract.call_state import CallStateStore
from cells.contract.envelope import CallEventEnvelope
from cells.contract.jetstream import call_state_bucket_name, call_stream_name, ensure_call_stream
from cells.coordination.publisher import EventPublisher
from cells.dialogue.chunker import SentenceChunker
from cells.launcher import NatsSupercluster
from cells.observability import WorkerTelemetry
from cells.providers.base import Message, TextDelta, ToolCall, ToolSpec, Transcript
from cells.worker.calls import CallRecord
from cells.worker.local import RecordEvents
from cells.worker.sink import CallSink
from loadtest.calls.instant import InstantTts

REGION = "eu"


# --- one call's redaction, fed the attack directly -------------------------------------------------------

def redacted(scenario: Scenario, pii: bool = False) -> list[str]:
    """What leaves one call's redactor for each step, as the publisher lets it go: at once, or (while the
    caller's last digits may begin a card) held back until the next input, with the cards the call heard
    by then masked."""
    r = CallRedactor(pii=pii)
    out: list[str] = []
    held: list[str] = []
    keyed = ""

    def caller(said: str) -> None:
        masked = r.caller(said)
        out.extend(r.mask_known(t) for t in held)
        held.clear()
        (held if r.pending else out).append(masked)

    for kind, said in scenario.steps:
        if kind == "agent":
            (held if held else out).append(r.agent(said))
        elif kind == "say":
            caller(said)
        else:
            for key in said:
                if key == "#":
                    caller("keypad " + " ".join(keyed))
                    keyed = ""
                else:
                    keyed += key
    return out + [r.mask_known(t) for t in held]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_attack_is_masked_by_the_calls_redactor(scenario: Scenario) -> None:
    out = redacted(scenario)
    found = [hit for t in out for hit in leaks(t, scenario.card, scenario.secrets, where=t)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("scenario", PHONE_SCENARIOS, ids=lambda s: s.name)
def test_phone_numbers_and_numbers_that_are_no_card_survive(scenario: Scenario) -> None:
    out = redacted(scenario)
    assert scenario.keep in [run for t in out for run in digit_runs(t)], out



def test_the_scanner_finds_a_card_anywhere_but_in_a_random_trace_id() -> None:
    card = "4539148803436467"
    trace = '{"name": "first_audio", "span_id": "5525316266908cdf", "trace_id": "%s"}'
    assert leaks(trace % ("0" * 16 + "4f" + "1" * 14), card) == []  # random ids (13 digits pass Luhn)
    assert leaks(trace % card, card)  # digits alone are no id
    assert leaks('"text": "%s"' % ("a" * 16 + card), card)  # nor is hex that is not an id's value
    assert leaks('"text": "card 4539 1488 0343 6467 thanks"', card)
    assert leaks('"id": "5525316266908"', "4111111111111111"), "a bare Luhn number is still a card"

# --- whole calls through the worker's real path into real stores ----------------------------------------

class CallerLine:
    """A recogniser that says what the test pushes, as finals (the call loop's STT seam)."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def stream(self, frames: Any) -> AsyncIterator[Transcript]:
        while (said := await self.queue.get()) is not None:
            yield Transcript(said, True, 0.0, 0.0)


class Parrot:
    """A brain that repeats the caller, reads a card back from what it was given, and writes what it heard
    into a tool's arguments; every prompt it gets is kept."""

    confirms_mutations = False

    def __init__(self, asks: list[str]) -> None:
        self.asks = asks  # what it says after each caller turn (the scenario's agent lines)
        self.prompts: list[list[Message]] = []

    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        self.prompts.append(list(messages))
        if messages[-1].role == "tool":
            yield TextDelta("Noted. ")
            return
        heard = next((m.content for m in reversed(messages) if m.role == "user"), "")
        yield TextDelta(f"You said {heard}. ")
        if self.asks:
            yield TextDelta(self.asks.pop(0) + " ")
        yield ToolCall(f"t{len(self.prompts)}", "take_message",
                       {"message": heard, "notes": f"caller read: {heard}", "phone": heard})


class Notes:
    """One tool that keeps every call's arguments (a tool's store)."""

    confirms_mutations = False

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def specs(self) -> Sequence[ToolSpec]:
        return (ToolSpec("take_message", "Take a message for the clinic."),)

    def is_mutating(self, name: str) -> bool:
        return False

    async def call(self, name: str, arguments: dict[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        self.calls.append(arguments)
        return {"ok": True, "saved": arguments}


class HeardTts(InstantTts):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def synthesize(self, text: str, voice_id: str | None = None) -> AsyncIterator[Any]:
        self.texts.append(text)
        async for chunk in super().synthesize(text[:3], voice_id):  # short audio: the call runs fast
            yield chunk


class Both:
    """The cell's publisher and the embedded worker's call record, fed the same events."""

    def __init__(self, *publishers: Any) -> None:
        self.publishers = publishers

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        for p in self.publishers:
            p.emit(kind, data)

    async def close(self, timeout: float = 30.0) -> None:
        for p in self.publishers:
            await p.close(timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsSupercluster]:
    with NatsSupercluster(tmp_path_factory.mktemp("nats"), ("eu", "in", "us")) as sc:
        yield sc


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with open_world() as w:
        yield w


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the call did not get there"
        await asyncio.sleep(0.02)


async def _steps(session: CallSession, stt: CallerLine, steps: list[tuple[str, str]]) -> None:
    for kind, said in steps:
        if kind == "agent":
            continue  # the brain says it (Parrot.asks)
        before = len(session.turns)
        if kind == "say":
            await stt.queue.put(said)
        else:
            for key in said:
                session.on_dtmf(key)
        entries = 1 if kind == "say" else said.count("#")
        await _until(lambda n=before + entries: len(session.turns) >= n and not session._agent_busy())


async def _call(scenario: Scenario, js: Any, tenant_id: str, record_path: Path) -> dict[str, Any]:
    """One call: the scenario's caller through the real call loop and the worker's real sink."""
    call_id = str(uuid.uuid4())
    spec = {"compliance": {"redact_pii": False}}  # only the card rules stand between caller and stores
    store = await CallStateStore.open(js, REGION, worker_id="w-cards")
    lease = await store.acquire(call_id, tenant_id=tenant_id, agent_id="a", call_sid="CAcards")
    assert lease is not None
    publisher = EventPublisher(js, call_id=call_id, tenant_id=tenant_id, region=REGION, stream_sid="MZcards",
                               source="w-cards", redactor=CallRedactor.for_agent(spec))
    record = CallRecord(call_id, tenant_id, "a", "CAcards", record_path)
    telemetry = WorkerTelemetry(region=REGION, capacity=1, active=lambda: 1)
    kept = RecordEvents(record, CallRedactor.for_agent(spec))
    sink = CallSink(lease=lease, publisher=Both(publisher, kept),
                    observer=telemetry.call(call_id=call_id, tenant_id=tenant_id, agent_id="a"),
                    worker_id="w-cards", resumable=False, on_done=[record.close])
    asks = [said for kind, said in scenario.steps if kind == "agent"]
    brain, tools, tts, stt, phone = Parrot(asks), Notes(), HeardTts(), CallerLine(), Phone()
    greeting = asks.pop(0) if scenario.steps and scenario.steps[0][0] == "agent" else "Hi, how can I help?"
    session = CallSession(CallConfig(disclosure=greeting, reprompt_after_s=60.0, dtmf_idle_s=60.0), stt=stt,
                          llm=brain, tts=tts, tools=tools, chunker_factory=SentenceChunker, transport=phone,
                          on_event=sink.event)
    phone.session = session
    sink.session = session
    await session.start("MZcards", "CAcards")
    await _until(lambda: not session._agent_busy())
    await _steps(session, stt, scenario.steps)
    await stt.queue.put(None)
    await sink.finish(session, caller_hung_up=True)
    telemetry.shutdown()
    return {"call_id": call_id, "session": session, "brain": brain, "tools": tools, "tts": tts,
            "telemetry": telemetry, "record": record_path}


async def _stream_and_bucket(nc: Any, tenant_id: str,
                             call_id: str) -> tuple[list[CallEventEnvelope], list[bytes]]:
    js = nc.jetstream()
    info = await js.stream_info(call_stream_name(REGION))
    events = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(call_stream_name(REGION), seq)
        except Exception:  # a deleted sequence
            continue
        if msg.subject.startswith(f"{REGION}.calls.{tenant_id}.{call_id}."):
            events.append(CallEventEnvelope.from_bytes(msg.data))
    # Every revision of the call's state, read from the bucket's backing stream (kv.history's watcher
    # can report no keys on a loaded machine before its first message arrives).
    bucket = call_state_bucket_name(REGION)
    kv_info = await js.stream_info(f"KV_{bucket}")
    revisions = []
    for seq in range(kv_info.state.first_seq, kv_info.state.last_seq + 1):
        try:
            msg = await js.get_msg(f"KV_{bucket}", seq)
        except Exception:  # a deleted sequence
            continue
        if msg.subject == f"$KV.{bucket}.{call_id}":
            revisions.append(msg.data or b"")
    assert revisions, "the call's state was never saved"
    return events, revisions


def _tables(w: World) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        out = []
        async with w.db.engine.connect() as conn:
            tables = (await conn.execute(text(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_type = 'BASE TABLE'"
                " AND table_schema NOT IN ('pg_catalog', 'information_schema')"))).all()
            for schema, table in tables:
                query = text(f'SELECT t::text FROM "{schema}"."{table}" t')
                out.append((f"table {table}", "\n".join((await conn.execute(query)).scalars().all())))
        return out

    return w.db.run(read())


STORE_SCENARIOS = [s for s in SCENARIOS if s.name in {  # one of each path through the worker
    "tens", "fillers and no cue", "split no cue, read as a phone number", "split in three spoken",
    "keypad halves", "expiry and code", "misheard cue and stray letters after a card"}]


@pytest.mark.parametrize("scenario", STORE_SCENARIOS, ids=lambda s: s.name)
def test_no_store_keeps_the_card_after_an_attack_call(scenario: Scenario, cluster: NatsSupercluster,
                                                      world: World, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    scope = world.scopes[REGION]
    tenant_id = str(scope.tenant_id)

    async def go() -> tuple[dict[str, Any], list[CallEventEnvelope], list[bytes]]:
        nc = await nats.connect(cluster.url(REGION))
        try:
            js = nc.jetstream()
            await ensure_call_stream(js, REGION)
            got = await _call(scenario, js, tenant_id, tmp_path / "call.json")
            events, revisions = await _stream_and_bucket(nc, tenant_id, got["call_id"])
            return got, events, revisions
        finally:
            await nc.close()

    with caplog.at_level(logging.DEBUG):
        got, events, revisions = asyncio.run(asyncio.wait_for(go(), 120))
        call_id = uuid.UUID(got["call_id"])
        ingest(world, env(scope, call_id, "call_created", f"{call_id}:created", {
            "direction": "inbound", "from": "+4915112345670", "to": "+442071234567",  # no Luhn number
            "agent_id": str(world.agent_id), "call_sid": "CAcards", "carrier": "twilio"}))
        for envelope in events:
            ingest(world, envelope)
    session: CallSession = got["session"]
    stores: list[tuple[str, str]] = [
        *[(f"stream {e.kind}", e.to_bytes().decode()) for e in events],
        *[("call state revision", r.decode()) for r in revisions],
        *_tables(world),
        ("call record file", got["record"].read_text()),
        ("log lines", "\n".join(r.getMessage() for r in caplog.records)),
        ("history in memory", json.dumps([[m.content, [c.arguments for c in m.tool_calls]]
                                          for m in session.history])),
        ("turns in memory", json.dumps([t.as_dict() for t in session.turns], default=str)),
        ("traces", json.dumps(got["telemetry"].recent.recent(limit=500), default=str)),
        ("metrics", generate_latest(got["telemetry"].metrics.registry).decode()),
    ]
    if not scenario.looks_like_a_phone_first:  # else the brain heard the first piece as a phone number
        stores += [("LLM prompts", json.dumps([[m.content for m in p] for p in got["brain"].prompts])),
                   ("tool arguments", json.dumps(got["tools"].calls)),
                   ("TTS text", json.dumps(got["tts"].texts))]
    assert any("transcript" in name for name, _ in stores) and len(events) > 4
    assert any("[card]" in blob for name, blob in stores if name.startswith("stream")), "nothing was masked"
    found = [hit for name, blob in stores for hit in leaks(blob, scenario.card, scenario.secrets, where=name)]
    assert not found, "card digits kept:\n" + "\n".join(found[:20])


# --- the recording ---------------------------------------------------------------------------------------

def test_a_card_begun_as_a_phone_number_is_blanked_in_the_recording_where_it_began() -> None:
    """The first piece (read as a phone number is, no card in sight) is audible until the next turn shows
    it began a card: then it, the agent's read-back of it and the completing turn are all blanked."""
    now = [0.0]
    recorder = CallRecorder(clock=lambda: now[0])
    guard = RecordingGuard(recorder, lambda kind, data: None, CallRedactor(pii=False), lambda: 0.0)
    loud = b"\x10" * 800  # 100 ms of a loud mu-law sample

    def talk(seconds: float) -> None:
        for _ in range(round(seconds * 10)):
            recorder.caller_ulaw(loud)
            recorder.agent_ulaw(loud)
            now[0] += 0.1

    def silent(a: float, b: float) -> bool:
        return set(recorder.caller[int(a * 8000):int(b * 8000)]) == {0xFF} and \
            set(recorder.agent[int(a * 8000):int(b * 8000)]) == {0xFF}

    talk(2)
    guard.on_event("transcript", {"text": "my name is Ann", "start_ms": 500, "end_ms": 1500})
    talk(3)  # 2-5 s: the first piece; 5-7 s: the agent reads it back
    first = f"it's {VISA[:3]} {VISA[3:6]} {VISA[6:10]}"
    guard.on_event("transcript", {"text": first, "start_ms": 2500, "end_ms": 4500})
    talk(2)
    guard.on_event("agent_said", {"text": f"You said {first}", "start_ms": 5200, "end_ms": 6800})
    assert not silent(2.5, 4.5), "nothing is known yet"
    talk(2)  # 7-9 s: the rest of the card
    guard.on_event("transcript", {"text": "[card]", "start_ms": 7200, "end_ms": 8800})
    assert silent(2.5, 4.5) and silent(5.2, 6.8) and silent(7.2, 8.8)
    assert not silent(0.0, 1.0), "the turn before the card stays"


def test_a_card_said_over_the_agent_and_ignored_by_the_call_loop_is_still_blanked() -> None:
    recorder = CallRecorder()
    guard = RecordingGuard(recorder, lambda kind, data: None, CallRedactor(pii=False), lambda: None)
    for _ in range(20):
        recorder.caller_ulaw(b"\x10" * 800)
    guard.on_event("transcript", {"text": f"card {VISA}", "ignored": True, "reason": "not interruptible"})
    assert set(recorder.caller) == {0xFF}, "the card's audio is blanked (no span: since the last clear turn)"
