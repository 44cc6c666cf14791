"""Agents on the real embedded PostgreSQL: deleting one that is still referenced, and name validation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from control_api_fixtures import AGENT, FAST, Api, control_api, fetch, insert, scope_for

from control.db.models import Agent, Call, PhoneNumber

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def _agent(api: Api, **extra: object) -> str:
    body = {**AGENT, **extra}
    r = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"], json=body)
    assert r.status == 201, r.text
    return r.body["id"]


def _number(api: Api, agent_id: str | None) -> str:
    number = "+4420" + str(uuid.uuid4().int)[:8]
    r = api.call("POST", api.tenant_path("a", "/phone-numbers"), token=api.tokens["a:admin"],
                 json={"e164": number, "agent_id": agent_id})
    assert r.status == 201, r.text
    return number


def _agents(api: Api, agent_id: str) -> list[Agent]:
    return fetch(api, Agent, id=uuid.UUID(agent_id))


def test_deleting_an_agent_with_calls_is_409_and_deletes_nothing(api: Api) -> None:
    agent = _agent(api)
    call = scope_for(api, "a").new(
        Call, id=uuid.uuid4(), agent_id=uuid.UUID(agent), direction="inbound", from_e164="+442071838750",
        to_e164="+442071838751", carrier_call_sid="CA" + uuid.uuid4().hex, status="completed",
        started_at=datetime.now(UTC), latency={})
    insert(api, "a", call)
    path = api.tenant_path("a", f"/agents/{agent}")
    r = api.call("DELETE", path, token=api.tokens["a:admin"])
    assert r.status == 409, r.text
    assert r.headers["Content-Type"] == PROBLEM
    assert r.body["type"].endswith("/agent-has-calls") and "calls" in r.body["detail"]
    assert "Keep it" in r.body["detail"]
    assert len(_agents(api, agent)) == 1 and len(fetch(api, Call, id=call.id)) == 1
    assert api.call("GET", path, token=api.tokens["a:viewer"]).status == 200


def test_deleting_an_agent_that_numbers_point_at_is_409_until_they_are_detached(api: Api) -> None:
    agent = _agent(api)
    numbers = sorted([_number(api, agent), _number(api, agent)])
    path = api.tenant_path("a", f"/agents/{agent}")
    admin = api.tokens["a:admin"]
    r = api.call("DELETE", path, token=admin)
    assert r.status == 409, r.text
    assert r.headers["Content-Type"] == PROBLEM
    assert r.body["type"].endswith("/agent-has-numbers") and r.body["phone_numbers"] == numbers
    assert all(n in r.body["detail"] for n in numbers)
    assert len(_agents(api, agent)) == 1
    assert {str(n.agent_id) for n in fetch(api, PhoneNumber, agent_id=uuid.UUID(agent))} == {agent}

    for number in numbers:
        r = api.call("PATCH", api.tenant_path("a", f"/phone-numbers/{number}"), token=admin,
                     json={"agent_id": None})
        assert r.status == 200, r.text
    r = api.call("DELETE", path, token=admin)
    assert r.status == 204, r.text
    assert _agents(api, agent) == []
    assert api.call("DELETE", path, token=admin).status == 404


def test_another_tenants_number_does_not_block_and_is_not_named(api: Api) -> None:
    # A number of tenant b cannot point at a's agent through the API; written directly, it is neither
    # shown to a nor a reason to refuse (the refusal only names the tenant's own numbers).
    agent = _agent(api)
    row = PhoneNumber(e164="+4420" + str(uuid.uuid4().int)[:8], region="eu", tenant_id=api.tenants["b"],
                      agent_id=uuid.UUID(agent))

    async def add() -> None:
        async with api.db.sessions() as s, s.begin():
            s.add(row)

    api.db.run(add())
    r = api.call("DELETE", api.tenant_path("a", f"/agents/{agent}"), token=api.tokens["a:admin"])
    assert r.status == 204 and row.e164 not in r.text


def test_the_openapi_document_describes_the_delete_refusals(api: Api) -> None:
    doc = api.call("GET", "/openapi.json").body
    op = doc["paths"]["/v1/tenants/{tenant_id}/agents/{agent_id}"]["delete"]
    assert "409" in op["responses"]
    assert "phone numbers" in op["description"] and "calls" in op["description"]
    assert "admin" in op["description"]  # the role note stays


@pytest.mark.parametrize("name", ["", " ", "   \t\n ", "\u3000"])
def test_blank_agent_names_are_422(api: Api, name: str) -> None:
    body = {**AGENT, "name": name}
    r = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"], json=body)
    assert r.status == 422 and r.body["errors"][0]["path"] == "name", r.text
    agent = _agent(api)
    r = api.call("PATCH", api.tenant_path("a", f"/agents/{agent}"), token=api.tokens["a:operator"],
                 json={"name": name})
    assert r.status == 422 and r.body["errors"][0]["path"] == "name", r.text


def test_names_are_stored_stripped(api: Api) -> None:
    r = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"],
                 json={**AGENT, "name": "  Front desk \n", "voice": {"voice_id": " en-gb "}})
    assert r.status == 201, r.text
    assert r.body["name"] == "Front desk" and r.body["voice"]["voice_id"] == "en-gb"
    r = api.call("PATCH", api.tenant_path("a", f"/agents/{r.body['id']}"), token=api.tokens["a:operator"],
                 json={"name": " Night desk "})
    assert r.status == 200 and r.body["name"] == "Night desk"
    r = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"],
                 json={**AGENT, "voice": {"voice_id": "  "}})
    assert r.status == 422 and r.body["errors"][0]["path"] == "voice.voice_id", r.text


def test_other_required_names_refuse_blanks(api: Api) -> None:
    owner = api.tokens["a:owner"]
    r = api.call("PATCH", api.tenant_path("a"), token=owner, json={"name": "  "})
    assert r.status == 422 and r.body["errors"][0]["path"] == "name", r.text
    r = api.call("POST", api.tenant_path("a", "/consents"), token=owner,
                 json={"subject_e164": "+442071838750", "kind": "recording", "granted": True, "source": " "})
    assert r.status == 422 and r.body["errors"][0]["path"] == "source", r.text
