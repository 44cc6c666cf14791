"""Whole calls with real audio to the demo's data-defined agents (cells/agents/recruit, cells/agents/stay):
the embedded worker runs each agent from its JSON record (`--agent-spec`), the Twilio peer calls in real
time with an eSpeak NG caller, the worker hears it with Whisper, and what the call wrote is read from the
worker's record store (the SQLite store a worker without a cell uses; the cell's store is the same
interface over NATS). The candidate's score and knock-out, the reservation's dates, guests and room, and
a caller who says no at the read-back (nothing written) are checked against the script's expectations."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cells.simulator.caller import ScriptedCaller
from cells.simulator.run import worker_process
from cells.simulator.twilio_peer import TwilioPeer
from cells.simulator.vertical_scripts import AGENTS_DIR, VERTICAL_SCRIPTS
from cells.speech.espeak import EspeakEngine
from cells.tools.record_stores import SqliteRecordStore

TOKEN = secrets.token_hex(16)
TENANT = "demo-tenant"


async def _call(url: str, lines: list[Any]) -> tuple[TwilioPeer, Any]:
    peer = TwilioPeer(url, TOKEN)
    await peer.open_stream(await peer.ring())
    result = await ScriptedCaller(peer, lines, engine=EspeakEngine(), voice="en-gb+m3", max_call_s=120).run()
    return peer, result


def run_script(tmp: Path, name: str) -> tuple[list[dict[str, Any]], Any, date, Any]:
    script = VERTICAL_SCRIPTS[name]
    spec = {"id": f"demo-{script.agent}", "tenant_id": TENANT,
            **json.loads((AGENTS_DIR / script.agent / "agent.json").read_text())}
    path = tmp / "agent.json"
    path.write_text(json.dumps(spec))
    today = date.today()
    with worker_process(tmp / "worker", TOKEN, ["--agent-spec", str(path)]) as (_, url):
        peer, result = asyncio.run(_call(url, script.lines(today)))
    records = SqliteRecordStore(tmp / "worker" / "records.sqlite3").list(TENANT, kind=script.kind)
    return records, result, today, peer


def _talk(tmp: Path) -> str:
    calls = sorted((tmp / "worker" / "calls").glob("*.json"))
    history = [m for c in calls for m in json.loads(c.read_text())["history"]]
    return "\n".join(f"{m['role']}: {m['content']}" for m in history)


# Each call is about a minute of real time; the default run keeps the reservation (dates, guests, room)
# within its 15-minute budget, and `pytest -m slow` runs the other two (the flows' turn-by-turn tests in
# tests/test_verticals_flows.py cover their branches in the default run).
@pytest.mark.slow
def test_the_candidate_gets_the_right_score_and_knock_out_in_the_ats(tmp_path: Path) -> None:
    records, result, today, peer = run_script(tmp_path, "screen")
    expected = VERTICAL_SCRIPTS["screen"].expected(today)
    assert [r["arguments"] for r in records] == [expected], _talk(tmp_path)
    assert records[0]["call"] == peer.call_sid and records[0]["agent_id"] == "demo-recruit"
    assert result.ended_by_agent, _talk(tmp_path)


# With -m slow like the other two: a whole real-time call whose outcome rests on tiny.en hearing eSpeak's
# room and dates (the default run's 15-minute budget). The flow itself is tested on text in
# test_verticals_flows.py.
@pytest.mark.slow
def test_the_hotel_reservation_has_the_right_dates_guests_and_room(tmp_path: Path) -> None:
    records, result, today, _ = run_script(tmp_path, "reserve")
    assert [r["arguments"] for r in records] == [VERTICAL_SCRIPTS["reserve"].expected(today)], _talk(tmp_path)
    assert result.ended_by_agent, _talk(tmp_path)


@pytest.mark.slow
def test_a_caller_who_says_no_dont_book_it_gets_nothing_written(tmp_path: Path) -> None:
    records, result, _, _ = run_script(tmp_path, "no-booking")
    talk = _talk(tmp_path)
    assert records == [], talk
    assert "Just to confirm: reserve room" in talk, "the caller heard the read-back before saying no"
    assert "I haven't booked anything" in talk and "You're booked" not in talk, talk
    assert result.ended_by_agent, talk


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q", "-n", "0"]))
