"""Twilio's voice webhook on the control API, and the worker's media WebSocket it points the call at."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
import pytest
from quart import Quart
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError
from twilio.request_validator import RequestValidator
from twilio_fake import MediaStreamFrames

from cells.call.transport import AudioIn, DtmfIn, MarkPlayed, StreamStop
from cells.contract.call_token import CallTokenAuthority
from cells.contract.twilio_signature import TwilioSigning
from cells.contract.twilio_webhook import (
    NumberRoute,
    SlotRequest,
    WebhookSettings,
    WorkerSlot,
    twilio_voice_blueprint,
)
from cells.telephony.twilio_ws import (
    AcceptedStream,
    MediaSocketSettings,
    TwilioMediaSession,
    media_stream_blueprint,
)

AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"
BASE = "https://eu.autospeak.example"
WORKER_URL = "wss://worker-3.eu.autospeak.example/media"
OUR_NUMBER = "+442071838750"
CALL_SID = "CA" + "5" * 32
CALLER = "+447700900123"


def voice_form(**overrides: str) -> dict[str, str]:
    """The form Twilio posts to a voice webhook for an inbound call."""
    form = {"AccountSid": "AC" + "9" * 32, "ApiVersion": "2010-04-01", "CallSid": CALL_SID,
            "CallStatus": "ringing", "Called": OUR_NUMBER, "Caller": CALLER, "Direction": "inbound",
            "From": CALLER, "To": OUR_NUMBER, "FromCountry": "GB", "ToCountry": "GB"}
    return form | overrides


def sign(url: str, params: dict[str, str]) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(url, params)


class ControlApi:
    """The webhook blueprint on a Quart app, with recording stand-ins for the number directory and the
    worker pool (NATS later)."""

    def __init__(self, *, slot: Callable[[SlotRequest], Awaitable[Any]] | None = None,
                 should_resume: Callable[[str, dict[str, str]], Awaitable[bool]] | None = None,
                 **settings: Any) -> None:
        self.tokens = CallTokenAuthority("k" * 40)
        self.slot_requests: list[SlotRequest] = []
        self.lookups: list[str] = []
        self.statuses: list[dict[str, str]] = []

        def lookup(number: str) -> NumberRoute | None:
            self.lookups.append(number)
            return NumberRoute("t-dental", "reception") if number == OUR_NUMBER else None

        async def default_slot(req: SlotRequest) -> WorkerSlot:
            return WorkerSlot(WORKER_URL, worker_id="worker-3")

        async def record_slot(req: SlotRequest) -> Any:
            self.slot_requests.append(req)
            return await (slot or default_slot)(req)

        async def on_status(form: dict[str, str]) -> None:
            self.statuses.append(form)

        self.app = Quart(__name__)
        self.app.register_blueprint(twilio_voice_blueprint(
            WebhookSettings(auth_token=AUTH_TOKEN, public_base_url=BASE, slot_timeout_s=0.2, **settings),
            tokens=self.tokens, lookup_number=lookup, request_slot=record_slot, on_status=on_status,
            should_resume=should_resume))

    def post(self, path: str, form: dict[str, str], *, signature: str | None = None,
             signed_form: dict[str, str] | None = None) -> tuple[int, str]:
        if signature is None:
            signature = sign(BASE + path, signed_form if signed_form is not None else form)

        async def main() -> tuple[int, str]:
            client = self.app.test_client()
            response = await client.post(path, form=form, headers={"X-Twilio-Signature": signature})
            return response.status_code, await response.get_data(as_text=True)

        return asyncio.run(main())


def twiml(body: str) -> ET.Element:
    root = ET.fromstring(body)
    assert root.tag == "Response"
    return root


def test_signed_call_gets_connect_stream_with_a_one_time_token() -> None:
    api = ControlApi()
    status, body = api.post("/twilio/voice", voice_form())
    assert status == 200
    connect = twiml(body).find("Connect")
    assert connect is not None
    action = urlsplit(connect.get("action", ""))
    assert f"{action.scheme}://{action.netloc}{action.path}" == f"{BASE}/twilio/stream-ended"
    assert parse_qs(action.query) == {"attempt": ["1"], "call_id": [CALL_SID]}
    stream = connect.find("Stream")
    assert stream is not None and stream.get("url") == WORKER_URL
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    claims = api.tokens.verify(params["call_token"], audience="worker-3")
    assert (claims.tenant_id, claims.agent_id, claims.call_sid) == ("t-dental", "reception", CALL_SID)
    (req,) = api.slot_requests
    assert (req.tenant_id, req.agent_id, req.from_number) == ("t-dental", "reception", CALLER)
    assert not req.resume


def test_bad_signatures_are_refused_with_403() -> None:
    api = ControlApi()
    form = voice_form()
    tampered = form | {"To": "+442071838751"}
    assert api.post("/twilio/voice", tampered, signed_form=form)[0] == 403
    assert api.post("/twilio/voice", form, signature="bm90IGEgc2lnbmF0dXJl")[0] == 403
    assert api.post("/twilio/voice", form, signature="")[0] == 403
    # Signed for the host the proxy forwards to, not the public URL Twilio called.
    assert api.post("/twilio/voice", form, signature=sign("http://localhost/twilio/voice", form))[0] == 403
    assert api.slot_requests == []


def test_unknown_number_hears_a_polite_goodbye() -> None:
    status, body = ControlApi().post("/twilio/voice", voice_form(To="+442079460000"))
    root = twiml(body)
    assert status == 200 and "not in service" in (root.findtext("Say") or "")
    assert root.find("Hangup") is not None and root.find("Connect") is None


def test_unknown_number_can_be_rejected_unbilled() -> None:
    api = ControlApi(reject_unknown_numbers=True)
    status, body = api.post("/twilio/voice", voice_form(To="+442079460000"))
    assert status == 200 and twiml(body).find("Reject") is not None


async def _no_worker(req: SlotRequest) -> None:
    return None


async def _broken_pool(req: SlotRequest) -> None:
    raise ConnectionError("nats: no responders")


async def _silent_pool(req: SlotRequest) -> None:
    await asyncio.Event().wait()


async def _insecure_worker(req: SlotRequest) -> str:
    return "ws://worker-3.eu.autospeak.example/media"


def test_no_worker_means_a_polite_message_never_a_500() -> None:
    for slot in (_no_worker, _broken_pool, _silent_pool, _insecure_worker):
        status, body = ControlApi(slot=slot).post("/twilio/voice", voice_form())
        root = twiml(body)
        assert status == 200, slot.__name__
        assert "busy" in (root.findtext("Say") or "") and root.find("Hangup") is not None


def test_outbound_call_uses_our_number_and_our_call_id() -> None:
    form = voice_form(Direction="outbound-api", From=OUR_NUMBER, To=CALLER, CallStatus="in-progress")
    api = ControlApi()
    status, body = api.post("/twilio/voice?call_id=call-42", form)
    assert status == 200 and api.lookups == [OUR_NUMBER]
    token = twiml(body).find("Connect/Stream/Parameter").get("value")  # type: ignore[union-attr]
    assert api.tokens.verify(token, audience="worker-3").call_id == "call-42"


def test_stream_ended_hangs_up_unless_the_call_should_resume() -> None:
    path = f"/twilio/stream-ended?attempt=1&call_id={CALL_SID}"
    form = voice_form(CallStatus="in-progress")
    status, body = ControlApi().post(path, form)
    assert status == 200 and twiml(body).find("Hangup") is not None

    async def resume(call_sid: str, form: dict[str, str]) -> bool:
        return True

    api = ControlApi(should_resume=resume)
    status, body = api.post(path, form)
    connect = twiml(body).find("Connect")
    assert connect is not None and "attempt=2" in connect.get("action", "")
    assert api.slot_requests[-1].resume and api.slot_requests[-1].call_id == CALL_SID
    # Past the resume budget the caller is not bounced between workers forever.
    status, body = api.post(path.replace("attempt=1", "attempt=3"), form)
    assert twiml(body).find("Hangup") is not None
    status, body = api.post(path, voice_form(CallStatus="completed"))
    assert status == 200 and len(twiml(body)) == 0


def test_status_callbacks_are_validated_and_delivered() -> None:
    api = ControlApi()
    form = voice_form(CallStatus="completed", CallDuration="42")
    assert api.post("/twilio/status", form)[0] == 204
    assert api.statuses[-1]["CallDuration"] == "42"
    assert api.post("/twilio/status", form, signature="x")[0] == 403
    assert len(api.statuses) == 1


# --- the worker's media WebSocket ---------------------------------------------------------------------

ACCOUNT_SID = "AC" + "9" * 32


class Worker:
    """A media worker app whose call loop records events; DTMF 1 plays audio + a mark, 2 barges in."""

    def __init__(self, tokens: CallTokenAuthority, known_calls: set[str], **settings: Any) -> None:
        self.streams: list[tuple[AcceptedStream[str], list[Any], TwilioMediaSession]] = []

        async def resolve(claims: Any, start: Any) -> str | None:
            return f"agent:{claims.agent_id}" if claims.call_id in known_calls else None

        async def on_stream(session: TwilioMediaSession, accepted: AcceptedStream[str]) -> None:
            events: list[Any] = []
            self.streams.append((accepted, events, session))
            async for event in session.events():
                events.append(event)
                if event == DtmfIn("1"):
                    out = session.outbound_path(8000)
                    for frame in out.push(np.zeros(160, np.int16)):
                        await session.send_audio(frame)
                    await session.send_mark("turn-1")
                elif event == DtmfIn("2"):
                    await session.send_clear()

        self.app = Quart(__name__)
        config = {"auth_token": AUTH_TOKEN, "public_stream_url": WORKER_URL, "audience": "worker-3"}
        config |= settings
        self.app.register_blueprint(media_stream_blueprint(
            MediaSocketSettings(**config), tokens=tokens, resolve_call=resolve, on_stream=on_stream))

    def connect(self, signature: str | None = None) -> Any:
        signature = sign(WORKER_URL, {}) if signature is None else signature
        return self.app.test_client().websocket("/media", headers={"X-Twilio-Signature": signature})


async def _closed_with(ws: Any) -> int:
    with pytest.raises(WebsocketDisconnectError) as info:
        while True:
            await ws.receive()
    return info.value.args[0]


def _answered_call(api: ControlApi) -> str:
    """Run the voice webhook and return the call token from its TwiML, as Twilio would carry it."""
    status, body = api.post("/twilio/voice", voice_form())
    assert status == 200
    return twiml(body).find("Connect/Stream/Parameter").get("value")  # type: ignore[union-attr]


def test_webhook_to_worker_a_call_streams_end_to_end() -> None:
    api = ControlApi()
    token = _answered_call(api)
    worker = Worker(api.tokens, {CALL_SID})
    frames = MediaStreamFrames(ACCOUNT_SID, CALL_SID, "MZ" + "7" * 32)
    media: list[str] = []

    async def main() -> None:
        async with worker.connect() as ws:
            await ws.send(frames.connected())
            await ws.send(frames.start({"call_token": token}))
            media.append(frames.media())
            await ws.send(media[0])
            await ws.send(frames.dtmf("1"))
            sent = [json.loads(await ws.receive()) for _ in range(2)]
            assert [m["event"] for m in sent] == ["media", "mark"]
            assert {m["streamSid"] for m in sent} == {frames.stream_sid}
            assert sent[1]["mark"] == {"name": "turn-1"}
            assert len(base64.b64decode(sent[0]["media"]["payload"])) == 160
            await ws.send(frames.mark(sent[1]["mark"]["name"]))  # Twilio played the audio
            await ws.send(frames.stop())
            assert await _closed_with(ws) == 1000

    asyncio.run(main())
    ((accepted, events, _),) = worker.streams
    assert accepted.call == "agent:reception" and accepted.claims.tenant_id == "t-dental"
    assert [type(e) for e in events] == [AudioIn, DtmfIn, MarkPlayed, StreamStop]
    assert events[0].data == media[0] and events[2] == MarkPlayed("turn-1")


def test_barge_in_clear_counts_pending_marks_as_not_heard() -> None:
    api = ControlApi()
    worker = Worker(api.tokens, {CALL_SID})
    frames = MediaStreamFrames(ACCOUNT_SID, CALL_SID, "MZ" + "7" * 32)
    token = _answered_call(api)

    async def main() -> None:
        async with worker.connect() as ws:
            await ws.send(frames.start({"call_token": token}))
            await ws.send(frames.dtmf("1"))
            mark = [json.loads(await ws.receive()) for _ in range(2)][1]["mark"]["name"]
            await ws.send(frames.dtmf("2"))
            assert json.loads(await ws.receive()) == {"event": "clear", "streamSid": frames.stream_sid}
            await ws.send(frames.mark(mark))  # Twilio echoes pending marks after a clear
            await ws.send(frames.stop())
            await _closed_with(ws)

    asyncio.run(main())
    events = worker.streams[0][1]
    assert events == [DtmfIn("1"), DtmfIn("2"), MarkPlayed("turn-1"), StreamStop()]


@pytest.mark.parametrize("case", ["reused", "tampered", "unknown_call", "other_call", "missing"])
def test_bad_tokens_and_unknown_calls_close_the_stream_with_a_reason(
        case: str, caplog: pytest.LogCaptureFixture) -> None:
    api = ControlApi()
    token = _answered_call(api)
    worker = Worker(api.tokens, set() if case == "unknown_call" else {CALL_SID})
    call_sid = "CA" + "6" * 32 if case == "other_call" else CALL_SID
    frames = MediaStreamFrames(ACCOUNT_SID, call_sid, "MZ" + "7" * 32)
    params = {"reused": {"call_token": token}, "tampered": {"call_token": token[:-3] + "AAA"},
              "unknown_call": {"call_token": token}, "other_call": {"call_token": token}, "missing": {}}[case]

    async def open_stream() -> int:
        async with worker.connect() as ws:
            await ws.send(frames.start(params))
            return await _closed_with(ws)

    async def main() -> int:
        if case == "reused":
            async with worker.connect() as ws:  # the first stream takes the token
                await ws.send(frames.start(params))
                await ws.send(frames.stop())
                await _closed_with(ws)
        return await open_stream()

    caplog.set_level(logging.INFO)
    assert asyncio.run(main()) == 1008
    reason = {"reused": "reused_token", "tampered": "bad_token", "unknown_call": "unknown_call",
              "other_call": "token_for_another_call", "missing": "missing_token"}[case]
    assert f"rejected stream {frames.stream_sid} of call {call_sid}: {reason}" in caplog.text
    assert token not in caplog.text and token.split(".")[2] not in caplog.text
    assert len(worker.streams) == (1 if case == "reused" else 0)


def test_unsigned_upgrade_is_refused() -> None:
    worker = Worker(CallTokenAuthority("k" * 40), {CALL_SID})

    async def main() -> int:
        async with worker.connect(signature=sign("wss://elsewhere.example/media", {})) as ws:
            with pytest.raises(WebsocketResponseError) as info:
                await ws.receive()
            return info.value.response.status_code

    assert asyncio.run(main()) == 403


def test_a_misbehaving_stream_is_closed_while_other_calls_carry_on() -> None:
    api = ControlApi()
    good_token, *bad_tokens = (_answered_call(api) for _ in range(4))
    worker = Worker(api.tokens, {CALL_SID}, max_bad_frames=2)
    good = MediaStreamFrames(ACCOUNT_SID, CALL_SID, "MZ" + "1" * 32)

    async def good_call() -> None:
        async with worker.connect() as ws:
            await ws.send(good.start({"call_token": good_token}))
            for _ in range(20):
                await ws.send(good.media())
                await asyncio.sleep(0)
            await ws.send(good.stop())
            assert await _closed_with(ws) == 1000

    async def bad_call(garbage: list[str | bytes], code: int) -> None:
        frames = MediaStreamFrames(ACCOUNT_SID, CALL_SID, f"MZ{code:032d}")
        async with worker.connect() as ws:
            await ws.send(frames.start({"call_token": bad_tokens.pop()}))
            for g in garbage:
                await ws.send(g)
            assert await _closed_with(ws) == code

    async def main() -> None:
        await asyncio.gather(
            good_call(),
            bad_call([b"\x00\x01binary"], 1003),
            bad_call(["x" * (64 * 1024 + 1)], 1009),
            bad_call(["{nope", '{"event":"surprise"}', "[]", '{"event":"dtmf","dtmf":{}}'], 1008),
        )

    asyncio.run(main())
    by_stream = {accepted.start.stream_sid: events for accepted, events, _ in worker.streams}
    assert sum(isinstance(e, AudioIn) for e in by_stream[good.stream_sid]) == 20
    assert isinstance(by_stream[good.stream_sid][-1], StreamStop)


# --- webhooks signed with a shared key (Twilio's Webhooks configuration API) ------------------------

SHARED_KEYS = {"webhooks_sharedkey_old": "old-secret-0123456789",
               "webhooks_sharedkey_new": "new-secret-9876543210"}


def post_with_headers(api: ControlApi, path: str, form: dict[str, str], headers: dict[str, str]) -> int:
    async def main() -> int:
        response = await api.app.test_client().post(path, form=form, headers=headers)
        return response.status_code

    return asyncio.run(main())


def shared_key_headers(key_id: str, secret: str, url: str, form: dict[str, str],
                       algorithm: str = "HMAC_SHA256") -> dict[str, str]:
    signature = RequestValidator(secret).compute_signature(url, form, algorithm)
    return {"X-Twilio-Signature": signature,
            "X-Twilio-Webhooks-Signature-Settings": f"key={key_id},algorithm={algorithm}"}


@pytest.mark.parametrize("key_id", sorted(SHARED_KEYS))
@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1"])
def test_a_webhook_signed_with_a_held_shared_key_is_answered(key_id: str, algorithm: str) -> None:
    # Both keys of a rotation are valid at once.
    api = ControlApi(shared_keys=SHARED_KEYS)
    form = voice_form()
    headers = shared_key_headers(key_id, SHARED_KEYS[key_id], BASE + "/twilio/voice", form, algorithm)
    assert post_with_headers(api, "/twilio/voice", form, headers) == 200
    assert len(api.slot_requests) == 1


def test_a_shared_key_signature_is_refused_without_the_key_or_with_another_secret() -> None:
    api = ControlApi(shared_keys=SHARED_KEYS)
    form, url = voice_form(), BASE + "/twilio/voice"
    unknown = shared_key_headers("webhooks_sharedkey_gone", "whatever", url, form)
    # A header naming a key never falls back to the auth token, and the auth token never signs for a key.
    with_token = shared_key_headers("webhooks_sharedkey_new", AUTH_TOKEN, url, form)
    other_key = shared_key_headers("webhooks_sharedkey_new", SHARED_KEYS["webhooks_sharedkey_old"], url, form)
    for headers in (unknown, with_token, other_key):
        assert post_with_headers(api, "/twilio/voice", form, headers) == 403
    assert post_with_headers(api, "/twilio/voice", form, {"X-Twilio-Signature": sign(url, form)}) == 200
    assert len(api.slot_requests) == 1


@pytest.mark.parametrize("held", [SHARED_KEYS, {}], ids=["keys held", "no keys held"])
@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1"])
def test_a_header_naming_an_unknown_shared_key_signed_with_the_auth_token_is_refused(
        held: dict[str, str], algorithm: str) -> None:
    # The auth token is a valid secret, but the request said it was signed with a key this cell does
    # not hold: falling back to the auth token would let a key's revocation be bypassed.
    api = ControlApi(shared_keys=held)
    form, url = voice_form(), BASE + "/twilio/voice"
    headers = shared_key_headers("webhooks_sharedkey_unknown", AUTH_TOKEN, url, form, algorithm)
    assert post_with_headers(api, "/twilio/voice", form, headers) == 403
    assert api.slot_requests == []
    signing = TwilioSigning(AUTH_TOKEN, held)
    assert not signing.is_signed(url, form, headers["X-Twilio-Signature"], headers[
        "X-Twilio-Webhooks-Signature-Settings"])
    plain = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
    assert signing.is_signed(url, form, plain, None)  # the same token without a key header passes


def test_a_media_upgrade_signed_with_a_shared_key_is_accepted() -> None:
    secret = SHARED_KEYS["webhooks_sharedkey_new"]
    worker = Worker(CallTokenAuthority("k" * 40), {CALL_SID}, shared_keys=SHARED_KEYS)

    async def status(headers: dict[str, str]) -> int:
        async with worker.app.test_client().websocket("/media", headers=headers) as ws:
            try:
                await asyncio.wait_for(ws.receive(), 0.5)
            except WebsocketResponseError as exc:
                return exc.response.status_code
            except (TimeoutError, WebsocketDisconnectError):
                return 101  # upgraded: the worker now waits for Twilio's `start`
        return 101

    good = shared_key_headers("webhooks_sharedkey_new", secret, WORKER_URL, {})
    bad = shared_key_headers("webhooks_sharedkey_gone", secret, WORKER_URL, {})
    assert asyncio.run(status(good)) == 101
    assert asyncio.run(status(bad)) == 403


def test_shared_keys_come_from_the_environment_as_id_equals_secret() -> None:
    from cells.contract.twilio_signature import parse_shared_keys

    assert parse_shared_keys(" a=1, b = 2 ,") == {"a": "1", "b": "2"}
    assert parse_shared_keys(None) == {}
    for bad in ("a", "=x", "a=", "a=1,b"):
        with pytest.raises(ValueError, match="<key id>=<secret>"):
            parse_shared_keys(bad)


# --- GET webhooks, <Dial> legs, a slow number directory ----------------------------------------------


def test_a_number_configured_for_get_is_answered() -> None:
    api = ControlApi()
    query = urlencode(voice_form())
    url = f"{BASE}/twilio/voice?{query}"

    async def main() -> tuple[int, str]:
        response = await api.app.test_client().get(f"/twilio/voice?{query}",
                                                   headers={"X-Twilio-Signature": sign(url, {})})
        return response.status_code, await response.get_data(as_text=True)

    status, body = asyncio.run(main())
    assert status == 200 and twiml(body).find("Connect") is not None
    assert api.slot_requests[0].call_sid == CALL_SID


def test_only_a_call_we_placed_is_looked_up_by_its_from_number() -> None:
    api = ControlApi()
    # A <Dial> leg carries the parent call's caller id as From; our number is still To.
    api.post("/twilio/voice", voice_form(Direction="outbound-dial"))
    api.post("/twilio/voice", voice_form(Direction="outbound-api", From=OUR_NUMBER, To=CALLER))
    assert api.lookups == [OUR_NUMBER, OUR_NUMBER]


def test_a_number_directory_that_hangs_gets_the_busy_message_in_time() -> None:
    async def hang(number: str) -> NumberRoute | None:
        await asyncio.sleep(30)
        return None

    app = Quart(__name__)
    app.register_blueprint(twilio_voice_blueprint(
        WebhookSettings(auth_token=AUTH_TOKEN, public_base_url=BASE, lookup_timeout_s=0.2),
        tokens=CallTokenAuthority("k" * 40), lookup_number=hang, request_slot=lambda req: None))
    form = voice_form()

    async def main() -> tuple[int, str]:
        response = await app.test_client().post(
            "/twilio/voice", form=form, headers={"X-Twilio-Signature": sign(BASE + "/twilio/voice", form)})
        return response.status_code, await response.get_data(as_text=True)

    status, body = asyncio.run(asyncio.wait_for(main(), 10))
    assert status == 200 and "busy" in (twiml(body).findtext("Say") or "")
