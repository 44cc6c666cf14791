"""Guards on the real embedded PostgreSQL: a tenant keeps an owner token, provider secrets are
write-only, and tenant-scoped UPDATE and DELETE never reach another tenant's rows (checked on the
other tenant's rows after the change is committed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from control_api_fixtures import AGENT, FAST, Api, api_with, control_api, fetch, insert, scope_for
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.auth import make_token_row
from control.api.sealing import SealError, new_region_key, parse_region_key, seal, unseal
from control.cell.voice import agent_spec
from control.db.models import Agent, ApiToken
from control.db.session import run_transaction
from control.db.tenancy import scoped_delete, scoped_update, tenant_session


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def _owner_tokens(api: Api, label: str) -> list[ApiToken]:
    return [t for t in fetch(api, ApiToken, tenant_id=api.tenants[label]) if t.role == "owner"]


def test_the_last_active_owner_token_cannot_be_revoked(api: Api) -> None:
    owner = api.tokens["b:owner"]
    (only,) = _owner_tokens(api, "b")
    refused = api.call("DELETE", api.tenant_path("b", f"/tokens/{only.id}"), token=owner)
    assert refused.status == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.body["status"] == 409 and "owner" in refused.body["detail"]
    assert api.call("GET", api.tenant_path("b", "/tokens"), token=owner).status == 200  # still works

    # An expired owner token is no way in: it does not count as another owner.
    scope = scope_for(api, "b")

    async def mint_expired(session: AsyncSession) -> None:
        row, _ = make_token_row(scope, "owner", name="old", ttl=timedelta(seconds=-1))
        session.add(row)

    api.db.run(run_transaction(api.db.sessions, mint_expired, scope=scope))
    assert api.call("DELETE", api.tenant_path("b", f"/tokens/{only.id}"), token=owner).status == 409

    second = api.call("POST", api.tenant_path("b", "/tokens"), token=owner,
                      json={"role": "owner", "name": "2"})
    assert second.status == 201
    assert api.call("DELETE", api.tenant_path("b", f"/tokens/{only.id}"), token=owner).status == 204
    new = second.body["token"]
    last = api.call("DELETE", api.tenant_path("b", f"/tokens/{second.body['id']}"), token=new)
    assert last.status == 409
    active = [t for t in _owner_tokens(api, "b") if t.revoked_at is None
              and (t.expires_at is None or t.expires_at > datetime.now(UTC))]
    assert [str(t.id) for t in active] == [second.body["id"]]


SECRET_PROVIDERS = {
    "stt": {"name": "speechmatics", "options": {"api_key": "sm-key-123456", "language": "en"}},
    "llm": {"name": "openai", "options": {"openai_api_key": "sk-abcdef", "client_secret": "cs-1",
                                          "auth_token": "tok-1", "max_tokens": 200, "temperature": 0.2}},
    "tts": {"name": "espeak"},
}


def _stored_providers(api: Api, agent_id: str) -> dict:
    (row,) = fetch(api, Agent, id=uuid.UUID(agent_id))
    return row.providers


def test_provider_secrets_are_write_only(api: Api) -> None:
    admin = api.tokens["a:admin"]
    created = api.call("POST", api.tenant_path("a", "/agents"), token=admin,
                       json={**AGENT, "providers": SECRET_PROVIDERS})
    assert created.status == 201, created.text
    agent_id = created.body["id"]
    got = api.call("GET", api.tenant_path("a", f"/agents/{agent_id}"), token=admin)
    listed = api.call("GET", api.tenant_path("a", "/agents?limit=100"), token=admin)
    shown = [created.text, got.text, listed.text]
    for text in shown:
        for secret in ("sm-key-123456", "sk-abcdef", "cs-1", "tok-1"):
            assert secret not in text
    llm = got.body["providers"]["llm"]["options"]
    assert llm["openai_api_key"] == {"set": True} and llm["client_secret"] == {"set": True}
    assert llm["auth_token"] == {"set": True}
    assert llm["max_tokens"] == 200 and llm["temperature"] == 0.2  # not secrets
    assert got.body["providers"]["stt"]["options"] == {"api_key": {"set": True}, "language": "en"}
    # The workers still get the key (stored as given).
    assert _stored_providers(api, agent_id)["stt"]["options"]["api_key"] == "sm-key-123456"

    # An update naming the same provider without the key keeps it; "" removes it; a new value replaces.
    keep = {"stt": {"name": "speechmatics", "options": {"language": "de"}}, "llm": SECRET_PROVIDERS["llm"]}
    # These provider changes pass the eval gate by an owner's override (the gate has its own tests).
    owner, why = api.tokens["a:owner"], "secret handling test"
    patched = api.call("PATCH", api.tenant_path("a", f"/agents/{agent_id}"), token=owner,
                       json={"providers": keep, "override_reason": why})
    assert patched.status == 200, patched.text
    assert patched.body["providers"]["stt"]["options"] == {"api_key": {"set": True}, "language": "de"}
    assert _stored_providers(api, agent_id)["stt"]["options"]["api_key"] == "sm-key-123456"
    removed = api.call("PATCH", api.tenant_path("a", f"/agents/{agent_id}"), token=owner, json={
        "providers": {"stt": {"name": "speechmatics", "options": {"api_key": ""}}}, "override_reason": why})
    assert removed.status == 200 and "api_key" not in removed.body["providers"]["stt"]["options"]
    assert "api_key" not in _stored_providers(api, agent_id)["stt"]["options"]


def test_the_openapi_document_still_describes_agents(api: Api) -> None:
    doc = api.call("GET", "/openapi.json")
    assert doc.status == 200
    assert "409" in doc.body["paths"]["/v1/tenants/{tenant_id}/tokens/{token_id}"]["delete"]["responses"]


def _agents(api: Api, label: str) -> dict[uuid.UUID, str]:
    return {a.id: a.name for a in fetch(api, Agent, tenant_id=api.tenants[label])}


@pytest.fixture
def two_tenants_agents(api: Api) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, str]]:
    now = datetime.now(UTC)
    for label in ("a", "b"):
        scope = scope_for(api, label)
        insert(api, label, *[scope.new(Agent, id=uuid.uuid4(), name=f"{label}-{i}", vertical="reception",
                                       persona="", voice={}, providers={}, tools=[], flows={}, compliance={},
                                       created_at=now, updated_at=now) for i in range(2)])
    return _agents(api, "a"), _agents(api, "b")


def test_scoped_update_and_delete_leave_other_tenants_rows_alone(api: Api, two_tenants_agents) -> None:
    """The statements alone (no tenant-bound session): the builders' own filter is all there is."""
    others_before = two_tenants_agents[1]
    scope = scope_for(api, "a")

    async def mutate() -> None:
        async with api.db.engine.begin() as conn:  # committed, not rolled back
            await conn.execute(scoped_update(Agent, scope).values(persona="changed by a"))
            await conn.execute(scoped_delete(Agent, scope).where(Agent.name.like("a-%")))

    api.db.run(mutate())
    assert _agents(api, "b") == others_before
    assert all(a.persona != "changed by a" for a in fetch(api, Agent, tenant_id=api.tenants["b"]))
    assert not [n for n in _agents(api, "a").values() if n.startswith("a-")]


def test_an_unfiltered_update_and_delete_in_a_tenant_session_stay_in_the_tenant(
        api: Api, two_tenants_agents) -> None:
    """Plain UPDATE and DELETE with no tenant filter at all, in a session bound to tenant a: the
    session's guard adds the tenant's criteria."""
    others_before = two_tenants_agents[1]
    scope = scope_for(api, "a")

    async def mutate() -> None:
        async with api.db.sessions() as session:
            tenant_session(session, scope)
            await session.execute(update(Agent).values(persona="session of a"))
            await session.execute(delete(Agent).where(Agent.name.like("%-1")))
            await session.commit()

    api.db.run(mutate())
    assert _agents(api, "b") == others_before
    assert all(a.persona != "session of a" for a in fetch(api, Agent, tenant_id=api.tenants["b"]))
    assert all(a.persona == "session of a" for a in fetch(api, Agent, tenant_id=api.tenants["a"]))


def test_sealing_opens_only_with_the_region_key_and_the_tenant() -> None:
    key, other = parse_region_key(new_region_key()), parse_region_key(new_region_key())
    assert key is not None and other is not None
    sealed = seal(key, "tenant-1", "sk-live-secret")
    assert "sk-live-secret" not in str(sealed)
    assert unseal(key, "tenant-1", sealed) == "sk-live-secret"
    for wrong_key, tenant in ((other, "tenant-1"), (key, "tenant-2")):
        with pytest.raises(SealError):
            unseal(wrong_key, tenant, sealed)
    version, wrapped, body = sealed["sealed"].split(".")
    tampered = {"sealed": f"{version}.{wrapped}.{body[:-4]}AAAA"}
    with pytest.raises(SealError):
        unseal(key, "tenant-1", tampered)
    with pytest.raises(ValueError):
        parse_region_key("c2hvcnQ")  # 5 bytes


def test_provider_secrets_are_sealed_at_rest_and_opened_for_the_worker(api: Api) -> None:
    region_key = parse_region_key(new_region_key())
    with api_with(api, secrets_key=region_key) as sealed_api:
        admin = api.tokens["a:admin"]
        created = sealed_api.call("POST", api.tenant_path("a", "/agents"), token=admin,
                                  json={**AGENT, "providers": SECRET_PROVIDERS})
        assert created.status == 201, created.text
        agent_id = created.body["id"]
        stored = _stored_providers(api, agent_id)
        assert "sm-key-123456" not in str(stored) and "sk-abcdef" not in str(stored)
        assert stored["stt"]["options"]["language"] == "en"
        assert created.body["providers"]["stt"]["options"]["api_key"] == {"set": True}
        # An update that leaves the key out keeps the sealed one; the worker's spec has it in clear.
        patched = sealed_api.call("PATCH", api.tenant_path("a", f"/agents/{agent_id}"),
                                  token=api.tokens["a:owner"], json={
            "providers": {"stt": {"name": "speechmatics", "options": {"language": "de"}}},
            "override_reason": "secret handling test"})
        assert patched.status == 200

        async def spec(key: bytes | None) -> dict:
            async with sealed_api.app.app_context():
                got = await agent_spec("eu", str(api.tenants["a"]), agent_id, key)
            assert got is not None
            return got["providers"]

        opened = api.db.run(spec(region_key))
        assert opened["stt"]["options"] == {"api_key": "sm-key-123456", "language": "de"}
        assert "api_key" not in api.db.run(spec(parse_region_key(new_region_key())))["stt"]["options"]
