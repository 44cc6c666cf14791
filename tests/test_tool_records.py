"""The `record` tool kind end to end in a cell: an agent created through the control API (the Stay and
Recruit records of cells/agents) runs as a worker builds it, its record tool writes over real NATS to the
cell's record responder, which stores the record in the tenant's regional table (PostgreSQL, migration
0004); the tenant API lists it (by kind, by call) and per call, and never to another tenant. A repeated
write stores once; a full room type, a foreign agent and a store that is down are refused, never done."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from control_api_fixtures import FAST, Api, control_api, fetch, insert
from verticals_harness import AGENTS, FakeSession

from cells.agent import AgentEnv, agent_from_spec
from cells.contract.records import records_write_subject
from cells.launcher.nats import nats_server_binary
from cells.launcher.ports import free_port
from cells.tools.record import CallTools
from control.db.models import Call, ToolRecord
from control.records.responder import RecordResponder
from control.records.service import RecordService

STAY = {"check_in": "2026-12-13", "check_out": "2026-12-16", "guests": 2, "room_type": "twin room",
        "name": "Tom Becker", "phone": "5559814"}


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def create(api: Api, label: str, vertical: str, **changes: Any) -> dict[str, Any]:
    body = {**json.loads((AGENTS / vertical / "agent.json").read_text()), **changes}
    r = api.call("POST", api.tenant_path(label, "/agents"), token=api.tokens[f"{label}:owner"], json=body)
    assert r.status == 201, r.text
    return dict(r.body)


async def _connect(url: str) -> Any:
    for _ in range(100):
        try:
            return await nats.connect(url, max_reconnect_attempts=0)
        except Exception:
            await asyncio.sleep(0.05)
    raise AssertionError("nats-server did not start")


def run_tool(api: Api, url: str, spec: dict[str, Any], tool: str, args: dict[str, Any], call_sid: str, *,
             responder: bool = True) -> dict[str, Any]:
    """One confirmed run of the agent's tool within call `call_sid`, as a cell's worker runs it."""

    async def scenario() -> dict[str, Any]:
        nc = await _connect(url)
        service = RecordResponder(nc, RecordService(lambda: api.db.sessions, "eu"))
        if responder:
            await service.start()
        try:
            agent = agent_from_spec(spec, data_dir=None, env=AgentEnv(), nc=nc, region="eu")
            tools = CallTools(agent.tools, FakeSession(call_sid))
            return await tools.call(tool, args, confirmed=True)
        finally:
            await service.stop()
            await nc.close()

    return api.db.run(scenario())


def records(api: Api, label: str, query: str = "", token: str | None = None) -> Any:
    token = token or api.tokens[f"{label}:owner"]
    return api.call("GET", api.tenant_path(label, "/records" + query), token=token)


def test_a_reservation_is_stored_once_in_its_region_and_listed_per_call(api: Api, nats_url: str) -> None:
    stay = create(api, "a", "stay")
    call = Call(id=uuid.uuid4(), tenant_id=api.tenants["a"], region="eu", agent_id=uuid.UUID(stay["id"]),
                direction="inbound", from_e164="+442071838750", to_e164="+442071838751",
                carrier_call_sid="CAstay0001", status="in_progress")
    insert(api, "a", call)
    first = run_tool(api, nats_url, stay, "reserve_room", STAY, "CAstay0001")
    again = run_tool(api, nats_url, stay, "reserve_room", STAY, "CAstay0001")  # a retried write
    assert first["ok"] is True and first["status"] == "stored", first
    assert again == {**first, "status": "already_stored"}
    rows = fetch(api, ToolRecord)
    assert [(r.tenant_id, r.region, r.kind, r.arguments, r.call_id) for r in rows] == [
        (api.tenants["a"], "eu", "reservation", STAY, call.id)]
    listed = records(api, "a", "?kind=reservation").body["items"]
    assert [(i["id"], i["arguments"], i["call_sid"]) for i in listed] == [
        (first["record_id"], STAY, "CAstay0001")]
    assert records(api, "a", f"?call_id={call.id}").body["items"] == listed
    assert records(api, "a", "?kind=screen_result").body["items"] == []
    path = f"/calls/{call.id}/records"
    per_call = api.call("GET", api.tenant_path("a", path), token=api.tokens["a:viewer"])
    assert per_call.status == 200 and per_call.body["items"] == listed
    # Another tenant sees none of it: its own list is empty, a's routes refuse its token, a's call is unknown.
    assert records(api, "b").body["items"] == []
    assert records(api, "a", token=api.tokens["b:owner"]).status in (401, 403, 404)
    b_call = api.call("GET", api.tenant_path("b", f"/calls/{call.id}/records"), token=api.tokens["b:owner"])
    assert b_call.status == 404
    # b's own call that happens to carry the same carrier sid shows none of a's records.
    twin = Call(id=uuid.uuid4(), tenant_id=api.tenants["b"], region="eu", direction="inbound",
                from_e164="+442071838750", to_e164="+442071838752", carrier_call_sid="CAstay0001",
                status="completed")
    insert(api, "b", twin)
    b_twin = api.call("GET", api.tenant_path("b", f"/calls/{twin.id}/records"), token=api.tokens["b:owner"])
    assert b_twin.status == 200 and b_twin.body["items"] == []
    assert records(api, "a", "?kind=Bad-Kind").status == 422


def test_the_last_room_is_not_sold_twice_and_a_foreign_agent_writes_nothing(api: Api, nats_url: str) -> None:
    tools = json.loads((AGENTS / "stay" / "agent.json").read_text())["tools"]
    tools[0]["capacity"]["limits"]["family suite"] = 1
    stay = create(api, "a", "stay", name="Small hotel", tools=tools)
    suite = {**STAY, "room_type": "family suite", "guests": 4}
    booked = run_tool(api, nats_url, stay, "reserve_room", suite, "CAsuite1")
    assert booked["ok"] is True
    # Its retry is the same booking, not a second one that finds the suite taken (by itself).
    retried = run_tool(api, nats_url, stay, "reserve_room", suite, "CAsuite1")
    assert retried == {**booked, "status": "already_stored"}
    overlapping = {**suite, "check_in": "2026-12-15", "check_out": "2026-12-18", "name": "Ann Lee"}
    full = run_tool(api, nats_url, stay, "reserve_room", overlapping, "CAsuite2")
    assert full["ok"] is False and full["error"] == "unavailable", full
    later = {**suite, "check_in": "2026-12-16", "check_out": "2026-12-18"}  # starts the day the first leaves
    assert run_tool(api, nats_url, stay, "reserve_room", later, "CAsuite3")["ok"] is True
    backwards = {**suite, "check_in": "2026-12-20", "check_out": "2026-12-19"}
    assert run_tool(api, nats_url, stay, "reserve_room", backwards, "CAsuite4")["error"] == "invalid_dates"
    # Tenant b's worker naming a's agent (a forged or confused write): refused, nothing stored for b or a.
    before = len(fetch(api, ToolRecord))
    forged = {**stay, "tenant_id": str(api.tenants["b"])}
    refused = run_tool(api, nats_url, forged, "reserve_room", {**STAY, "name": "Eve"}, "CAforged")
    assert refused["ok"] is False and refused["error"] == "invalid_record"
    assert len(fetch(api, ToolRecord)) == before
    assert records(api, "b").body["items"] == []


def test_the_api_refuses_a_broken_record_tool_or_rule_with_a_422(api: Api) -> None:
    spec = json.loads((AGENTS / "recruit" / "agent.json").read_text())
    spec["flows"]["main"]["states"]["assess"]["assess"]["knock_out"][0]["op"] = "about"
    bad = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:owner"], json=spec)
    assert bad.status == 422 and "rule op 'about'" in bad.text, bad.text
    stay = json.loads((AGENTS / "stay" / "agent.json").read_text())
    stay["tools"][0]["capacity"] = {"per": "room_type"}
    bad = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:owner"], json=stay)
    assert bad.status == 422 and "capacity needs 'from'" in bad.text, bad.text


def test_a_store_that_is_down_is_reported_as_failed(api: Api, nats_url: str, tmp_path: Path) -> None:
    recruit = create(api, "a", "recruit")
    args = {"name": "Tom Becker", "over_18": True, "right_to_work": True, "forklift_licence": False,
            "shifts": True, "start_date": "2026-12-10", "years_experience": 1, "score": 2.0,
            "knocked_out": False, "reason": ""}
    before = len(fetch(api, ToolRecord))
    result = run_tool(api, nats_url, recruit, "submit_screen", args, "CAnobody", responder=False)
    assert result["ok"] is False and result["error"] == "record_store_unavailable", result
    assert len(fetch(api, ToolRecord)) == before

    async def broken_database() -> dict[str, Any]:  # the responder is up, its database is not
        responder = RecordResponder(None, RecordService(lambda: _dead_sessions(), "eu"))  # type: ignore[arg-type]
        data = {"tenant_id": str(api.tenants["a"]), "agent_id": recruit["id"], "call": "CAx", "tool": "t",
                "kind": "screen_result", "arguments": {}}
        return await responder.answer(json.dumps(data).encode())

    assert api.db.run(broken_database())["error"] == "store_failed"
    assert records_write_subject("eu") == "eu.records.write"


def _dead_sessions() -> Any:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    return async_sessionmaker(create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
