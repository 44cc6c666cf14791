"""Tenant creation by the platform operator: POST /v1/tenants on the home cell, fixed home region."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from control_api_fixtures import Api, control_api

PLATFORM = "platform-secret-" + "x" * 32


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(platform_token=PLATFORM) as a:
        yield a


def _create(api: Api, body: dict, *, token: str | None = PLATFORM, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else None
    return api.call("POST", "/v1/tenants", token=token, json=body, headers=headers)


def test_only_the_platform_operator_creates_tenants(api: Api) -> None:
    body = {"name": "Clinic", "home_region": "eu"}
    assert _create(api, body, token=None).status == 401
    assert _create(api, body, token="wrong").status == 401
    # A tenant's own owner token is not the platform's.
    assert _create(api, body, token=api.tokens["a:owner"]).status == 401


def test_a_new_tenant_gets_an_owner_token_that_works_at_once(api: Api) -> None:
    resp = _create(api, {"name": "Harbour Hotel", "home_region": "eu", "plan": "growth"})
    assert resp.status == 201
    tenant, token = resp.body["tenant"], resp.body["owner_token"]
    assert tenant["home_region"] == "eu" and tenant["plan"] == "growth"
    assert resp.headers["Location"] == f"/v1/tenants/{tenant['id']}"
    got = api.call("GET", f"/v1/tenants/{tenant['id']}", token=token)
    assert got.status == 200 and got.body["name"] == "Harbour Hotel"
    # The home region is fixed: a PATCH naming it is refused, not ignored.
    moved = api.call("PATCH", f"/v1/tenants/{tenant['id']}", token=token,
                     json={"name": "Harbour Hotel", "home_region": "us"})
    assert moved.status == 422


def test_a_tenant_of_another_region_is_created_by_its_home_cell(api: Api) -> None:
    resp = _create(api, {"name": "Mumbai Clinic", "home_region": "in"})
    assert resp.status == 307
    assert resp.headers["Location"] == "http://in.cell.test:14110/v1/tenants"


def test_a_retried_creation_returns_the_same_tenant_without_the_secret(api: Api) -> None:
    body = {"name": "Retry Dental", "home_region": "eu"}
    first = _create(api, body, key="signup-42")
    again = _create(api, body, key="signup-42")
    assert first.status == again.status == 201
    assert again.body["tenant"]["id"] == first.body["tenant"]["id"]
    assert first.body["owner_token"] and again.body["owner_token"] is None
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = _create(api, {"name": "Someone Else", "home_region": "eu"}, key="signup-42")
    assert other.status == 422 and other.body["type"].endswith("idempotency-key-reused")


@pytest.mark.parametrize("body", [
    {"name": "X", "home_region": "mars"},
    {"name": "", "home_region": "eu"},
    {"name": "X", "home_region": "eu", "owner": "me"},
    {"name": 5, "home_region": "eu"},
])
def test_bad_tenant_requests_are_422(api: Api, body: dict) -> None:
    resp = _create(api, body)
    assert resp.status == 422 and resp.headers["Content-Type"].startswith("application/problem+json")
