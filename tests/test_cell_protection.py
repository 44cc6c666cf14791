"""Data protection on the real stack (PostgreSQL, NATS with JetStream, a cell's control plane and a
worker): whole calls where a caller keys and says card numbers leave no card digit in any store, and
replayed carrier webhooks reserve no worker, hand out no stream and write no event."""

from __future__ import annotations

import asyncio
import io
import json
import re
import stat
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import numpy as np
import pytest
from card_attacks import leaks as card_leaks
from cell_stack import (
    WebhookReceiver,
    call_id_of,
    events_of,
    running_stack,
    stream_ids,
    wait_completed,
    wait_for,
)
from sqlalchemy import text

from cells.contract.jetstream import call_state_bucket_name, call_stream_name
from cells.launcher.stack import EmbeddedStack
from cells.simulator.caller import CallerLine, ScriptedCaller
from cells.simulator.twilio_peer import TwilioPeer, stream_in_twiml
from cells.speech.espeak import EspeakEngine
from control.db.session import create_engine

REGION = "eu"
VISA = "4111111111111111"  # keyed as the "phone number", the attack that found the leak
AMEX = "378282246310005"  # said
MASTERCARD = "5555555555554444"  # keyed in two pieces
PHONE = "07700900123"  # the real phone number, which the booking keeps
DISCOVER = "6011000990139424"  # read as numbers two digits at a time, over two turns
WORDS = "zero one two three four five six seven eight nine".split()

CARD_CALL = [
    CallerLine("Hi, I would like to book a cleaning please."),
    CallerLine("Next Tuesday at ten in the morning."),
    CallerLine("My name is Maria Lopez."),
    CallerLine(dtmf=f"{VISA}#"),
    CallerLine(dtmf=f"{PHONE}#"),  # the brain never saw the card as a phone number: it asks again
    CallerLine("Yes, please."),
    CallerLine("My card number is " + ", ".join(" ".join(WORDS[int(d)] for d in AMEX[i:i + 4])
                                                for i in range(0, len(AMEX), 4)) + "."),
    CallerLine(dtmf=f"{MASTERCARD[:8]}#"),
    CallerLine(dtmf=f"{MASTERCARD[8:]}#"),
    CallerLine("Actually use my other card, sixty eleven, oh oh oh nine."),
    CallerLine("Ninety, thirteen, ninety-four, twenty-four."),
    CallerLine("It expires oh nine twenty-eight and the security code is seven three one."),
    CallerLine("My email is maria dot lopez at gmail dot com, my number is oh seven seven oh oh."),
    CallerLine("No, that's all. Thank you, goodbye."),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(workers={"eu": 1, "in": 1, "us": 1}, capacity=4) as s:
        yield s


def needles(card: str) -> list[bytes]:
    """The card as digits, in groups of four (spaces, dashes), digit by digit, and in words; and each
    half of it (a card keyed or read in two pieces)."""
    groups = [card[i:i + 4] for i in range(0, len(card), 4)]
    forms = [card, " ".join(groups), "-".join(groups), " ".join(card), " ".join(WORDS[int(d)] for d in card)]
    for half in (card[:8], card[8:]):
        forms += [half, " ".join(half), " ".join(WORDS[int(d)] for d in half)]
    return [f.encode() for f in forms]


def leaks(blob: bytes, where: str) -> list[str]:
    found = []
    lowered = blob.lower()
    for card in (VISA, AMEX, MASTERCARD, DISCOVER):
        found += [f"{where}: {n.decode()!r}" for n in needles(card) if n in lowered]
        if "alembic_version" not in where:  # the schema's version number ("0005") is no speech
            found += card_leaks(blob, card, ["seven three one", "oh nine twenty-eight"], where)
    return found


async def _stream_messages(stack: EmbeddedStack) -> list[tuple[str, bytes]]:
    """Every message of the region's call stream and call-state bucket (all kept revisions)."""
    assert stack.nats is not None
    nc = await nats.connect(stack.nats.url(REGION))
    out: list[tuple[str, bytes]] = []
    try:
        js = nc.jetstream()
        for stream in (call_stream_name(REGION), f"KV_{call_state_bucket_name(REGION)}"):
            info = await js.stream_info(stream)
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(stream, seq)
                except Exception:  # a deleted or purged sequence
                    continue
                out.append((f"{stream}#{seq}", msg.data or b""))
    finally:
        await nc.close()
    return out


async def _database_rows(stack: EmbeddedStack) -> list[tuple[str, bytes]]:
    engine = create_engine(stack.database_url)
    out: list[tuple[str, bytes]] = []
    try:
        async with engine.connect() as conn:
            tables = (await conn.execute(text(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            ))).all()
            assert len(tables) > 5
            for schema, table in tables:
                query = text(f'SELECT t::text FROM "{schema}"."{table}" t')
                rows = (await conn.execute(query)).scalars().all()
                out.append((f"table {schema}.{table}", "\n".join(rows).encode()))
    finally:
        await engine.dispose()
    return out


def _files(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()]


def _place(stack: EmbeddedStack, lines: list[CallerLine]) -> TwilioPeer:
    peer = TwilioPeer(stack.api_url(REGION), stack.secrets["twilio_auth_token"],
                      to_number=stack.demo[REGION].number)

    async def run() -> None:
        await peer.open_stream(await peer.ring())
        await ScriptedCaller(peer, lines, engine=EspeakEngine()).run()

    asyncio.run(run())
    return peer


def test_no_card_digit_in_any_store_after_calls_with_cards(stack: EmbeddedStack) -> None:
    demo = stack.demo[REGION]
    auth = {"Authorization": f"Bearer {demo.owner_token}"}
    base = f"{stack.api_url(REGION)}/v1/tenants/{demo.tenant_id}"
    # Phone numbers and e-mails allowed: only the card rules stand between the caller and the stores.
    patched = httpx.patch(f"{base}/agents/{demo.agent_id}", headers=auth,
                          json={"compliance": {"redact_pii": False}}, timeout=10)
    assert patched.status_code == 200, patched.text
    receiver = WebhookReceiver()
    hook = httpx.post(f"{base}/webhook-endpoints", headers=auth, timeout=10,
                      json={"url": receiver.url, "event_types": ["call.ended", "call.completed"]})
    if hook.status_code == 422:  # whichever event types this API version knows
        hook = httpx.post(f"{base}/webhook-endpoints", headers=auth, timeout=10,
                          json={"url": receiver.url, "event_types": ["call.ended"]})
    assert hook.status_code == 201, hook.text
    try:
        peer = _place(stack, CARD_CALL)
        call_id = wait_completed(stack, REGION, peer.call_sid)
        wait_for(lambda: receiver.received, what="the tenant webhook")
        events = events_of(stack, REGION, call_id)
        said = [e for e in events if e["kind"] == "transcript"]
        assert any("keypad" in json.dumps(e) for e in said), "the keyed digits reached the call's events"
        stores: list[tuple[str, bytes]] = []
        stores += asyncio.run(_stream_messages(stack))
        stores += asyncio.run(_database_rows(stack))
        # Every file the stack wrote outside PostgreSQL's own directory (read through SQL above): the
        # streams' and the bucket's files, recordings, the clinic's calendar, logs, workers' data.
        stores += [(name, blob) for name, blob in _files(stack.data_dir)
                   if not Path(name).is_relative_to(stack.data_dir / "pg")]
        stores += [(f"webhook body {i}", body) for i, (body, _) in enumerate(receiver.received)]
        for path in ("", f"/calls/{call_id}", f"/calls/{call_id}/events?limit=500",
                     f"/calls/{call_id}/transcript"):
            stores.append((f"GET {path}", httpx.get(base + path, headers=auth, timeout=10).content))
    finally:
        receiver.close()
    _recording_sealed_and_paused(stores, events, base, call_id, auth)
    assert any(b"[card]" in blob for _, blob in stores), "no card was masked: the call never keyed one"
    calendar = [blob for name, blob in stores if "calendar-" in name and name.endswith(".json")]
    assert calendar, "the booking's calendar file was searched"
    assert any(PHONE[1:].encode() in blob for blob in calendar), "the caller's phone number was kept"
    found = [hit for where, blob in stores for hit in leaks(blob, where)]
    assert not found, "card digits stored:\n" + "\n".join(found[:20])


def _recording_sealed_and_paused(stores: list[tuple[str, bytes]], events: list[dict[str, Any]], base: str,
                                 call_id: str, auth: dict[str, str]) -> None:
    """The recording is sealed on disk, opens through the API for the owner, and is silent (both
    channels) wherever the caller keyed digits, as its pause/resume events say."""
    objects = [blob for name, blob in stores if name.endswith(".wav")]
    assert objects and not any(b"RIFF" in blob for blob in objects), "a recording is in clear on disk"
    url = f"{base}/calls/{call_id}/recording"
    wait_for(lambda: httpx.get(url, headers=auth, timeout=30).status_code == 200, what="the recording")
    wav = httpx.get(url, headers=auth, timeout=30).content
    with wave.open(io.BytesIO(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, w.getnchannels())
    pauses = [(e["kind"], e["payload"]) for e in events
              if e["kind"] in ("recording_paused", "recording_resumed")]
    spans = [(a["at_ms"] * 8, b["at_ms"] * 8)
             for (ka, a), (kb, b) in zip(pauses[::2], pauses[1::2], strict=True)
             if (ka, kb, a["reason"]) == ("recording_paused", "recording_resumed", "keypad")]
    assert len(spans) >= 3, f"the three keypad entries paused the recording: {pauses}"
    for start, end in spans:
        assert end > start and not pcm[start:end].any(), "keyed digits audible in the recording"
    assert pcm.any()


def test_what_the_stack_writes_is_its_users_only(stack: EmbeddedStack) -> None:
    """Files 0600 and folders 0700 under the data directory (PostgreSQL keeps its own 0700 folder).
    The data directory itself is 0700, except that a stack run by root lets PostgreSQL's own user
    through to its folder (pgserver opens it for traversal): never writable by others, though."""
    assert not stat.S_IMODE(stack.data_dir.stat().st_mode) & 0o022
    opened = []
    for path in stack.data_dir.rglob("*"):
        if path.is_relative_to(stack.data_dir / "pg") or path.is_symlink():
            continue
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            opened.append(f"{oct(stat.S_IMODE(path.stat().st_mode))} {path.relative_to(stack.data_dir)}")
    assert not opened, "readable by others:\n" + "\n".join(sorted(opened)[:30])


def _replay_voice(stack: EmbeddedStack, peer: TwilioPeer) -> httpx.Response:
    url = stack.api_url(REGION) + "/twilio/voice"
    form = {"CallSid": peer.call_sid, "AccountSid": peer.account_sid, "From": peer.from_number,
            "To": peer.to_number, "Direction": "inbound", "CallStatus": "ringing", "ApiVersion": "2010-04-01"}
    return httpx.post(url, data=form, headers=peer._signed(url, form), timeout=15)


def _worker_reserved(stack: EmbeddedStack) -> int:
    return int(httpx.get(stack.cells[REGION].workers[0].url + "/healthz", timeout=5).json()["reserved"])


def test_replayed_webhooks_reserve_nothing_and_write_no_event(stack: EmbeddedStack) -> None:
    lines = [CallerLine("What are your opening hours?", pause_ms=2500),
             CallerLine("Thank you, goodbye.")]
    peer = TwilioPeer(stack.api_url(REGION), stack.secrets["twilio_auth_token"],
                      to_number=stack.demo[REGION].number)
    live_answers: dict[str, object] = {}

    async def call_with_replays_while_live() -> None:
        await peer.open_stream(await peer.ring())
        caller = asyncio.create_task(ScriptedCaller(peer, lines, engine=EspeakEngine()).run())
        await asyncio.sleep(4.0)  # the stream is up and the agent is talking
        assert not caller.done()
        voice = await asyncio.to_thread(_replay_voice, stack, peer)
        live_answers["voice"] = (voice.status_code, stream_in_twiml(voice.text))
        live_answers["reserved"] = await asyncio.to_thread(_worker_reserved, stack)
        live_answers["action"] = await peer.follow_action()  # a signed stream-ended, first stream up
        await caller

    asyncio.run(call_with_replays_while_live())
    assert live_answers["voice"] == (200, None), "a live call's webhook again got a new stream"
    assert live_answers["reserved"] == 0, "a replayed webhook reserved a worker slot"
    assert live_answers["action"] is None, "a resume was granted while the first stream was up"
    assert len(peer.stream_sids) == 1
    call_id = wait_completed(stack, REGION, peer.call_sid)
    time.sleep(1.0)
    before = (events_of(stack, REGION, call_id), stream_ids(stack, REGION, call_id))

    voice = _replay_voice(stack, peer)  # the call is over now
    assert voice.status_code == 200 and stream_in_twiml(voice.text) is None
    assert _worker_reserved(stack) == 0
    assert asyncio.run(peer.follow_action()) is None
    time.sleep(2.0)
    assert (events_of(stack, REGION, call_id), stream_ids(stack, REGION, call_id)) == before
    assert call_id == call_id_of(stack, REGION, peer.call_sid)
    assert not re.search(r"call_rejected", json.dumps(before[0]))
