"""The audit log on the real embedded PostgreSQL: every mutating API request leaves a row (allowed or
refused), agents' tool calls leave rows without their arguments, the rows are read and exported only
by the tenant's owners and admins, and nothing (the API or SQL) can change or remove them."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from control_api_fixtures import FAST, Api, Reply, control_api, fetch, insert, scope_for
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from cells.contract.envelope import CallEventEnvelope
from control.db.models import AuditLog, Call
from control.events import apply_event

CLIENT = ("203.0.113.77", 40000)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def call_from(api: Api, method: str, path: str, token: str, body: Any = None) -> Reply:
    """A request from CLIENT's address (the fixture's client has none)."""
    async def go() -> Reply:
        client = api.app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body), "application/json"
        resp = await client.open(path, method=method, headers=headers, data=data,
                                 scope_base={"client": CLIENT})
        raw = await resp.get_data(as_text=True)
        parsed = json.loads(raw) if "json" in resp.content_type else None
        return Reply(resp.status_code, resp.headers, parsed, raw)

    return api.db.run(go())


def raw_get(api: Api, path: str, token: str) -> tuple[int, Any, str]:
    """A GET whose body is not one JSON document (an export)."""
    async def go() -> tuple[int, Any, str]:
        resp = await api.app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
        return resp.status_code, resp.headers, await resp.get_data(as_text=True)

    return api.db.run(go())


def rows(api: Api, label: str = "a") -> list[AuditLog]:
    return fetch(api, AuditLog, tenant_id=api.tenants[label])


def token_id(api: Api, token: str) -> str:
    listed = api.call("GET", api.tenant_path("a", "/tokens"), token=api.tokens["a:owner"]).body["items"]
    [match] = [t for t in listed if token.startswith(t["prefix"])]
    return match["id"]


def test_a_mutating_request_is_audited_with_who_what_target_and_network(api: Api) -> None:
    before = {r.id for r in rows(api)}
    r = call_from(api, "POST", api.tenant_path("a", "/tokens"), api.tokens["a:admin"],
                  {"name": "ci", "role": "viewer"})
    assert r.status == 201, r.text
    secret, new_id = r.body["token"], r.body["id"]
    revoked = call_from(api, "DELETE", api.tenant_path("a", f"/tokens/{new_id}"), api.tokens["a:admin"])
    assert revoked.status == 204
    new = sorted((x for x in rows(api) if x.id not in before), key=lambda x: x.created_at)
    generic = [x for x in new if x.action.startswith(("POST ", "DELETE "))]
    assert [(x.action, x.target_type, x.target_id) for x in generic] == [
        ("POST /tokens", "tokens", None), ("DELETE /tokens/{token_id}", "tokens", new_id)]
    admin = token_id(api, api.tokens["a:admin"])
    for row in generic:
        assert (row.actor, row.actor_role, row.via) == (f"token:{admin}", "admin", "api")
        assert row.source == "203.0.113.0/24"  # the network, never the address
        assert row.details["outcome"] == "ok"
        dumped = json.dumps([row.details, row.action, row.target_id, row.source])
        assert secret not in dumped and "203.0.113.77" not in dumped


def test_a_refused_attempt_is_audited_and_a_bad_token_writes_nothing(api: Api) -> None:
    before = {r.id for r in rows(api)}
    path = api.tenant_path("a", "/retention")
    r = api.call("PUT", path, token=api.tokens["a:viewer"], json={"call_days": 1})
    assert r.status == 403
    r = api.call("PUT", path, token="as_eu_" + "x" * 43, json={"call_days": 1})
    assert r.status == 401
    [row] = [x for x in rows(api) if x.id not in before]
    assert row.action == "PUT /retention" and row.actor_role == "viewer"
    assert row.details == {"status": 403, "outcome": "denied"}


def test_only_owners_and_admins_read_and_only_their_own_tenant(api: Api) -> None:
    api.call("PUT", api.tenant_path("b", "/retention"), token=api.tokens["b:owner"], json={"call_days": 9})
    api.call("PUT", api.tenant_path("a", "/retention"), token=api.tokens["a:owner"], json={"call_days": 8})
    path = api.tenant_path("a", "/audit-log")
    for role in ("operator", "viewer"):
        assert api.call("GET", path, token=api.tokens[f"a:{role}"]).status == 403
    assert api.call("GET", path, token=api.tokens["b:owner"]).status == 401  # another tenant's token
    assert api.call("GET", path + "/export", token=api.tokens["b:owner"]).status == 401
    a_ids = {str(r.id) for r in rows(api, "a")}
    b_page = api.call("GET", api.tenant_path("b", "/audit-log?limit=100"), token=api.tokens["b:owner"])
    assert b_page.status == 200 and b_page.body["items"]
    assert not a_ids & {item["id"] for item in b_page.body["items"]}
    a_page = api.call("GET", path + "?limit=100", token=api.tokens["a:owner"]).body["items"]
    assert a_page and {item["id"] for item in a_page} <= a_ids


def test_no_route_changes_a_row_and_sql_cannot_either(api: Api) -> None:
    api.call("PUT", api.tenant_path("a", "/retention"), token=api.tokens["a:owner"], json={"call_days": 400})
    snapshot = {(r.id, r.action, json.dumps(r.details, sort_keys=True)) for r in rows(api)}
    some = next(iter(snapshot))[0]
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        for rest in ("/audit-log", f"/audit-log/{some}"):
            r = api.call(method, api.tenant_path("a", rest), token=api.tokens["a:owner"],
                         json={"action": "x"})
            assert r.status in (404, 405), (method, rest, r.status)
    after = {(r.id, r.action, json.dumps(r.details, sort_keys=True)) for r in rows(api)}
    assert snapshot <= after  # only new rows (the refused requests' own) were added

    async def sql(statement: str) -> None:
        async with api.db.engine.begin() as conn:
            await conn.execute(text(statement))

    for statement in (f"UPDATE audit_log SET action = 'forged' WHERE id = '{some}'",
                      f"DELETE FROM audit_log WHERE id = '{some}'", "DELETE FROM audit_log_eu",
                      "TRUNCATE audit_log", "TRUNCATE audit_log_eu"):
        with pytest.raises(DBAPIError, match="append-only"):
            api.db.run(sql(statement))
    assert snapshot <= {(r.id, r.action, json.dumps(r.details, sort_keys=True)) for r in rows(api)}


def test_filters_pages_and_exports(api: Api) -> None:
    owner = api.tokens["a:owner"]
    for days in (10, 11, 12):
        api.call("PUT", api.tenant_path("a", "/retention"), token=owner, json={"call_days": days})
    base = api.tenant_path("a", "/audit-log")
    first = api.call("GET", base + "?action=PUT%20/retention&limit=2", token=owner).body
    assert len(first["items"]) == 2 and first["next_offset"] == 2
    assert all(i["action"] == "PUT /retention" for i in first["items"])
    stamps = [i["created_at"] for i in first["items"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    second = api.call("GET", base + "?action=PUT%20/retention&limit=2&offset=2", token=owner).body
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}
    prefixed = api.call("GET", base + "?action=PUT%20*&via=api&limit=100", token=owner).body["items"]
    assert prefixed and all(i["action"].startswith("PUT ") for i in prefixed)
    assert api.call("GET", base + "?via=nobody", token=owner).status == 422
    assert api.call("GET", base + "?since=yesterday", token=owner).status == 422

    status, headers, body = raw_get(api, base + "/export?action=PUT%20/retention", owner)
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    exported = [json.loads(line) for line in body.splitlines()]
    total = len(api.call("GET", base + "?action=PUT%20/retention&limit=100", token=owner).body["items"])
    assert len(exported) == total >= 3 and all(e["action"] == "PUT /retention" for e in exported)
    status, headers, body = raw_get(api, base + "/export?format=csv&action=PUT%20/retention", owner)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(body)))
    assert [r["id"] for r in table] == [e["id"] for e in exported]
    assert json.loads(table[0]["details"])["outcome"] == "ok"


def test_agent_tool_calls_are_audited_without_their_arguments(api: Api) -> None:
    scope = scope_for(api, "a")
    call_id = uuid.uuid4()
    insert(api, "a", scope.new(Call, id=call_id, direction="inbound", from_e164="+447700900123",
                               to_e164="+442079460000", status="in_progress"))
    secret_args = {"name": "Maria Lopez", "phone": "+447700900123", "card": "4111111111111111"}
    for n, (kind, data) in enumerate([("tool_call", {"name": "create_booking", "arguments": secret_args,
                                                     "confirmed": True}),
                                      ("tool_result", {"name": "create_booking", "result": {"id": "BK1"}}),
                                      ("tool_held", {"name": "create_booking"})]):
        env = CallEventEnvelope.new(call_id=str(call_id), tenant_id=str(scope.tenant_id), region="eu",
                                    kind=kind, event_id=f"{call_id}:w:{n}", data=data, source="w1")
        api.db.run(apply_event(api.db.sessions, env))
        api.db.run(apply_event(api.db.sessions, env))  # a redelivery adds no second row
    mine = sorted((r for r in rows(api) if r.target_id == str(call_id)), key=lambda r: r.created_at)
    assert [(r.action, r.via, r.actor_role, r.target_type) for r in mine] == [
        ("agent.tool_call", "agent", "agent", "call"), ("agent.tool_held", "agent", "agent", "call")]
    assert mine[0].details == {"name": "create_booking", "confirmed": True}
    dumped = json.dumps([r.details for r in mine])
    assert all(v not in dumped for v in secret_args.values())
