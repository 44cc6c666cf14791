"""Consents and outbound call requests: the consent check both ways, and the real Twilio SDK dialling a
local server that speaks Twilio's REST format (tests/twilio_fake)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from control_api_fixtures import AGENT, FAST, Api, api_with, control_api, fetch, insert, scope_for
from twilio_fake.server import FakeTwilioServer

from control.api.outbound import Dialer, DialError, TwilioDialer
from control.db.models import AuditLog, Call, Consent, IdempotencyKey

PUBLIC = "https://eu.autospeak.example"


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer() as server:
        yield server


@pytest.fixture(scope="module")
def dialing(api: Api, twilio: FakeTwilioServer) -> Iterator[Api]:
    dialer = TwilioDialer(
        account_sid=twilio.fake.account_sid,
        auth_token=twilio.fake.auth_token,
        api_base_url=twilio.base_url,
        timeout_s=5.0,
    )
    with api_with(api, dialer=dialer, public_base_url=PUBLIC) as app:
        yield app


@pytest.fixture(scope="module")
def setup(api: Api) -> dict[str, str]:
    owner = api.tokens["a:owner"]
    agent = api.call("POST", api.tenant_path("a", "/agents"), token=owner, json=AGENT).body["id"]
    number = "+442071830001"
    r = api.call("POST", api.tenant_path("a", "/phone-numbers"), token=owner, json={"e164": number})
    assert r.status == 201, r.text
    b_number = "+442071830002"
    assert (
        api.call(
            "POST",
            api.tenant_path("b", "/phone-numbers"),
            token=api.tokens["b:owner"],
            json={"e164": b_number},
        ).status
        == 201
    )
    return {"agent": agent, "from": number, "b_from": b_number}


def _callee() -> str:
    return "+4930" + str(uuid.uuid4().int)[:8]


def _consent(
    api: Api, to: str, *, granted: bool = True, kind: str = "outbound_call", label: str = "a", **extra: object
) -> dict:
    r = api.call(
        "POST",
        api.tenant_path(label, "/consents"),
        token=api.tokens[f"{label}:operator" if label == "a" else f"{label}:owner"],
        json={"subject_e164": to, "kind": kind, "granted": granted, "source": "web form", **extra},
    )
    assert r.status == 201, r.text
    return r.body


def _request(
    app: Api,
    setup: dict[str, str],
    callee: str,
    *,
    token: str = "a:operator",
    label: str = "a",
    headers: dict[str, str] | None = None,
    override: dict[str, object] | None = None,
) -> Any:
    body = {"agent_id": setup["agent"], "to": callee, "from": setup["from"], **(override or {})}
    return app.call(
        "POST", app.tenant_path(label, "/calls"), token=app.tokens[token], json=body, headers=headers
    )


def _creates(twilio: FakeTwilioServer) -> list:
    return [r for r in twilio.fake.requests if r.method == "POST" and r.path.endswith("/Calls.json")]


# --- consents ---------------------------------------------------------------------------------


def test_consent_lifecycle_and_roles(api: Api) -> None:
    to = _callee()
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    c = _consent(api, to, expires_at=expires)
    assert c["granted"] and c["revoked_at"] is None and c["kind"] == "outbound_call"
    viewer = api.tokens["a:viewer"]
    assert api.call("GET", api.tenant_path("a", f"/consents/{c['id']}"), token=viewer).body == c
    listed = api.call("GET", api.tenant_path("a", f"/consents?subject_e164=%2B{to[1:]}"), token=viewer)
    assert [x["id"] for x in listed.body["items"]] == [c["id"]]
    assert (
        api.call(
            "POST",
            api.tenant_path("a", "/consents"),
            token=viewer,
            json={"subject_e164": to, "kind": "recording", "granted": True, "source": "x"},
        ).status
        == 403
    )
    assert api.call("POST", api.tenant_path("a", f"/consents/{c['id']}/revoke"), token=viewer).status == 403

    op = api.tokens["a:operator"]
    revoked = api.call("POST", api.tenant_path("a", f"/consents/{c['id']}/revoke"), token=op)
    assert revoked.status == 200 and revoked.body["revoked_at"] is not None
    again = api.call("POST", api.tenant_path("a", f"/consents/{c['id']}/revoke"), token=op)
    assert again.body["revoked_at"] == revoked.body["revoked_at"]  # the first revocation stands
    audits = fetch(api, AuditLog, tenant_id=api.tenants["a"], target_id=c["id"])
    assert sorted(a.action for a in audits) == ["consent.create", "consent.revoke"]


def test_consent_validation(api: Api) -> None:
    op = api.tokens["a:operator"]
    good = {"subject_e164": _callee(), "kind": "outbound_call", "granted": True, "source": "ivr"}
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for change, field in (
        ({"kind": "telepathy"}, "kind"),
        ({"subject_e164": "12345"}, "subject_e164"),
        ({"granted": "yes"}, "granted"),
        ({"source": ""}, "source"),
        ({"expires_at": past}, "expires_at"),
        ({"expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"expires_at": "9999-12-31T23:59:59-14:00"}, "expires_at"),
        ({"extra": 1}, "extra"),
    ):
        r = api.call("POST", api.tenant_path("a", "/consents"), token=op, json={**good, **change})
        assert r.status == 422 and r.body["errors"][0]["path"] == field, (change, r.text)
    for bad in ("subject_e164=123", "kind=x", "limit=1000"):
        r = api.call("GET", api.tenant_path("a", f"/consents?{bad}"), token=op)
        assert r.status == 422, bad


def test_consents_are_tenant_scoped_and_idempotent(api: Api) -> None:
    key = {"Idempotency-Key": f"c-{uuid.uuid4()}"}
    body = {"subject_e164": _callee(), "kind": "recording", "granted": True, "source": "ivr"}
    path = api.tenant_path("a", "/consents")
    first = api.call("POST", path, token=api.tokens["a:operator"], json=body, headers=key)
    again = api.call("POST", path, token=api.tokens["a:operator"], json=body, headers=key)
    assert first.status == again.status == 201 and first.body == again.body
    assert len(fetch(api, Consent, subject_e164=body["subject_e164"])) == 1
    b = api.tokens["b:owner"]
    for p in (f"/consents/{first.body['id']}", f"/consents/{first.body['id']}/revoke"):
        method = "POST" if p.endswith("revoke") else "GET"
        assert api.call(method, api.tenant_path("b", p), token=b).status == 404
        assert api.call(method, api.tenant_path("a", p), token=b).status == 404
    listed = api.call(
        "GET", api.tenant_path("b", f"/consents?subject_e164=%2B{body['subject_e164'][1:]}"), token=b
    )
    assert listed.body["items"] == []
    [row] = fetch(api, Consent, subject_e164=body["subject_e164"])
    assert row.revoked_at is None


# --- outbound calls ---------------------------------------------------------------------------


def test_outbound_call_with_consent_dials_through_twilio(
    dialing: Api, twilio: FakeTwilioServer, setup: dict[str, str]
) -> None:
    to = _callee()
    _consent(dialing, to)
    before = len(_creates(twilio))
    r = _request(dialing, setup, to)
    assert r.status == 202, r.text
    assert r.body["status"] == "queued" and r.body["carrier_call_sid"].startswith("CA")
    call_id = r.body["id"]
    assert r.headers["Location"] == dialing.tenant_path("a", f"/calls/{call_id}")

    [req] = _creates(twilio)[before:]
    assert (req.value("To"), req.value("From"), req.value("Method")) == (to, setup["from"], "POST")
    url = urlsplit(req.value("Url") or "")
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{PUBLIC}/twilio/voice"
    assert parse_qs(url.query) == {"call_id": [call_id]}
    assert req.value("StatusCallback") == f"{PUBLIC}/twilio/status?call_id={call_id}"
    assert req.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert twilio.fake.calls[r.body["carrier_call_sid"]].direction == "outbound-api"

    [call] = fetch(dialing, Call, id=uuid.UUID(call_id))
    assert (call.status, call.direction, call.to_e164, call.from_e164) == (
        "queued",
        "outbound",
        to,
        setup["from"],
    )
    assert call.carrier_call_sid == r.body["carrier_call_sid"] and str(call.agent_id) == setup["agent"]
    [audit] = fetch(dialing, AuditLog, action="call.outbound", target_id=call_id)
    assert audit.details["to"] == to and audit.actor.startswith("token:")
    detail = dialing.call(
        "GET", dialing.tenant_path("a", f"/calls/{call_id}"), token=dialing.tokens["a:viewer"]
    )
    assert detail.status == 200 and detail.body["status"] == "queued"


@pytest.mark.parametrize(
    "case", ["none", "refused_later", "revoked", "expired", "other_kind", "other_tenant"]
)
def test_outbound_call_without_consent_is_refused_and_audited(
    dialing: Api, twilio: FakeTwilioServer, setup: dict[str, str], case: str
) -> None:
    to = _callee()
    if case == "refused_later":
        _consent(dialing, to)
        _consent(dialing, to, granted=False)
    elif case == "revoked":
        c = _consent(dialing, to)
        dialing.call(
            "POST",
            dialing.tenant_path("a", f"/consents/{c['id']}/revoke"),
            token=dialing.tokens["a:operator"],
        )
    elif case == "expired":
        scope = scope_for(dialing, "a")
        insert(
            dialing,
            "a",
            scope.new(
                Consent,
                subject_e164=to,
                kind="outbound_call",
                granted=True,
                source="ivr",
                recorded_at=datetime.now(UTC) - timedelta(days=2),
                expires_at=datetime.now(UTC) - timedelta(days=1),
            ),
        )
    elif case == "other_kind":
        _consent(dialing, to, kind="recording")
    elif case == "other_tenant":
        _consent(dialing, to, label="b")
    before = len(twilio.fake.requests)
    r = _request(dialing, setup, to)
    assert r.status == 403, r.text
    assert (
        r.body["type"].endswith("/consent-required")
        and r.headers["Content-Type"] == "application/problem+json"
    )
    assert len(twilio.fake.requests) == before  # the carrier was never asked
    assert fetch(dialing, Call, to_e164=to) == []
    refusals = [
        a for a in fetch(dialing, AuditLog, action="call.outbound_refused") if a.details.get("to") == to
    ]
    assert len(refusals) == 1 and refusals[0].details["reason"] == "consent-required"


def test_outbound_call_validation(dialing: Api, twilio: FakeTwilioServer, setup: dict[str, str]) -> None:
    to = _callee()
    _consent(dialing, to)
    before = len(twilio.fake.requests)
    for override, field in (
        ({"from": setup["b_from"]}, "from"),
        ({"from": "+442071839999"}, "from"),
        ({"to": "0301234567"}, "to"),
        ({"agent_id": str(uuid.uuid4())}, "agent_id"),
        ({"agent_id": "nope"}, "agent_id"),
        ({"from_": setup["from"]}, "(body)"),
    ):
        r = _request(dialing, setup, to, override=override)
        assert r.status == 422 and r.body["errors"][0]["path"] == field, (override, r.text)
    assert _request(dialing, setup, to, token="a:viewer").status == 403
    assert len(twilio.fake.requests) == before


def test_outbound_call_idempotent_replay_dials_once(
    dialing: Api, twilio: FakeTwilioServer, setup: dict[str, str]
) -> None:
    to = _callee()
    _consent(dialing, to)
    key = {"Idempotency-Key": f"o-{uuid.uuid4()}"}
    before = len(_creates(twilio))
    first = _request(dialing, setup, to, headers=key)
    again = _request(dialing, setup, to, headers=key)
    assert first.status == again.status == 202 and again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(_creates(twilio)) == before + 1
    assert len(fetch(dialing, Call, to_e164=to)) == 1


def test_carrier_failure_is_502_and_leaves_nothing(
    dialing: Api, twilio: FakeTwilioServer, setup: dict[str, str]
) -> None:
    to = _callee()
    _consent(dialing, to)
    key = {"Idempotency-Key": f"f-{uuid.uuid4()}"}
    twilio.fake.fail_next(503, 20500, "Internal Server Error")
    r = _request(dialing, setup, to, headers=key)
    assert r.status == 502 and r.body["type"].endswith("/dial-failed") and r.body["retryable"] is True
    assert fetch(dialing, Call, to_e164=to) == []
    assert fetch(dialing, IdempotencyKey, key=key["Idempotency-Key"]) == []
    assert [a for a in fetch(dialing, AuditLog, action="call.outbound") if a.details.get("to") == to] == []
    # The same key works once the carrier is back.
    ok = _request(dialing, setup, to, headers=key)
    assert ok.status == 202 and len(fetch(dialing, Call, to_e164=to)) == 1

    # Twilio refuses a caller id the account does not own (error 21210): not retryable.
    to2 = _callee()
    _consent(dialing, to2)
    twilio.fake.numbers = {"+15005550006"}
    try:
        r = _request(dialing, setup, to2)
    finally:
        twilio.fake.numbers = set()
    assert r.status == 502 and "21210" in r.body["detail"] and r.body["retryable"] is False
    assert twilio.fake.auth_token not in r.text
    assert fetch(dialing, Call, to_e164=to2) == []


class _BrokenDialer:
    async def dial(self, *, to: str, from_: str, voice_url: str, status_url: str) -> str:
        raise RuntimeError("socket exploded: secret-detail")


class _RefusingDialer:
    async def dial(self, *, to: str, from_: str, voice_url: str, status_url: str) -> str:
        raise DialError("carrier says no")


def test_any_dialer_failure_is_a_clean_502(api: Api, setup: dict[str, str]) -> None:
    assert isinstance(_BrokenDialer(), Dialer)
    to = _callee()
    _consent(api, to)
    with api_with(api, dialer=_BrokenDialer()) as broken:
        r = _request(broken, setup, to)
        assert r.status == 502 and "secret-detail" not in r.text
    with api_with(api, dialer=_RefusingDialer()) as refusing:
        r = _request(refusing, setup, to)
        assert r.status == 502 and "carrier says no" in r.body["detail"]
    assert fetch(api, Call, to_e164=to) == []


def test_no_dialer_is_503_after_the_checks(api: Api, setup: dict[str, str]) -> None:
    to = _callee()
    assert _request(api, setup, to).status == 403  # consent is checked first
    _consent(api, to)
    r = _request(api, setup, to)
    assert r.status == 503 and r.body["type"].endswith("/dialer-unavailable")
    assert fetch(api, Call, to_e164=to) == []


def test_outbound_for_a_tenant_homed_elsewhere_redirects(
    dialing: Api, twilio: FakeTwilioServer, setup: dict[str, str]
) -> None:
    before = len(twilio.fake.requests)
    r = _request(dialing, setup, "+12025550111", token="c:owner", label="c")
    assert r.status == 307 and r.headers["Location"].startswith("http://us.cell.test:14210/")
    assert len(twilio.fake.requests) == before


class _RacingDialer:
    """Persists the carrier's first status event (as the consumer would) before the API writes its row."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def dial(self, *, to: str, from_: str, voice_url: str, status_url: str) -> str:
        call_id = uuid.UUID(parse_qs(urlsplit(status_url).query)["call_id"][0])
        scope = scope_for(self.api, "a")
        async with self.api.db.sessions() as s, s.begin():
            s.add(
                scope.new(
                    Call,
                    id=call_id,
                    direction="inbound",
                    from_e164="",
                    to_e164="",
                    status="initiated",
                    latency={},
                )
            )
        return "CA" + "7" * 32


def test_a_status_event_persisted_first_is_merged_not_a_conflict(api: Api, setup: dict[str, str]) -> None:
    to = _callee()
    _consent(api, to)
    with api_with(api, dialer=_RacingDialer(api)) as racing:
        r = _request(racing, setup, to)
    assert r.status == 202, r.text
    [call] = fetch(api, Call, id=uuid.UUID(r.body["id"]))
    assert (call.direction, call.from_e164, call.to_e164, str(call.agent_id)) == (
        "outbound",
        setup["from"],
        to,
        setup["agent"],
    )
    assert call.status == "initiated" and call.carrier_call_sid == "CA" + "7" * 32
