"""Authentication answers that must not tell a token which tenant ids exist, on the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from control_api_fixtures import FAST, Api, control_api


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def test_a_token_cannot_probe_which_tenants_exist(api: Api) -> None:
    token = api.tokens["a:owner"]  # valid, eu, on the eu cell
    invalid = api.call("GET", api.tenant_path("a"), headers={"Authorization": "Bearer as_eu_" + "x" * 43})
    assert invalid.status == 401
    for rest in ("", "/agents", f"/agents/{uuid.uuid4()}"):
        unknown = api.call("GET", f"/v1/tenants/{uuid.uuid4()}{rest}", token=token)
        same_cell = api.call("GET", api.tenant_path("b", rest), token=token)  # exists, homed in eu
        other_cell = api.call("GET", api.tenant_path("c", rest), token=token)  # exists, homed in us
        for r in (unknown, same_cell, other_cell):
            assert r.status == 401, (rest, r.status, r.text)
            assert r.body == invalid.body and r.headers["Content-Type"] == "application/problem+json"
            assert r.headers["WWW-Authenticate"] == invalid.headers["WWW-Authenticate"]
            assert "Location" not in r.headers and "home_region" not in r.text
    for method in ("PATCH", "DELETE"):
        for label in ("b", "c"):
            r = api.call(method, api.tenant_path(label, "/agents/" + str(uuid.uuid4())), token=token,
                         json={"persona": "x"} if method == "PATCH" else None)
            assert r.status == 401 and r.body == invalid.body, (method, label, r.text)


def test_a_token_of_another_region_is_sent_to_its_cell_whatever_tenant_it_names(api: Api) -> None:
    r = api.call("GET", api.tenant_path("c", "/agents"), token=api.tokens["c:owner"])
    assert r.status == 307 and r.headers["Location"].startswith("http://us.cell.test:14210/")
    # A us token (real or made up) naming an eu tenant, a us tenant or an unknown id: the same
    # redirect, decided by the token alone, so nothing is learnt about the directory.
    made_up = "as_us_" + "y" * 43
    answers = set()
    for token in (api.tokens["c:owner"], made_up):
        for path in (api.tenant_path("a"), api.tenant_path("c"), f"/v1/tenants/{uuid.uuid4()}"):
            r = api.call("GET", path, token=token)
            assert r.status == 307 and r.headers["Location"] == f"http://us.cell.test:14210{path}", r.text
            answers.add((r.status, r.body["detail"]))
    assert len(answers) == 1
    assert api.call("GET", api.tenant_path("a"), token=api.tokens["a:viewer"]).status == 200
