"""Users and phone numbers on the real embedded PostgreSQL: roles, uniqueness, regions, isolation, audit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from control_api_fixtures import AGENT, FAST, Api, control_api, fetch

from control.db.models import ApiToken, AuditLog, PhoneNumber, User


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def _audit(api: Api, action: str, target: str) -> list[AuditLog]:
    return fetch(api, AuditLog, tenant_id=api.tenants["a"], action=action, target_id=target)


def _unique_number(prefix: str = "+4420") -> str:
    return prefix + str(uuid.uuid4().int)[:8]


# --- users ------------------------------------------------------------------------------------


def test_admin_creates_lists_gets_and_deletes_users(api: Api) -> None:
    admin, viewer = api.tokens["a:admin"], api.tokens["a:viewer"]
    email = f"Ada.{uuid.uuid4().hex[:8]}@Example.COM"
    r = api.call("POST", api.tenant_path("a", "/users"), token=admin, json={"email": email, "name": "Ada"})
    assert r.status == 201, r.text
    user = r.body
    assert user["email"] == email.lower() and user["name"] == "Ada"
    assert r.headers["Location"] == api.tenant_path("a", f"/users/{user['id']}")
    got = api.call("GET", api.tenant_path("a", f"/users/{user['id']}"), token=viewer)
    assert got.status == 200 and got.body == user
    listed = api.call("GET", api.tenant_path("a", "/users?limit=100"), token=viewer)
    assert user["id"] in [u["id"] for u in listed.body["items"]]
    [row] = _audit(api, "user.create", user["id"])
    assert row.actor.startswith("token:") and row.target_type == "user"

    assert api.call("DELETE", api.tenant_path("a", f"/users/{user['id']}"), token=admin).status == 204
    assert api.call("GET", api.tenant_path("a", f"/users/{user['id']}"), token=viewer).status == 404
    assert api.call("DELETE", api.tenant_path("a", f"/users/{user['id']}"), token=admin).status == 404
    assert len(_audit(api, "user.delete", user["id"])) == 1


def test_email_is_unique_per_tenant_ignoring_case(api: Api) -> None:
    email = f"dup.{uuid.uuid4().hex[:8]}@example.com"
    path = api.tenant_path("a", "/users")
    assert api.call("POST", path, token=api.tokens["a:admin"], json={"email": email}).status == 201
    again = api.call("POST", path, token=api.tokens["a:owner"], json={"email": email.upper()})
    assert again.status == 409 and again.body["type"].endswith("/email-taken")
    assert again.headers["Content-Type"] == "application/problem+json"
    # Another tenant may have a user with the same email.
    other = api.call(
        "POST", api.tenant_path("b", "/users"), token=api.tokens["b:owner"], json={"email": email}
    )
    assert other.status == 201
    assert len(fetch(api, User, email=email)) == 2


def test_user_roles_and_validation(api: Api) -> None:
    path = api.tenant_path("a", "/users")
    for role in ("viewer", "operator"):
        r = api.call("POST", path, token=api.tokens[f"a:{role}"], json={"email": "x@example.com"})
        assert r.status == 403, role
    assert api.call("GET", path, token=api.tokens["a:viewer"]).status == 200
    admin = api.tokens["a:admin"]
    for body, field in (
        ({"email": "not-an-email"}, "email"),
        ({"email": "a b@example.com"}, "email"),
        ({"email": "x@example.com", "role": "owner"}, "role"),
        ({}, "email"),
        ({"email": 42}, "email"),
    ):
        r = api.call("POST", path, token=admin, json=body)
        assert r.status == 422 and r.body["errors"][0]["path"] == field, (body, r.text)


def test_idempotent_user_creation_replays(api: Api) -> None:
    key = {"Idempotency-Key": f"u-{uuid.uuid4()}"}
    body = {"email": f"idem.{uuid.uuid4().hex[:8]}@example.com"}
    path = api.tenant_path("a", "/users")
    first = api.call("POST", path, token=api.tokens["a:admin"], json=body, headers=key)
    again = api.call("POST", path, token=api.tokens["a:admin"], json=body, headers=key)
    assert first.status == again.status == 201 and again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(fetch(api, User, email=body["email"])) == 1


def test_deleting_a_user_revokes_their_tokens_and_admin_cannot_disarm_an_owner(api: Api) -> None:
    scope_tenant = api.tenants["a"]
    r = api.call(
        "POST",
        api.tenant_path("a", "/users"),
        token=api.tokens["a:owner"],
        json={"email": f"boss.{uuid.uuid4().hex[:8]}@example.com"},
    )
    user_id = uuid.UUID(r.body["id"])
    tokens = {}
    for role in ("owner", "viewer"):
        t = api.call(
            "POST", api.tenant_path("a", "/tokens"), token=api.tokens["a:owner"], json={"role": role}
        )
        tokens[role] = t.body

    async def attach() -> None:
        from sqlalchemy import update

        async with api.db.sessions() as s, s.begin():
            ids = [uuid.UUID(t["id"]) for t in tokens.values()]
            await s.execute(
                update(ApiToken)
                .where(ApiToken.id.in_(ids), ApiToken.tenant_id == scope_tenant)
                .values(user_id=user_id)
                .execution_options(autospeak_unscoped="test")
            )

    api.db.run(attach())
    path = api.tenant_path("a", f"/users/{user_id}")
    assert api.call("DELETE", path, token=api.tokens["a:admin"]).status == 403
    assert api.call("DELETE", path, token=api.tokens["a:owner"]).status == 204
    for t in tokens.values():
        assert api.call("GET", api.tenant_path("a"), token=t["token"]).status == 401
        [row] = fetch(api, ApiToken, id=uuid.UUID(t["id"]))
        assert row.revoked_at is not None and row.user_id is None


def test_users_of_another_tenant_are_invisible(api: Api) -> None:
    r = api.call(
        "POST",
        api.tenant_path("a", "/users"),
        token=api.tokens["a:admin"],
        json={"email": f"hidden.{uuid.uuid4().hex[:8]}@example.com"},
    )
    b = api.tokens["b:owner"]
    missing = api.call("GET", api.tenant_path("b", f"/users/{uuid.uuid4()}"), token=b)
    path = api.tenant_path("b", f"/users/{r.body['id']}")
    got = api.call("GET", path, token=b)
    assert got.status == 404 and got.body == missing.body
    assert api.call("DELETE", path, token=b).status == 404
    # Under a's tenant id b's token is simply not valid (as under an unknown tenant id).
    path = api.tenant_path("a", f"/users/{r.body['id']}")
    assert api.call("GET", path, token=b).status == api.call("DELETE", path, token=b).status == 401
    listed = api.call("GET", api.tenant_path("b", "/users?limit=100"), token=b)
    assert r.body["id"] not in [u["id"] for u in listed.body["items"]]


# --- phone numbers ----------------------------------------------------------------------------


def _agent(api: Api, label: str = "a") -> str:
    r = api.call("POST", api.tenant_path(label, "/agents"), token=api.tokens[f"{label}:owner"], json=AGENT)
    assert r.status == 201, r.text
    return r.body["id"]


def test_admin_adds_a_number_of_the_home_region_and_operator_points_it(api: Api) -> None:
    agent = _agent(api)
    number = _unique_number()
    r = api.call(
        "POST",
        api.tenant_path("a", "/phone-numbers"),
        token=api.tokens["a:admin"],
        json={"e164": number, "agent_id": agent},
    )
    assert r.status == 201, r.text
    assert r.body == {"e164": number, "region": "eu", "agent_id": agent}
    path = api.tenant_path("a", f"/phone-numbers/{number}")
    assert r.headers["Location"] == path
    viewer, op = api.tokens["a:viewer"], api.tokens["a:operator"]
    assert api.call("GET", path, token=viewer).body == r.body
    listed = api.call("GET", api.tenant_path("a", "/phone-numbers?limit=100"), token=viewer)
    assert r.body in listed.body["items"]

    other = _agent(api)
    patched = api.call("PATCH", path, token=op, json={"agent_id": other})
    assert patched.status == 200 and patched.body["agent_id"] == other
    assert api.call("PATCH", path, token=op, json={"agent_id": None}).body["agent_id"] is None
    assert api.call("PATCH", path, token=viewer, json={"agent_id": None}).status == 403
    bad = api.call("PATCH", path, token=op, json={"agent_id": str(uuid.uuid4())})
    assert bad.status == 422 and bad.body["errors"][0]["path"] == "agent_id"
    assert api.call("PATCH", path, token=op, json={}).status == 422
    assert api.call("DELETE", path, token=op).status == 403
    assert (
        api.call(
            "POST", api.tenant_path("a", "/phone-numbers"), token=op, json={"e164": _unique_number()}
        ).status
        == 403
    )

    assert len(_audit(api, "phone_number.create", number)) == 1
    assert len(_audit(api, "phone_number.update", number)) == 2
    assert api.call("DELETE", path, token=api.tokens["a:admin"]).status == 204
    assert api.call("GET", path, token=viewer).status == 404
    assert fetch(api, PhoneNumber, e164=number) == []
    assert len(_audit(api, "phone_number.delete", number)) == 1


def test_a_number_of_another_region_names_the_cell_that_serves_it(api: Api) -> None:
    path = api.tenant_path("a", "/phone-numbers")
    r = api.call("POST", path, token=api.tokens["a:admin"], json={"e164": "+12025550123"})
    assert r.status == 422, r.text
    assert r.body["type"].endswith("/number-region-mismatch")
    assert r.body["number_region"] == "us" and r.body["home_region"] == "eu"
    assert "us cell" in r.body["detail"]
    for bad, code in (("+2348012345678", "unserved_number"), ("+919876543", "invalid_number")):
        r = api.call("POST", path, token=api.tokens["a:admin"], json={"e164": bad})
        assert r.status == 422 and r.body["errors"][0]["code"] == code, (bad, r.text)
    for bad in ("442071838750", "+44 20 7183 8750", "+0442071838750", "", 442071838750):
        r = api.call("POST", path, token=api.tokens["a:admin"], json={"e164": bad})
        assert r.status == 422 and r.body["errors"][0]["path"] == "e164", (bad, r.text)
    r = api.call("POST", path, token=api.tokens["a:admin"], json={"e164": _unique_number(), "agent_id": "x"})
    assert r.status == 422 and r.body["errors"][0]["path"] == "agent_id"


def test_a_taken_number_is_409_without_revealing_the_owner(api: Api) -> None:
    number = _unique_number("+4930")
    path_a, path_b = api.tenant_path("a", "/phone-numbers"), api.tenant_path("b", "/phone-numbers")
    assert api.call("POST", path_a, token=api.tokens["a:admin"], json={"e164": number}).status == 201
    mine = api.call("POST", path_a, token=api.tokens["a:admin"], json={"e164": number})
    theirs = api.call("POST", path_b, token=api.tokens["b:owner"], json={"e164": number})
    assert mine.status == theirs.status == 409
    assert mine.body == theirs.body and str(api.tenants["a"]) not in theirs.text
    [row] = fetch(api, PhoneNumber, e164=number)
    assert row.tenant_id == api.tenants["a"]


def test_another_tenants_number_and_agent_are_invisible(api: Api) -> None:
    number = _unique_number("+3120")
    assert (
        api.call(
            "POST", api.tenant_path("a", "/phone-numbers"), token=api.tokens["a:admin"], json={"e164": number}
        ).status
        == 201
    )
    b = api.tokens["b:owner"]
    missing = api.call("GET", api.tenant_path("b", f"/phone-numbers/{_unique_number()}"), token=b)
    assert missing.status == 404
    for method, body in (("GET", None), ("PATCH", {"agent_id": None}), ("DELETE", None)):
        r = api.call(method, api.tenant_path("b", f"/phone-numbers/{number}"), token=b, json=body)
        assert r.status == 404 and r.body == missing.body, method
    listed = api.call("GET", api.tenant_path("b", "/phone-numbers?limit=100"), token=b)
    assert number not in [n["e164"] for n in listed.body["items"]]
    # b cannot point its own number at a's agent either.
    mine = _unique_number("+3120")
    r = api.call(
        "POST",
        api.tenant_path("b", "/phone-numbers"),
        token=b,
        json={"e164": mine, "agent_id": _agent(api, "a")},
    )
    assert r.status == 422 and r.body["errors"][0]["path"] == "agent_id"
    assert fetch(api, PhoneNumber, e164=mine) == []
    # A malformed number in the path is just a missing resource.
    assert api.call("GET", api.tenant_path("b", "/phone-numbers/nonsense"), token=b).status == 404


def test_idempotent_number_creation_replays_instead_of_409(api: Api) -> None:
    key = {"Idempotency-Key": f"n-{uuid.uuid4()}"}
    body = {"e164": _unique_number()}
    path = api.tenant_path("a", "/phone-numbers")
    first = api.call("POST", path, token=api.tokens["a:admin"], json=body, headers=key)
    again = api.call("POST", path, token=api.tokens["a:admin"], json=body, headers=key)
    assert first.status == again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert len(_audit(api, "phone_number.create", body["e164"])) == 1


def test_tenant_of_another_region_is_redirected(api: Api) -> None:
    for path in ("/users", "/phone-numbers", f"/phone-numbers/{_unique_number()}"):
        r = api.call("GET", api.tenant_path("c", path), token=api.tokens["c:owner"])
        assert r.status == 307 and r.headers["Location"].startswith("http://us.cell.test:14210/v1/tenants/")
    r = api.call(
        "POST",
        api.tenant_path("c", "/phone-numbers"),
        token=api.tokens["c:owner"],
        json={"e164": "+12025550199"},
    )
    assert r.status == 307 and fetch(api, PhoneNumber, e164="+12025550199") == []
