"""Calls (read side), recordings and usage on the real embedded PostgreSQL.

The rows are written here the way the event consumer writes them; the API only reads them.
"""

from __future__ import annotations

import io
import uuid
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from control_api_fixtures import AGENT, FAST, Api, api_with, control_api, insert, scope_for

from control.db.models import Call, CallEvent, Recording, Turn, UsageRecord
from regions.kms import LocalKms
from regions.objectstore import RegionStore
from regions.sealed_store import SealedStore

T0 = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


@pytest.fixture(scope="module")
def agent(api: Api) -> str:
    r = api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:owner"], json=AGENT)
    return r.body["id"]


def _call(api: Api, label: str = "a", **values: object) -> Call:
    fields = {
        "id": uuid.uuid4(),
        "direction": "inbound",
        "from_e164": "+442071838750",
        "to_e164": "+442071838751",
        "carrier_call_sid": "CA" + uuid.uuid4().hex,
        "status": "completed",
        "started_at": T0,
        "latency": {},
        **values,
    }
    call = scope_for(api, label).new(Call, **fields)
    insert(api, label, call)
    return call


def _wav(seconds: float = 0.25) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * int(8000 * seconds))
    return buf.getvalue()


def test_call_detail_transcript_and_events(api: Api, agent: str) -> None:
    latency = {"turns": 2, "stt_final_ms": {"p50": 180}, "llm_first_token_ms": {"p50": 420}}
    call = _call(
        api,
        agent_id=uuid.UUID(agent),
        disposition="booked",
        summary="Booked a table for two.",
        ended_at=T0 + timedelta(seconds=61),
        latency=latency,
    )
    scope = scope_for(api, "a")
    # Inserted out of order: the API orders by seq and by occurrence.
    insert(
        api,
        "a",
        scope.new(
            Turn,
            call_id=call.id,
            seq=2,
            speaker="agent",
            text="Sure, for when?",
            start_ms=3500,
            end_ms=4200,
            interrupted=True,
        ),
        scope.new(
            Turn, call_id=call.id, seq=1, speaker="caller", text="A table please", start_ms=900, end_ms=2100
        ),
        scope.new(
            CallEvent,
            call_id=call.id,
            event_id=f"{call.id}:MZ1:2",
            kind="transcript",
            payload={"text": "A table please", "turn": 1},
            occurred_at=T0 + timedelta(seconds=3),
        ),
        scope.new(
            CallEvent,
            call_id=call.id,
            event_id=f"{call.id}:created",
            kind="call_created",
            payload={"direction": "inbound"},
            occurred_at=T0,
        ),
    )
    viewer = api.tokens["a:viewer"]
    r = api.call("GET", api.tenant_path("a", f"/calls/{call.id}"), token=viewer)
    assert r.status == 200, r.text
    assert r.body["latency"] == latency and r.body["disposition"] == "booked"
    assert r.body["summary"] == "Booked a table for two." and r.body["agent_id"] == agent
    assert (r.body["from_e164"], r.body["direction"]) == ("+442071838750", "inbound")

    t = api.call("GET", api.tenant_path("a", f"/calls/{call.id}/transcript"), token=viewer)
    assert [(x["seq"], x["speaker"], x["interrupted"]) for x in t.body["turns"]] == [
        (1, "caller", False),
        (2, "agent", True),
    ]
    e = api.call("GET", api.tenant_path("a", f"/calls/{call.id}/events"), token=viewer)
    assert [x["kind"] for x in e.body["items"]] == ["call_created", "transcript"]
    assert e.body["items"][1]["payload"] == {"text": "A table please", "turn": 1}
    page = api.call("GET", api.tenant_path("a", f"/calls/{call.id}/events?limit=1"), token=viewer)
    assert len(page.body["items"]) == 1 and page.body["next_offset"] == 1


def test_list_filters_and_pagination(api: Api, agent: str) -> None:
    label = "b"  # a tenant of its own, so that other tests' calls do not disturb the counts
    base = T0 + timedelta(days=30)
    made = [
        _call(
            api,
            label,
            started_at=base + timedelta(minutes=i),
            direction="outbound" if i % 2 else "inbound",
            status="in_progress" if i == 4 else ("no_answer" if i == 3 else "completed"),
        )
        for i in range(5)
    ]
    owner = api.tokens["b:owner"]

    def ids(query: str) -> list[str]:
        r = api.call("GET", api.tenant_path(label, f"/calls?{query}"), token=owner)
        assert r.status == 200, r.text
        return [c["id"] for c in r.body["items"]]

    newest_first = [str(c.id) for c in reversed(made)]
    assert ids("limit=100") == newest_first
    assert ids("direction=outbound") == [str(made[3].id), str(made[1].id)]
    # Stored as ingest stores them; Twilio's hyphenated spellings are accepted too.
    assert ids("status=in-progress") == ids("status=in_progress") == [str(made[4].id)]
    assert ids("status=no-answer") == ids("status=no_answer") == [str(made[3].id)]
    assert ids("status=completed") == [str(made[2].id), str(made[1].id), str(made[0].id)]
    assert ids("status=dialing") == []
    after = (base + timedelta(minutes=2)).isoformat()
    before = (base + timedelta(minutes=4)).isoformat().replace("+00:00", "Z")
    assert ids(f"started_after={after.replace('+', '%2B')}&started_before={before}") == newest_first[1:3]
    page = api.call("GET", api.tenant_path(label, "/calls?limit=2&offset=2"), token=owner).body
    assert [c["id"] for c in page["items"]] == newest_first[2:4] and page["next_offset"] == 4
    assert ids(f"agent_id={uuid.uuid4()}") == []
    for bad in (
        "direction=sideways",
        "status=NOPE",
        "status=%00",
        "status=in progress",
        "status=in--progress",
        "status=answered",
        "agent_id=x",
        "started_after=yesterday",
        "started_after=2025-07-01T09:00:00",
        "started_before=9999-12-31T23:59:59-14:00",
        "limit=0",
    ):
        r = api.call("GET", api.tenant_path(label, f"/calls?{bad}"), token=owner)
        assert r.status == 422 and r.body["errors"][0]["path"].startswith("query."), (bad, r.text)


def test_calls_of_another_tenant_are_invisible(api: Api) -> None:
    call = _call(api, "a")
    b = api.tokens["b:owner"]
    missing = api.call("GET", api.tenant_path("b", f"/calls/{uuid.uuid4()}"), token=b)
    assert missing.status == 404
    for rest in ("", "/transcript", "/events", "/recording"):
        r = api.call("GET", api.tenant_path("b", f"/calls/{call.id}{rest}"), token=b)
        assert r.status == 404 and r.body == missing.body, rest
        # Under a's tenant id b's token is simply not valid (as under an unknown tenant id).
        assert api.call("GET", api.tenant_path("a", f"/calls/{call.id}{rest}"), token=b).status == 401
    listed = api.call("GET", api.tenant_path("b", "/calls?limit=100"), token=b)
    assert str(call.id) not in [c["id"] for c in listed.body["items"]]


def test_calls_of_a_tenant_homed_elsewhere_redirect(api: Api) -> None:
    for rest in ("/calls", f"/calls/{uuid.uuid4()}/recording", "/usage"):
        r = api.call("GET", api.tenant_path("c", rest), token=api.tokens["c:owner"])
        assert r.status == 307 and r.headers["Location"].startswith("http://us.cell.test:14210/")


REGION_KEY = bytes(range(32))  # the cell's region key (AUTOSPEAK_SECRETS_KEY) in these tests


def _sealed(root: Path, key: bytes = REGION_KEY) -> SealedStore:
    return SealedStore(RegionStore(root, "eu"), LocalKms(key))


def test_recording_download_decrypts_for_listening_roles_only(api: Api, tmp_path: Path) -> None:
    scope = scope_for(api, "a")
    call = _call(api)
    audio = _wav()
    key = RegionStore.key(scope.tenant_id, f"{call.id}.wav")
    _sealed(tmp_path).put(key, audio)
    assert RegionStore(tmp_path, "eu").get(key) != audio  # sealed on disk
    insert(
        api,
        "a",
        scope.new(Recording, call_id=call.id, object_key=key, duration_ms=250, size_bytes=len(audio)),
    )
    path = api.tenant_path("a", f"/calls/{call.id}/recording")
    with api_with(api, object_store_root=tmp_path, secrets_key=REGION_KEY) as stored:
        for role in ("a:owner", "a:admin", "a:operator"):
            status, headers, data = api.db.run(_raw(stored, path, api.tokens[role]))
            assert status == 200 and headers["Content-Type"] == "audio/wav", role
            assert "attachment" in headers["Content-Disposition"]
            assert data == audio
        with wave.open(io.BytesIO(data)) as w:
            assert w.getframerate() == 8000 and w.getnframes() == 2000
        # A viewer may read the call but not listen to it; another tenant does not see the call.
        status, _, data = api.db.run(_raw(stored, path, api.tokens["a:viewer"]))
        assert status == 403 and audio not in data
        status, _, data = api.db.run(_raw(stored, path.replace(str(api.tenants["a"]), str(api.tenants["b"])),
                                          api.tokens["b:owner"]))
        assert status == 404 and audio not in data
        # The object is gone from the store: 404, not a 500.
        RegionStore(tmp_path, "eu").delete(key)
        assert stored.call("GET", path, token=api.tokens["a:owner"]).status == 404
        # A call without a recording.
        bare = _call(api)
        r = stored.call(
            "GET", api.tenant_path("a", f"/calls/{bare.id}/recording"), token=api.tokens["a:owner"]
        )
        assert r.status == 404 and r.body["type"].endswith("/not-found")
    # No object store configured for this cell.
    assert api.call("GET", path, token=api.tokens["a:owner"]).status == 404


def test_a_recording_whose_key_is_lost_or_rotated_is_a_clear_error(api: Api, tmp_path: Path) -> None:
    scope = scope_for(api, "a")
    call = _call(api)
    key = RegionStore.key(scope.tenant_id, f"{call.id}.wav")
    _sealed(tmp_path).put(key, _wav())
    insert(api, "a", scope.new(Recording, call_id=call.id, object_key=key))
    path = api.tenant_path("a", f"/calls/{call.id}/recording")
    for settings in ({"secrets_key": bytes(32)}, {}):  # another region key; none at all
        with api_with(api, object_store_root=tmp_path, **settings) as stored:
            r = stored.call("GET", path, token=api.tokens["a:owner"])
            assert r.status == 503 and r.body["type"].endswith("/recording-key-unavailable")
            assert "rotated or lost" in r.body["detail"] or "no region key" in r.body["detail"]
            assert REGION_KEY.hex() not in str(r.body)
    # A file altered on disk fails its integrity check rather than playing garbage.
    raw = bytearray(RegionStore(tmp_path, "eu").get(key))
    raw[-5] ^= 1
    RegionStore(tmp_path, "eu").put(key, bytes(raw))
    with api_with(api, object_store_root=tmp_path, secrets_key=REGION_KEY) as stored:
        r = stored.call("GET", path, token=api.tokens["a:owner"])
        assert r.status == 500 and r.body["type"].endswith("/recording-damaged")


def test_a_recording_row_naming_another_tenants_object_is_not_served(api: Api, tmp_path: Path) -> None:
    scope = scope_for(api, "a")
    victim = RegionStore.key(api.tenants["b"], "secret.wav")
    _sealed(tmp_path).put(victim, _wav())
    call = _call(api)
    insert(api, "a", scope.new(Recording, call_id=call.id, object_key=victim))
    with api_with(api, object_store_root=tmp_path, secrets_key=REGION_KEY) as stored:
        r = stored.call(
            "GET", api.tenant_path("a", f"/calls/{call.id}/recording"), token=api.tokens["a:owner"]
        )
        assert r.status == 404


async def _raw(api: Api, path: str, token: str) -> tuple[int, Any, bytes]:
    # Api.call decodes bodies as text; a recording is bytes.
    resp = await api.app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
    return resp.status_code, resp.headers, await resp.get_data(as_text=False)


# --- usage ------------------------------------------------------------------------------------


def test_usage_totals_and_days(api: Api) -> None:
    label = "b"
    scope = scope_for(api, label)
    day1, day2 = datetime(2025, 3, 10, 23, 30, tzinfo=UTC), datetime(2025, 3, 11, 0, 15, tzinfo=UTC)
    for at, secs, micros in (
        (day1, 60, 12_000),
        (day1 + timedelta(minutes=5), 30, 6_000),
        (day2, 90, 18_000),
    ):
        call = _call(api, label, started_at=at)
        insert(
            api,
            label,
            scope.new(
                UsageRecord,
                call_id=call.id,
                billable_seconds=secs,
                amount_micros=micros,
                currency="USD",
                created_at=at + timedelta(minutes=1),
            ),
        )
    owner = api.tokens["b:owner"]
    r = api.call("GET", api.tenant_path(label, "/usage?from=2025-03-01&to=2025-03-31"), token=owner)
    assert r.status == 200, r.text
    assert r.body["totals"] == [
        {"currency": "USD", "calls": 3, "billable_seconds": 180, "amount_micros": 36_000}
    ]
    assert [(d["date"], d["calls"], d["billable_seconds"]) for d in r.body["days"]] == [
        ("2025-03-10", 2, 90),
        ("2025-03-11", 1, 90),
    ]
    assert (r.body["from_date"], r.body["to_date"]) == ("2025-03-01", "2025-03-31")
    one = api.call("GET", api.tenant_path(label, "/usage?from=2025-03-11&to=2025-03-11"), token=owner)
    assert one.body["totals"][0]["calls"] == 1
    # Tenant a sees none of b's usage.
    other = api.call(
        "GET", api.tenant_path("a", "/usage?from=2025-03-01&to=2025-03-31"), token=api.tokens["a:viewer"]
    )
    assert other.status == 200 and other.body["totals"] == [] and other.body["days"] == []
    assert api.call("GET", api.tenant_path("a", "/usage"), token=api.tokens["a:viewer"]).status == 200
    for bad in (
        "from=2025-03-31&to=2025-03-01",
        "from=03/01/2025",
        "from=2024-01-01&to=2025-12-31",
        "to=9999-12-31&from=9999-12-30",
        "from=2025-02-30",
    ):
        r = api.call("GET", api.tenant_path(label, f"/usage?{bad}"), token=owner)
        assert r.status == 422 and r.body["errors"][0]["path"].startswith("query."), (bad, r.text)


def test_the_served_openapi_documents_the_resource_routes(api: Api) -> None:
    doc = api.call("GET", "/openapi.json").body
    prefix = "/v1/tenants/{tenant_id}"
    expected = {
        "/users": {"get", "post"}, "/users/{user_id}": {"get", "delete"},
        "/phone-numbers": {"get", "post"}, "/phone-numbers/{e164}": {"get", "patch", "delete"},
        "/calls": {"get", "post"}, "/calls/{call_id}": {"get"}, "/calls/{call_id}/transcript": {"get"},
        "/calls/{call_id}/events": {"get"}, "/calls/{call_id}/recording": {"get"},
        "/consents": {"get", "post"}, "/consents/{consent_id}": {"get"},
        "/consents/{consent_id}/revoke": {"post"},
        "/webhook-endpoints": {"get", "post"}, "/webhook-endpoints/{endpoint_id}": {"get", "patch", "delete"},
        "/webhook-endpoints/{endpoint_id}/deliveries": {"get"},
        "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry": {"post"},
        "/usage": {"get"},
    }  # fmt: skip
    for path, methods in expected.items():
        assert set(doc["paths"][prefix + path]) == methods, path
    [status] = [p for p in doc["paths"][prefix + "/calls"]["get"]["parameters"] if p["name"] == "status"]
    assert set(status["schema"]["enum"]) >= {
        "queued", "ringing", "in_progress", "completed", "busy", "failed", "no_answer", "canceled"
    }  # fmt: skip
    outbound = doc["paths"][prefix + "/calls"]["post"]
    assert {"202", "403", "409", "422", "502", "503"} <= set(outbound["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in outbound["parameters"])
    recording = doc["paths"][prefix + "/calls/{call_id}/recording"]["get"]["responses"]["200"]["content"]
    assert recording == {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}


def test_usage_range_errors_name_the_parameter_that_was_sent(api: Api) -> None:
    viewer = api.tokens["a:viewer"]
    today = datetime.now(UTC).date()
    for query, blamed in (
        ("from=1900-01-01", "query.from"),  # too long a range up to today, the default `to`
        (f"from={today + timedelta(days=40)}", "query.from"),  # after today, the default `to`
        ("to=2000-01-01", "query.to"),  # before the first of this month, the default `from`
        ("from=2024-01-01&to=2025-12-31", "query.to"),  # both sent: the range's end
        ("from=2025-03-31&to=2025-03-01", "query.to"),
    ):
        r = api.call("GET", api.tenant_path("a", f"/usage?{query}"), token=viewer)
        assert r.status == 422, (query, r.text)
        assert [e["path"] for e in r.body["errors"]] == [blamed], (query, r.body)
    r = api.call("GET", api.tenant_path("a", "/usage?from=1900-01-01"), token=viewer)
    assert "default: today" in r.body["detail"]
