"""Control API bad input: malformed JSON, wrong types, unknown fields, size, methods, rate limits, 500s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from control_api_fixtures import AGENT, Api, control_api
from quart import Response

from control.api.openapi import openapi_path
from control.api.ratelimit import TokenBuckets
from control.api.state import EXTENSION_KEY

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(max_body_bytes=16 * 1024) as api:
        yield api


def _post(api: Api, **kw: object):  # type: ignore[no-untyped-def]
    return api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"], **kw)  # type: ignore[arg-type]


def test_malformed_json_is_400(api: Api) -> None:
    for raw in ('{"name": "x",', "", "nul", '{"name": "x"} trailing'):
        r = _post(api, data=raw, headers={"Content-Type": "application/json"})
        assert r.status == 400, (raw, r.text)
        assert r.headers["Content-Type"] == PROBLEM and r.body["title"] == "Bad Request"


def test_not_json_is_415(api: Api) -> None:
    r = _post(api, data="name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415 and r.headers["Content-Type"] == PROBLEM


def test_wrong_types_and_unknown_fields_are_422_with_paths(api: Api) -> None:
    cases = {
        "name": {**AGENT, "name": 42},
        "voice.speed": {**AGENT, "voice": {**AGENT["voice"], "speed": "fast"}},
        "compliance.retention_days": {**AGENT, "compliance": {"retention_days": "30"}},
        "tools.0.colour": {**AGENT, "tools": [{**AGENT["tools"][0], "colour": "red"}]},
        "admin": {**AGENT, "admin": True},
        "voice.speed ": {**AGENT, "voice": {"speed": 9.0}},
        "flows.booking": {
            **AGENT,
            "flows": {"booking": {"start": "nowhere", "states": {"a": {"prompt": "p"}}}},
        },
        "(body)": [AGENT],
    }
    for path, body in cases.items():
        r = _post(api, json=body)
        assert r.status == 422, (path, r.text)
        assert r.headers["Content-Type"] == PROBLEM
        assert path.strip() in [e["path"] for e in r.body["errors"]], (path, r.body)
        assert '"input"' not in r.text and '"fast"' not in r.text  # rejected values are not echoed


def test_wrong_query_types_are_422(api: Api) -> None:
    r = api.call("GET", api.tenant_path("a", "/agents?limit=abc"), token=api.tokens["a:viewer"])
    assert r.status == 422 and r.body["errors"][0]["path"] == "query.limit"


def test_oversized_body_is_413(api: Api) -> None:
    r = _post(api, json={**AGENT, "persona": "x" * 20_000})
    assert r.status == 413, r.text
    assert r.headers["Content-Type"] == PROBLEM and r.body["status"] == 413


def test_method_not_allowed_is_405_problem(api: Api) -> None:
    r = api.call("PUT", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"], json=AGENT)
    assert r.status == 405 and r.headers["Content-Type"] == PROBLEM
    assert "POST" in r.headers["Allow"]
    r = api.call("GET", "/no/such/route")
    assert r.status == 404 and r.headers["Content-Type"] == PROBLEM


def test_rate_limit_is_429_with_retry_after(api: Api) -> None:
    state = api.app.extensions[EXTENSION_KEY]
    saved = state.limiter
    state.limiter = TokenBuckets(rate=0.25, burst=3)
    try:
        path = api.tenant_path("a", "/agents")
        codes = [api.call("GET", path, token=api.tokens["a:viewer"]).status for _ in range(3)]
        assert codes == [200, 200, 200]
        r = api.call("GET", path, token=api.tokens["a:viewer"])
        assert r.status == 429 and r.headers["Content-Type"] == PROBLEM
        assert r.headers["Retry-After"] == "4"
        # The bucket is per token: another token of the same tenant is unaffected.
        assert api.call("GET", path, token=api.tokens["a:operator"]).status == 200
    finally:
        state.limiter = saved


def test_token_bucket_refills() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, clock=lambda: now[0])
    assert [buckets.take("t") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("t") == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.take("t") == 0.0


def test_server_errors_leak_nothing(api: Api) -> None:
    @api.app.get("/boom-for-test")
    async def boom() -> Response:
        raise RuntimeError("password=hunter2 at db.internal:5432")

    r = api.call("GET", "/boom-for-test")
    assert r.status == 500 and r.headers["Content-Type"] == PROBLEM
    assert "hunter2" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text


def test_openapi_document_matches_the_route_table(api: Api) -> None:
    r = api.call("GET", "/openapi.json")
    assert r.status == 200 and r.body["openapi"] == "3.1.0"
    documented = {(p, m.upper()) for p, ops in r.body["paths"].items() for m in ops}
    served = {
        (openapi_path(rule.rule)[0], m)
        for rule in api.app.url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for m in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served
    create = r.body["paths"]["/v1/tenants/{tenant_id}/agents"]["post"]
    assert "201" in create["responses"] and "422" in create["responses"]
    schema = r.body["components"]["schemas"]["AgentCreate"]
    assert schema["additionalProperties"] is False and "name" in schema["required"]


def test_nul_characters_are_422_not_a_database_error(api: Api) -> None:
    r = _post(api, json={**AGENT, "persona": "a\u0000b"})
    assert r.status == 422 and r.body["errors"][0]["path"] == "persona"
    tool = {**AGENT["tools"][0], "parameters": {"x\u0000": 1}}
    r = _post(api, json={**AGENT, "tools": [tool]})
    assert r.status == 422 and r.body["errors"][0]["path"] == "tools.0.parameters.x\u0000"


def test_integers_are_accepted_where_numbers_are_expected(api: Api) -> None:
    r = _post(api, json={**AGENT, "voice": {"speed": 1}})
    assert r.status == 201, r.text
    assert r.body["voice"]["speed"] == 1.0
