"""Agent versions and the eval gate on the real embedded PostgreSQL (issues 10 and 12).

Published versions are immutable and listed; a call runs the version it started with, also when it is
resumed after a newer one was published; a provider change or a publication needs a passing eval run
for the exact configuration hash (409 naming the hash otherwise), and only an owner may override,
which is audited. Every new route is tenant-scoped.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from control_api_fixtures import AGENT, FAST, Api, control_api, fetch, insert, scope_for

from control.cell.voice import agent_spec
from control.db.models import Agent, AuditLog, Call

PROBLEM = "application/problem+json"
NEW_LLM = {**AGENT["providers"], "llm": {"name": "openai", "model": "gpt-x", "options": {"temperature": 0.1}}}


def _report(task_success: float, passed: bool) -> dict[str, Any]:
    """An `autospeak eval run` report, reduced to what the gate reads."""
    return {"suite": "reception-smoke",
            "summary": {"task_success": task_success, "confirmation_violations": 0, "caller_wer": 0.1,
                        "agent_wer": 0.05, "latency_ms": {"voice_to_voice": {"p95": 900.0}}},
            "runs": [{"scenario": "book-thursday", "passed": passed}]}


GOOD, WORSE = _report(1.0, True), _report(0.5, False)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def _agent(api: Api, **extra: Any) -> str:
    r = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"],
                 json={**AGENT, **extra})
    assert r.status == 201, r.text
    return r.body["id"]


def _path(api: Api, agent: str, rest: str = "", label: str = "a") -> str:
    return api.tenant_path(label, f"/agents/{agent}{rest}")


def _record(api: Api, agent: str, digest: str, candidate: dict[str, Any] = GOOD) -> Any:
    return api.call("POST", _path(api, agent, "/eval-runs"), token=api.tokens["a:operator"],
                    json={"config_hash": digest, "baseline": GOOD, "candidate": candidate})


def _publish(api: Api, agent: str, token: str = "a:operator", **body: Any) -> Any:
    return api.call("POST", _path(api, agent, "/versions"), token=api.tokens[token], json=body)


def _gated_publish(api: Api, agent: str) -> dict[str, Any]:
    """Publish through the gate: refused, the named hash gets a passing run, then accepted."""
    refused = _publish(api, agent)
    assert refused.status == 409 and refused.body["type"].endswith("/eval-gate"), refused.text
    assert _record(api, agent, refused.body["config_hash"]).status == 201
    published = _publish(api, agent)
    assert published.status == 201, published.text
    assert published.body["config_hash"] == refused.body["config_hash"]
    return published.body


def _spec(api: Api, agent: str, resume_call: str | None = None) -> dict[str, Any]:
    async def read() -> dict[str, Any] | None:
        async with api.app.app_context():
            return await agent_spec("eu", str(api.tenants["a"]), agent, None, resume_call=resume_call)

    got = api.db.run(read())
    assert got is not None
    return got


def _overrides(api: Api, agent: str) -> list[AuditLog]:
    return [r for r in fetch(api, AuditLog, action="gate_override") if r.target_id == agent]


def test_versions_are_published_through_the_gate_and_listed(api: Api) -> None:
    agent = _agent(api)
    assert api.call("GET", _path(api, agent, "/versions"), token=api.tokens["a:viewer"]).body["items"] == []
    v1 = _gated_publish(api, agent)
    assert v1["version"] == 1 and v1["gate"] == "eval_run" and v1["snapshot"]["persona"] == AGENT["persona"]
    # The draft changes; the published snapshot does not, and the new configuration needs its own run.
    r = api.call("PATCH", _path(api, agent), token=api.tokens["a:operator"], json={"persona": "Curt."})
    assert r.status == 200 and r.body["published_version"] == 1
    v2 = _gated_publish(api, agent)
    assert v2["version"] == 2 and v2["config_hash"] != v1["config_hash"]
    listed = api.call("GET", _path(api, agent, "/versions"), token=api.tokens["a:viewer"]).body["items"]
    assert [(v["version"], v["snapshot"]["persona"]) for v in listed] == [(1, AGENT["persona"]), (2, "Curt.")]
    got = api.call("GET", _path(api, agent), token=api.tokens["a:viewer"]).body
    assert got["published_version"] == 2
    # Publishing the unchanged record again passes on the run recorded for its hash.
    assert _publish(api, agent).body["version"] == 3


def test_a_call_keeps_the_version_it_started_with(api: Api) -> None:
    agent = _agent(api)
    draft = _spec(api, agent)
    assert draft["version"] is None and draft["persona"] == AGENT["persona"]  # never published: the record
    _gated_publish(api, agent)
    started = _spec(api, agent)
    assert started["version"] == 1 and started["persona"] == AGENT["persona"]
    call = scope_for(api, "a").new(
        Call, id=uuid.uuid4(), agent_id=uuid.UUID(agent), agent_version=started["version"],
        direction="inbound", from_e164="+442071838750", to_e164="+442071838751", status="in-progress",
        started_at=datetime.now(UTC), latency={})
    insert(api, "a", call)
    shown = api.call("GET", api.tenant_path("a", f"/calls/{call.id}"), token=api.tokens["a:viewer"])
    assert shown.status == 200 and shown.body["agent_version"] == 1, shown.text
    # Mid-call, the draft changes and v2 is published (by an owner's override, to vary the path).
    assert api.call("PATCH", _path(api, agent), token=api.tokens["a:operator"],
                    json={"persona": "Version two."}).status == 200
    assert _publish(api, agent, "a:owner", override_reason="hotfix").body["version"] == 2
    assert (_spec(api, agent)["version"], _spec(api, agent)["persona"]) == (2, "Version two.")
    resumed = _spec(api, agent, resume_call=str(call.id))
    assert (resumed["version"], resumed["persona"]) == (1, AGENT["persona"])
    # A resumed call not yet on record gets the newest version.
    assert _spec(api, agent, resume_call=str(uuid.uuid4()))["version"] == 2


def test_a_provider_change_needs_a_passing_run_for_its_exact_hash(api: Api) -> None:
    agent = _agent(api)
    path, operator = _path(api, agent), api.tokens["a:operator"]
    refused = api.call("PATCH", path, token=operator, json={"providers": NEW_LLM})
    assert refused.status == 409 and refused.headers["Content-Type"] == PROBLEM, refused.text
    digest = refused.body["config_hash"]
    assert refused.body["type"].endswith("/eval-gate") and digest in refused.body["detail"]
    assert fetch(api, Agent, id=uuid.UUID(agent))[0].providers["llm"]["name"] == "local"  # nothing changed
    # A refused comparison is recorded but opens nothing; a pass for another configuration neither.
    failing = _record(api, agent, digest, WORSE)
    assert failing.status == 201 and failing.body["passed"] is False and failing.body["verdict"]["refused"]
    assert _record(api, agent, "0" * 64).body["passed"] is True
    assert api.call("PATCH", path, token=operator, json={"providers": NEW_LLM}).status == 409
    assert _record(api, agent, digest).body["passed"] is True
    accepted = api.call("PATCH", path, token=operator, json={"providers": NEW_LLM})
    assert accepted.status == 200 and accepted.body["providers"]["llm"]["name"] == "openai", accepted.text
    runs = api.call("GET", _path(api, agent, "/eval-runs"), token=api.tokens["a:viewer"]).body["items"]
    assert [(r["config_hash"], r["passed"]) for r in runs] == [
        (digest, False), ("0" * 64, True), (digest, True)]


def test_a_secret_rotation_is_not_a_new_configuration(api: Api) -> None:
    agent = _agent(api)
    keyed = copy.deepcopy(AGENT["providers"])
    keyed["stt"]["options"] = {"api_key": "sk-one-123456"}
    r = api.call("PATCH", _path(api, agent), token=api.tokens["a:operator"], json={"providers": keyed})
    assert r.status == 200, r.text
    keyed["stt"]["options"]["api_key"] = "sk-two-123456"
    assert api.call("PATCH", _path(api, agent), token=api.tokens["a:operator"],
                    json={"providers": keyed}).status == 200
    # A version's snapshot keeps the key for the workers, but the API never shows it.
    published = _publish(api, agent, "a:owner", override_reason="rotation")
    assert published.status == 201 and "sk-two" not in published.text
    listed = api.call("GET", _path(api, agent, "/versions"), token=api.tokens["a:viewer"])
    assert "sk-two" not in listed.text
    assert listed.body["items"][0]["snapshot"]["providers"]["stt"]["options"]["api_key"] == {"set": True}


def test_only_an_owner_may_override_and_the_override_is_audited(api: Api) -> None:
    agent = _agent(api)
    body = {"providers": NEW_LLM, "override_reason": "vendor outage, switching now"}
    for role in ("admin", "operator"):
        r = api.call("PATCH", _path(api, agent), token=api.tokens[f"a:{role}"], json=body)
        assert r.status == 403 and r.body["type"].endswith("/gate-override-forbidden"), r.text
        assert _publish(api, agent, f"a:{role}", override_reason="trust me").status == 403
    assert fetch(api, Agent, id=uuid.UUID(agent))[0].providers["llm"]["name"] == "local"
    assert _overrides(api, agent) == []
    assert fetch(api, Agent, id=uuid.UUID(agent))[0].published_version is None
    r = api.call("PATCH", _path(api, agent), token=api.tokens["a:owner"], json=body)
    assert r.status == 200 and r.body["providers"]["llm"]["name"] == "openai", r.text
    [audit] = _overrides(api, agent)
    assert audit.actor_role == "owner" and audit.target_type == "agent"
    assert audit.details["reason"] == body["override_reason"] and audit.details["change"] == "providers"
    assert len(audit.details["config_hash"]) == 64


def test_reports_that_cannot_be_compared_are_422(api: Api) -> None:
    agent = _agent(api)
    other_suite = {**GOOD, "suite": "stay-smoke"}
    r = _record(api, agent, "a" * 64, other_suite)
    assert r.status == 422 and "different suites" in r.body["detail"], r.text
    r = api.call("POST", _path(api, agent, "/eval-runs"), token=api.tokens["a:operator"],
                 json={"config_hash": "not-a-hash", "baseline": GOOD, "candidate": GOOD})
    assert r.status == 422 and r.body["errors"][0]["path"] == "config_hash", r.text


def test_every_new_route_is_tenant_scoped(api: Api) -> None:
    agent = _agent(api)
    owner_b = api.tokens["b:owner"]
    digest = "b" * 64
    for method, rest, body in (("GET", "/versions", None), ("POST", "/versions", {"override_reason": "x"}),
                               ("GET", "/eval-runs", None),
                               ("POST", "/eval-runs", {"config_hash": digest, "baseline": GOOD,
                                                       "candidate": GOOD})):
        r = api.call(method, _path(api, agent, rest, label="b"), token=owner_b, json=body)
        assert r.status == 404, (method, rest, r.text)
    assert api.call("PATCH", _path(api, agent, label="b"), token=owner_b,
                    json={"providers": NEW_LLM, "override_reason": "x"}).status == 404
    # Nothing of tenant a's agent changed, and no run or override was recorded for it.
    assert api.call("GET", _path(api, agent, "/eval-runs"), token=api.tokens["a:viewer"]).body["items"] == []
    assert fetch(api, Agent, id=uuid.UUID(agent))[0].published_version is None
    assert _overrides(api, agent) == []
