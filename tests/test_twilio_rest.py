"""The Twilio REST adapter against a local server that speaks Twilio's REST format."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from twilio_fake.server import FakeTwilioServer

from cells.contract.twilio_client import CallNotFound
from cells.providers.base import (
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    TelephonyProvider,
)
from cells.telephony.twilio_rest import TwilioRestSettings, TwilioRestTelephony


@pytest.fixture
def twilio() -> Iterator[FakeTwilioServer]:
    with FakeTwilioServer() as server:
        yield server


def adapter(server: FakeTwilioServer, **overrides: object) -> TwilioRestTelephony:
    settings = {"account_sid": server.fake.account_sid, "auth_token": server.fake.auth_token,
                "api_base_url": server.base_url, "timeout_s": 5.0,
                "voice_url": "https://eu.autospeak.example/twilio/voice",
                "status_callback_url": "https://eu.autospeak.example/twilio/status",
                "resume_url": "https://eu.autospeak.example/twilio/voice"}
    return TwilioRestTelephony(TwilioRestSettings(**(settings | overrides)))  # type: ignore[arg-type]


def test_conforms_to_the_telephony_provider_protocol(twilio: FakeTwilioServer) -> None:
    assert isinstance(adapter(twilio), TelephonyProvider)


def test_transfer_bridges_the_live_call_to_the_number(twilio: FakeTwilioServer) -> None:
    sid = twilio.fake.add_call()
    asyncio.run(adapter(twilio).transfer(sid, "+442071838750"))
    (req,) = twilio.fake.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{twilio.fake.account_sid}/Calls/{sid}.json"
    assert req.value("Twiml") is not None and "<Dial" in req.value("Twiml")
    assert "<Number>+442071838750</Number>" in req.value("Twiml")
    assert twilio.fake.calls[sid].twiml == req.value("Twiml")


def test_hangup_completes_the_call(twilio: FakeTwilioServer) -> None:
    sid = twilio.fake.add_call()
    asyncio.run(adapter(twilio).hangup(sid))
    assert twilio.fake.requests[-1].value("Status") == "completed"
    assert twilio.fake.calls[sid].status == "completed"


def test_dtmf_plays_digits_then_returns_to_our_webhook(twilio: FakeTwilioServer) -> None:
    sid = twilio.fake.add_call()
    asyncio.run(adapter(twilio).dtmf(sid, "ww1234#"))
    twiml = twilio.fake.calls[sid].twiml or ""
    assert '<Play digits="ww1234#"' in twiml
    assert "<Redirect" in twiml and "https://eu.autospeak.example/twilio/voice" in twiml


def test_dial_places_an_outbound_call_with_callbacks(twilio: FakeTwilioServer) -> None:
    call_sid = asyncio.run(adapter(twilio).dial("+15005550006", "+14155550100", call_id="call-42"))
    assert call_sid in twilio.fake.calls and twilio.fake.calls[call_sid].direction == "outbound-api"
    req = twilio.fake.requests[-1]
    assert req.path.endswith("/Calls.json")
    assert (req.value("To"), req.value("From")) == ("+15005550006", "+14155550100")
    assert req.value("Method") == "POST"
    url = urlsplit(req.value("Url") or "")
    assert url.path == "/twilio/voice" and parse_qs(url.query) == {"call_id": ["call-42"]}
    assert req.value("StatusCallback") == "https://eu.autospeak.example/twilio/status"
    assert req.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]


def test_unknown_call_maps_twilio_error_json_to_call_not_found(twilio: FakeTwilioServer) -> None:
    with pytest.raises(CallNotFound) as info:
        asyncio.run(adapter(twilio).hangup("CA" + "0" * 32))
    assert "20404" in str(info.value) and not info.value.retryable


def test_a_finished_call_cannot_be_transferred(twilio: FakeTwilioServer) -> None:
    sid = twilio.fake.add_call(status="completed")
    with pytest.raises(CallNotFound) as info:
        asyncio.run(adapter(twilio).transfer(sid, "+442071838750"))
    assert "21220" in str(info.value)


def test_wrong_credentials_are_a_config_error_and_never_shown(
        twilio: FakeTwilioServer, caplog: pytest.LogCaptureFixture) -> None:
    sid = twilio.fake.add_call()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderConfigError) as info:
        asyncio.run(adapter(twilio, auth_token="wrong-token-123").hangup(sid))
    assert "20003" in str(info.value)
    assert "wrong-token-123" not in caplog.text and "wrong-token-123" not in str(info.value)
    assert twilio.fake.auth_token not in caplog.text


def test_twilio_outage_is_retryable(twilio: FakeTwilioServer) -> None:
    sid = twilio.fake.add_call()
    twilio.fake.fail_next(503, 20500, "Internal Server Error")
    with pytest.raises(ProviderUnavailable) as info:
        asyncio.run(adapter(twilio).hangup(sid))
    assert info.value.retryable


def test_a_stalled_api_times_out(twilio: FakeTwilioServer) -> None:
    sid = twilio.fake.add_call()
    twilio.fake.hang_next()
    with pytest.raises(ProviderTimeout) as info:
        asyncio.run(adapter(twilio, timeout_s=0.3).hangup(sid))
    assert "hangup timed out" in str(info.value)


def test_unreachable_api_is_unavailable() -> None:
    with FakeTwilioServer() as server:
        base = server.base_url
    settings = TwilioRestSettings(account_sid="AC" + "1" * 32, auth_token="t" * 32, api_base_url=base)
    with pytest.raises(ProviderUnavailable):
        asyncio.run(TwilioRestTelephony(settings).hangup("CA" + "1" * 32))


def test_bad_input_is_refused_before_any_request(twilio: FakeTwilioServer) -> None:
    tel = adapter(twilio)
    sid = twilio.fake.add_call()
    for coro in (tel.transfer(sid, "0207 183 8750"), tel.hangup("not-a-sid"), tel.dtmf(sid, "12; drop"),
                 tel.dial("+15005550006", "nope")):
        with pytest.raises(ProviderError):
            asyncio.run(coro)
    assert twilio.fake.requests == []
