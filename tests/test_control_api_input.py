"""Control API bad input: malformed JSON, wrong types, unknown fields, size, methods, rate limits, 500s."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from control_api_fixtures import AGENT, FAST, Api, control_api
from quart import Response
from sqlalchemy import text

from control.api.openapi import openapi_path
from control.api.ratelimit import TokenBuckets
from control.api.state import EXTENSION_KEY, sessions

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(max_body_bytes=16 * 1024, **FAST) as api:
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


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_json_numbers_are_400_wherever_a_body_is_parsed(api: Api, constant: str) -> None:
    admin = api.tokens["a:admin"]
    options = '{"name": "x", "providers": {"llm": {"name": "local", "options": {"temperature": %s}}}}'
    parameters = '{"name": "x", "tools": [{"name": "t", "parameters": {"max": %s}}]}'
    speed = '{"name": "x", "voice": {"speed": %s}}'
    for raw in (options % constant, parameters % constant, speed % constant):
        r = _post(api, data=raw, headers={"Content-Type": "application/json"})
        assert r.status == 400, (raw, r.text)
        assert r.headers["Content-Type"] == PROBLEM and r.body["type"].endswith("/malformed-json")
    agent = _post(api, json=AGENT).body["id"]
    r = api.call("PATCH", api.tenant_path("a", f"/agents/{agent}"), token=admin,
                 data=parameters.replace('"name": "x", ', "") % constant,
                 headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.body["type"].endswith("/malformed-json"), r.text
    r = api.call("POST", api.tenant_path("a", "/webhook-endpoints"), token=admin,
                 data=f'{{"url": "https://hooks.example.com/x", "enabled": {constant}}}',
                 headers={"Content-Type": "application/json"})
    assert r.status == 400, r.text
    # Nothing was stored as null in their place.
    got = api.call("GET", api.tenant_path("a", f"/agents/{agent}"), token=admin).body
    assert got["tools"] == AGENT["tools"]


def test_limits_take_ascii_digits_only(api: Api) -> None:
    viewer = api.tokens["a:viewer"]
    # FULLWIDTH DIGIT FIVE, ARABIC-INDIC DIGIT FIVE, SUPERSCRIPT TWO, and a number too long to parse.
    for raw in ("%EF%BC%95", "%D9%A5", "%C2%B2", "1" + "0" * 5000, "+5", " 5", "5.0"):
        r = api.call("GET", api.tenant_path("a", f"/agents?limit={raw}"), token=viewer)
        assert r.status == 422 and r.body["errors"][0]["path"] == "query.limit", (raw, r.text)
    assert api.call("GET", api.tenant_path("a", "/agents?limit=05"), token=viewer).status == 200


def test_a_malformed_id_in_the_path_is_the_apis_404(api: Api) -> None:
    admin = api.tokens["a:admin"]
    missing = api.call("GET", api.tenant_path("a", f"/agents/{uuid.uuid4()}"), token=admin)
    assert missing.status == 404 and missing.body["detail"] == "No such resource."
    for path in (
        api.tenant_path("a", "/agents/not-a-uuid"),
        api.tenant_path("a", "/agents/%EF%BC%91"),
        api.tenant_path("a", "/webhook-endpoints/123/deliveries"),
        "/v1/tenants/not-a-uuid/agents",
        "/v1/tenants/not-a-uuid",
        "/no/such/route",
    ):
        r = api.call("GET", path, token=admin)
        assert r.status == 404 and r.headers["Content-Type"] == PROBLEM, (path, r.text)
        assert r.body == missing.body, (path, r.text)


def _asgi(api: Api, method: str, path: str, token: str) -> tuple[int, dict[str, str], bytes]:
    """One request straight through the ASGI interface, as a server sees it (Quart's test client
    rebuilds a Response from the messages, which adds a default Content-Type of its own)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"eu.cell.test"),
                                          (b"authorization", f"Bearer {token}".encode())],
             "client": ("127.0.0.1", 1), "server": ("eu.cell.test", 80), "extensions": {}}
    sent: list[dict] = []
    requested = False

    async def exchange() -> None:
        done = asyncio.Event()

        async def receive() -> dict:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()  # the client stays connected until the whole response is sent
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done.set()

        await api.app(scope, receive, send)

    api.db.run(exchange())
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body


def test_204_responses_have_no_body_and_no_content_type(api: Api) -> None:
    admin = api.tokens["a:admin"]
    agent = _post(api, json=AGENT).body["id"]
    token = api.call("POST", api.tenant_path("a", "/tokens"), token=admin, json={"role": "viewer"}).body
    for path in (f"/agents/{agent}", f"/tokens/{token['id']}"):
        status, headers, body = _asgi(api, "DELETE", api.tenant_path("a", path), admin)
        assert status == 204 and body == b"", (path, body)
        assert "content-type" not in headers and "content-length" not in headers, (path, headers)
    # Other responses keep theirs.
    status, headers, body = _asgi(api, "GET", api.tenant_path("a", f"/agents/{agent}"), admin)
    assert status == 404 and headers["content-type"] == PROBLEM and body


def test_database_errors_are_logged_without_their_parameters(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "".join(("hunt", "er2"))  # not in this source, which the logged stack quotes

    @api.app.get("/db-boom-for-test")
    async def db_boom() -> Response:
        async with sessions()() as session:
            await session.execute(text("SELECT CAST(:v AS json)"), {"v": f"{secret}-value"})
        return Response("unreachable")

    with caplog.at_level(logging.ERROR, logger="control.api.problems"):
        r = api.call("GET", "/db-boom-for-test")
    assert r.status == 500 and r.headers["Content-Type"] == PROBLEM
    assert "hunter2" not in r.text
    logged = "\n".join(rec.getMessage() + (rec.exc_text or "") for rec in caplog.records)
    assert "SQLSTATE 22P02" in logged and "Error" in logged, logged
    assert "db_boom" in logged  # the stack is kept
    assert "hunter2" not in logged and "hunter2" not in caplog.text


def test_a_foreign_key_violation_is_409_not_500(api: Api) -> None:
    @api.app.get("/fk-boom-for-test")
    async def fk_boom() -> Response:
        async with sessions()() as session, session.begin():
            await session.execute(text("CREATE TEMP TABLE fk_parent (id int PRIMARY KEY) ON COMMIT DROP"))
            await session.execute(text("CREATE TEMP TABLE fk_child (p int REFERENCES fk_parent (id)) "
                                       "ON COMMIT DROP"))
            await session.execute(text("INSERT INTO fk_child VALUES (1)"))
        return Response("unreachable")

    r = api.call("GET", "/fk-boom-for-test")
    assert r.status == 409 and r.headers["Content-Type"] == PROBLEM, r.text
    assert r.body["type"].endswith("/still-referenced") and "fk_" not in r.text
