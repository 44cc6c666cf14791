"""Control API on the real embedded PostgreSQL: roles, tenant isolation, tokens, residency, idempotency."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
from control_api_fixtures import AGENT, Api, control_api, serving, settings_for
from sqlalchemy import func, select

from control.api.auth import hash_token
from control.db.models import Agent, ApiToken, IdempotencyKey


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api() as api:
        yield api


def _create_agent(api: Api, token_key: str = "a:admin", **extra: object) -> dict:
    r = api.call(
        "POST", api.tenant_path("a", "/agents"), token=api.tokens[token_key], json={**AGENT, **extra}
    )
    assert r.status == 201, r.text
    return r.body


def test_tokens_are_stored_hashed(api: Api) -> None:
    owner = api.tokens["a:owner"]
    assert owner.startswith("as_eu_") and len(owner) == 49

    async def stored() -> list[bytes]:
        async with api.db.sessions() as s:
            return list(
                await s.scalars(
                    select(ApiToken.token_hash)
                    .where(ApiToken.tenant_id == api.tenants["a"])
                    .execution_options(autospeak_unscoped="test")
                )
            )

    hashes = api.db.run(stored())
    assert hash_token(owner) in hashes and owner.encode() not in hashes


def test_missing_wrong_and_expired_tokens_are_401(api: Api) -> None:
    path = api.tenant_path("a", "/agents")
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer as_eu_" + "x" * 43},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Bearer {api.tokens['a:expired']}"},
    ):
        r = api.call("GET", path, headers=headers)
        assert r.status == 401, (headers, r.text)
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.body["status"] == 401 and r.body["type"].startswith("https://")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_viewer_reads_but_cannot_create(api: Api) -> None:
    viewer = api.tokens["a:viewer"]
    assert api.call("GET", api.tenant_path("a", "/agents"), token=viewer).status == 200
    assert api.call("GET", api.tenant_path("a"), token=viewer).status == 200
    r = api.call("POST", api.tenant_path("a", "/agents"), token=viewer, json=AGENT)
    assert r.status == 403 and r.body["title"] == "Forbidden"
    assert api.call("GET", api.tenant_path("a", "/tokens"), token=viewer).status == 403


def test_operator_updates_but_cannot_create_or_delete(api: Api) -> None:
    agent = _create_agent(api)
    op = api.tokens["a:operator"]
    path = api.tenant_path("a", f"/agents/{agent['id']}")
    r = api.call("PATCH", path, token=op, json={"persona": "Calm", "compliance": {"retention_days": 7}})
    assert r.status == 200, r.text
    assert r.body["persona"] == "Calm" and r.body["compliance"]["retention_days"] == 7
    assert r.body["voice"] == agent["voice"]  # untouched fields stay
    assert api.call("DELETE", path, token=op).status == 403
    assert api.call("POST", api.tenant_path("a", "/agents"), token=op, json=AGENT).status == 403
    assert api.call("POST", api.tenant_path("a", "/tokens"), token=op, json={"role": "viewer"}).status == 403


def test_admin_creates_agents_and_tokens_but_not_owner_tokens(api: Api) -> None:
    agent = _create_agent(api)
    assert agent["voice"]["speed"] == 1.1 and agent["flows"]["booking"]["start"] == "ask"
    assert agent["tenant_id"] == str(api.tenants["a"]) and agent["region"] == "eu"
    admin = api.tokens["a:admin"]
    got = api.call("GET", api.tenant_path("a", f"/agents/{agent['id']}"), token=admin)
    assert got.status == 200 and got.body == agent
    listed = api.call("GET", api.tenant_path("a", "/agents?limit=100"), token=admin)
    assert agent["id"] in [a["id"] for a in listed.body["items"]]

    r = api.call(
        "POST", api.tenant_path("a", "/tokens"), token=admin, json={"name": "ci", "role": "operator"}
    )
    assert r.status == 201, r.text
    new = r.body["token"]
    assert new.startswith(r.body["prefix"]) and r.body["role"] == "operator"
    assert api.call("GET", api.tenant_path("a", "/agents"), token=new).status == 200
    listing = api.call("GET", api.tenant_path("a", "/tokens"), token=admin)
    assert all("token" not in t for t in listing.body["items"])  # the secret is shown once
    assert (
        api.call("POST", api.tenant_path("a", "/tokens"), token=admin, json={"role": "owner"}).status == 403
    )

    assert api.call("DELETE", api.tenant_path("a", f"/tokens/{r.body['id']}"), token=admin).status == 204
    assert api.call("GET", api.tenant_path("a", "/agents"), token=new).status == 401  # revoked
    assert api.call("DELETE", api.tenant_path("a", f"/agents/{agent['id']}"), token=admin).status == 204
    assert api.call("GET", api.tenant_path("a", f"/agents/{agent['id']}"), token=admin).status == 404


def test_owner_can_do_everything(api: Api) -> None:
    owner = api.tokens["a:owner"]
    r = api.call("POST", api.tenant_path("a", "/tokens"), token=owner, json={"role": "owner", "name": "2nd"})
    assert r.status == 201
    r = api.call("PATCH", api.tenant_path("a"), token=owner, json={"name": "Renamed A"})
    assert r.status == 200 and r.body["name"] == "Renamed A" and r.body["home_region"] == "eu"
    assert (
        api.call("PATCH", api.tenant_path("a"), token=api.tokens["a:admin"], json={"name": "x"}).status == 403
    )
    # The home region is fixed at creation: it is not a field that can be sent.
    r = api.call("PATCH", api.tenant_path("a"), token=owner, json={"name": "x", "home_region": "us"})
    assert r.status == 422 and r.body["errors"][0]["path"] == "home_region"


def test_cross_tenant_access_learns_nothing_about_other_tenants_or_their_objects(api: Api) -> None:
    agent = _create_agent(api)
    b_owner = api.tokens["b:owner"]
    # Naming another tenant, known or not, the token is not valid: one 401 for both (no existence probe).
    theirs = api.call("GET", api.tenant_path("a", f"/agents/{agent['id']}"), token=b_owner)
    missing_tenant = api.call("GET", f"/v1/tenants/{uuid.uuid4()}/agents/{agent['id']}", token=b_owner)
    assert theirs.status == missing_tenant.status == 401 and theirs.body == missing_tenant.body
    # Tenant b naming its own tenant but a's agent id: the scoped query finds nothing.
    own_path = api.call("GET", f"/v1/tenants/{api.tenants['b']}/agents/{agent['id']}", token=b_owner)
    missing_agent = api.call("GET", api.tenant_path("b", f"/agents/{uuid.uuid4()}"), token=b_owner)
    for r in (own_path, missing_agent):
        assert r.status == 404 and r.body == missing_agent.body
    for method, payload in (("PATCH", {"persona": "pwned"}), ("DELETE", None)):
        r = api.call(method, api.tenant_path("b", f"/agents/{agent['id']}"), token=b_owner, json=payload)
        assert r.status == 404
        r = api.call(method, api.tenant_path("a", f"/agents/{agent['id']}"), token=b_owner, json=payload)
        assert r.status == 401
    assert (
        api.call("GET", api.tenant_path("a", f"/agents/{agent['id']}"), token=api.tokens["a:viewer"]).body[
            "persona"
        ]
        == AGENT["persona"]
    )


def test_tenant_homed_elsewhere_is_redirected_to_its_cell(api: Api) -> None:
    path = api.tenant_path("c", "/agents") + "?limit=5"
    r = api.call("GET", path, token=api.tokens["c:owner"])
    assert r.status == 307, r.text
    assert r.headers["Location"] == f"http://us.cell.test:14210{path}"
    assert r.body["home_region"] == "us"
    # A token of this region naming a tenant homed elsewhere cannot be that tenant's: 401, and the
    # caller learns neither that the tenant exists nor where it lives.
    r = api.call("GET", path, token=api.tokens["a:owner"])
    assert r.status == 401 and "Location" not in r.headers and "home_region" not in r.text
    # A POST keeps its method and body through a 307; nothing is created here.
    r = api.call("POST", api.tenant_path("c", "/agents"), token=api.tokens["c:owner"], json=AGENT)
    assert r.status == 307 and r.headers["Location"].endswith(api.tenant_path("c", "/agents"))
    # A token of another region goes to its own cell whatever tenant it names (that cell refuses it
    # for a tenant that is not its own): the answer never depends on which tenants exist.
    for other in (api.tenant_path("a", "/agents"), f"/v1/tenants/{uuid.uuid4()}/agents"):
        r = api.call("GET", other, token=api.tokens["c:owner"])
        assert r.status == 307 and r.headers["Location"] == f"http://us.cell.test:14210{other}"
    # A malformed token learns nothing about the directory.
    assert api.call("GET", path, headers={"Authorization": "Bearer nope"}).status == 401


def test_cross_region_refused_when_redirects_are_off(api: Api) -> None:
    with serving(api.db, settings_for(api.db, redirect_cross_region=False)) as app:
        other = Api(api.db, app, api.tenants, api.tokens)
        r = other.call("GET", other.tenant_path("c", "/agents"), token=api.tokens["c:owner"])
        assert r.status == 421 and "Location" not in r.headers
        assert other.call("GET", other.tenant_path("a", "/agents"), token=api.tokens["a:owner"]).status == 200


def _count(api: Api, model: type, **where: object) -> int:
    async def count() -> int:
        async with api.db.sessions() as s:
            stmt = select(func.count()).select_from(model).filter_by(**where)
            return await s.scalar(stmt.execution_options(autospeak_unscoped="test"))

    return api.db.run(count())


def test_idempotent_post_replays_and_creates_one_row(api: Api) -> None:
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {**AGENT, "name": f"idem {uuid.uuid4()}"}
    admin = api.tokens["a:admin"]
    first = api.call("POST", api.tenant_path("a", "/agents"), token=admin, json=body, headers=key)
    again = api.call("POST", api.tenant_path("a", "/agents"), token=admin, json=body, headers=key)
    assert first.status == again.status == 201
    assert again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert _count(api, Agent, name=body["name"]) == 1
    assert _count(api, IdempotencyKey, key=key["Idempotency-Key"]) == 1
    changed = api.call(
        "POST", api.tenant_path("a", "/agents"), token=admin, json={**body, "persona": "x"}, headers=key
    )
    assert changed.status == 422 and changed.body["type"].endswith("idempotency-key-reused")
    # Keys are per tenant: tenant b may use the same key for its own request.
    other = api.call(
        "POST", api.tenant_path("b", "/agents"), token=api.tokens["b:owner"], json=body, headers=key
    )
    assert other.status == 201 and other.body["id"] != first.body["id"]


def test_idempotent_token_creation_never_stores_the_secret(api: Api) -> None:
    key = {"Idempotency-Key": f"t-{uuid.uuid4()}"}
    admin = api.tokens["a:admin"]
    first = api.call(
        "POST", api.tenant_path("a", "/tokens"), token=admin, json={"role": "viewer"}, headers=key
    )
    again = api.call(
        "POST", api.tenant_path("a", "/tokens"), token=admin, json={"role": "viewer"}, headers=key
    )
    assert first.status == again.status == 201 and again.body["id"] == first.body["id"]
    assert "token" in first.body and "token" not in again.body
    assert _count(api, ApiToken, id=uuid.UUID(first.body["id"])) == 1


def test_concurrent_posts_with_one_key_create_one_row(api: Api) -> None:
    key = f"c-{uuid.uuid4()}"
    body = {**AGENT, "name": f"race {uuid.uuid4()}"}
    headers = {
        "Authorization": f"Bearer {api.tokens['a:admin']}",
        "Content-Type": "application/json",
        "Idempotency-Key": key,
    }

    async def race() -> list:
        path = api.tenant_path("a", "/agents")
        return await asyncio.gather(*(api._call("POST", path, headers, json.dumps(body)) for _ in range(6)))

    replies = api.db.run(race())
    assert {r.status for r in replies} == {201}
    assert len({r.body["id"] for r in replies}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in replies) == 5
    assert _count(api, Agent, name=body["name"]) == 1
