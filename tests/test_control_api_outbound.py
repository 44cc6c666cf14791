"""Consents and outbound call requests: the consent check both ways, and the real Twilio SDK dialling a
local server that speaks Twilio's REST format (tests/twilio_fake)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from control_api_fixtures import AGENT, FAST, Api, api_with, control_api, fetch, insert, scope_for
from sqlalchemy import select
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
    # The routes' own rows; the viewer's refused attempt has a row of its own, with an `outcome`.
    own = sorted(a.action for a in audits if "outcome" not in a.details)
    assert own == ["consent.create", "consent.revoke"]
    assert "denied" in [a.details["outcome"] for a in audits if "outcome" in a.details]


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
        assert api.call(method, api.tenant_path("a", p), token=b).status == 401  # not b's tenant
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


def test_carrier_failure_is_502_recorded_and_replayed_for_the_key(
    dialing: Api, twilio: FakeTwilioServer, setup: dict[str, str]
) -> None:
    to = _callee()
    _consent(dialing, to)
    key = {"Idempotency-Key": f"f-{uuid.uuid4()}"}
    before = len(_creates(twilio))
    twilio.fake.fail_next(503, 20500, "Internal Server Error")
    r = _request(dialing, setup, to, headers=key)
    assert r.status == 502 and r.body["type"].endswith("/dial-failed") and r.body["retryable"] is True
    assert r.headers["Content-Type"] == "application/problem+json"
    # The call row stays, failed, and the key holds the 502.
    [call] = fetch(dialing, Call, to_e164=to)
    assert (call.status, call.disposition, call.carrier_call_sid) == ("failed", "dial_failed", None)
    assert call.ended_at is not None
    [idem] = fetch(dialing, IdempotencyKey, key=key["Idempotency-Key"])
    assert idem.response_status == 502 and idem.response_body["type"].endswith("/dial-failed")
    actions = sorted(a.action for a in fetch(dialing, AuditLog, target_id=str(call.id)))
    assert actions == ["call.outbound", "call.outbound_failed"]
    # The same key replays the failure and never asks the carrier again: after an unclear failure
    # the phone may ring anyway. A new key places the call.
    again = _request(dialing, setup, to, headers=key)
    assert again.status == 502 and again.body == r.body and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == "application/problem+json"
    assert len(_creates(twilio)) == before + 1  # the failed attempt only
    ok = _request(dialing, setup, to, headers={"Idempotency-Key": f"g-{uuid.uuid4()}"})
    assert ok.status == 202
    assert sorted(c.status for c in fetch(dialing, Call, to_e164=to)) == ["failed", "queued"]

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
    assert [(c.status, c.disposition) for c in fetch(dialing, Call, to_e164=to2)] == [
        ("failed", "dial_failed")
    ]


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
    calls = fetch(api, Call, to_e164=to)
    assert [(c.status, c.disposition) for c in calls] == [("failed", "dial_failed")] * 2
    assert "secret-detail" not in str([a.details for a in fetch(api, AuditLog, target_id=str(calls[0].id))])


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
    """Has the carrier's first status event persisted (as the consumer would) before the API records the
    dial, and checks the call row was committed before the carrier was asked."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.seen: list[tuple[str, str | None]] = []

    async def dial(self, *, to: str, from_: str, voice_url: str, status_url: str) -> str:
        call_id = uuid.UUID(parse_qs(urlsplit(status_url).query)["call_id"][0])
        async with self.api.db.sessions() as s, s.begin():
            stmt = select(Call).where(Call.id == call_id).execution_options(autospeak_unscoped="test")
            call = (await s.scalars(stmt.with_for_update())).one()
            self.seen.append((call.status, call.carrier_call_sid))
            call.status = "ringing"
        return "CA" + "7" * 32


def test_the_call_row_is_committed_before_dialing_and_a_newer_status_is_kept(
    api: Api, setup: dict[str, str]
) -> None:
    to = _callee()
    _consent(api, to)
    racer = _RacingDialer(api)
    with api_with(api, dialer=racer) as racing:
        r = _request(racing, setup, to)
    assert r.status == 202, r.text
    assert racer.seen == [("dialing", None)]
    [call] = fetch(api, Call, id=uuid.UUID(r.body["id"]))
    assert (call.direction, call.from_e164, call.to_e164, str(call.agent_id)) == (
        "outbound",
        setup["from"],
        to,
        setup["agent"],
    )
    assert call.status == "ringing" and call.carrier_call_sid == "CA" + "7" * 32


class _GatedDialer:
    """Holds the dial until released, so that a second request can arrive while it is in flight."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.dials = 0

    async def dial(self, *, to: str, from_: str, voice_url: str, status_url: str) -> str:
        self.dials += 1
        self.entered.set()
        await self.release.wait()
        return "CA" + uuid.uuid4().hex


def test_a_retry_while_the_first_request_is_dialing_is_409_and_rings_once(
    api: Api, setup: dict[str, str]
) -> None:
    to = _callee()
    _consent(api, to)
    gate = _GatedDialer()
    key = {"Idempotency-Key": f"g-{uuid.uuid4()}"}
    body = {"agent_id": setup["agent"], "to": to, "from": setup["from"]}
    hdrs = {**key, "Authorization": f"Bearer {api.tokens['a:operator']}", "Content-Type": "application/json"}
    with api_with(api, dialer=gate) as app:
        path = app.tenant_path("a", "/calls")

        async def race() -> tuple[Any, Any, Any]:
            first = asyncio.ensure_future(app._call("POST", path, hdrs, json.dumps(body)))
            await asyncio.wait_for(gate.entered.wait(), 30)
            during = await app._call("POST", path, hdrs, json.dumps(body))
            other_body = await app._call("POST", path, hdrs, json.dumps({**body, "to": _callee()}))
            gate.release.set()
            return await first, during, other_body

        first, during, other_body = app.db.run(race())
        assert first.status == 202, first.text
        assert during.status == 409 and during.body["type"].endswith("/idempotency-in-progress")
        assert other_body.status == 422 and other_body.body["type"].endswith("/idempotency-key-reused")
        after = app.call("POST", path, token=app.tokens["a:operator"], json=body, headers=key)
    assert after.status == 202 and after.body == first.body and after.headers["Idempotent-Replayed"] == "true"
    assert gate.dials == 1
    [call] = fetch(api, Call, to_e164=to)
    assert call.status == "queued" and call.carrier_call_sid == first.body["carrier_call_sid"]
