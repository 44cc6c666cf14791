"""The `twilio_sms` tool kind against a local server speaking Twilio's Messages API: the record's
template filled from the arguments, sent once however often the call is retried, and every failure
`ok: false` with the auth token nowhere in it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from vendor_fakes.twilio_messages_fake import ACCOUNT_SID, AUTH_TOKEN, FROM, FakeTwilioMessages

from cells.tools.base import ToolRegistry
from cells.tools.vendors import build_vendor_tool

TEMPLATE = "Bright Smile Dental: you're booked for {day} at {time}. Reply STOP to opt out."
ARGS = {"to": "+447700900123", "day": "Thursday 5 March", "time": "11:00"}


def record(url: str, **config: Any) -> dict[str, Any]:
    return {"name": "text_confirmation", "kind": "twilio_sms", "secret": "twilio_token", "timeout_s": 1.0,
            "config": {"base_url": url, "account_sid": ACCOUNT_SID, "from_number": FROM, "template": TEMPLATE,
                       **config}}


def tools(url: str, token: str = AUTH_TOKEN, **config: Any) -> ToolRegistry:
    return ToolRegistry([build_vendor_tool(record(url, **config), {"twilio_token": token}.get, True)])


def run(body: Callable[[FakeTwilioMessages], Awaitable[None]]) -> None:
    async def main() -> None:
        async with FakeTwilioMessages() as server:
            await body(server)  # type: ignore[arg-type]
    asyncio.run(main())


async def send(registry: ToolRegistry, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return await registry.call("text_confirmation", args or ARGS, confirmed=True)


def test_the_text_is_the_records_template_sent_form_encoded_from_the_tenants_number() -> None:
    async def body(tw: FakeTwilioMessages) -> None:
        result = await send(tools(tw.url))
        assert result["ok"] is True and result["already_sent"] is False and result["status"] == "queued"
        assert re.fullmatch(r"SM[0-9a-f]{32}", result["message_sid"]) and result["to"] == ARGS["to"]
        assert tw.forms == [{"To": "+447700900123", "From": FROM,
                             "Body": "Bright Smile Dental: you're booked for Thursday 5 March at 11:00. "
                                     "Reply STOP to opt out."}]
        service = tools(tw.url, messaging_service_sid="MG" + "2" * 32)
        via_service = await send(service, {**ARGS, "time": "12:00"})
        assert via_service["ok"] is True
        assert "From" not in tw.forms[1] and tw.forms[1]["MessagingServiceSid"] == "MG" + "2" * 32
    run(body)


def test_a_retry_after_a_lost_answer_does_not_text_twice() -> None:
    async def body(tw: FakeTwilioMessages) -> None:
        registry = tools(tw.url)
        tw.fail_next("POST", "/2010-04-01/", "lost")
        lost = await send(registry)
        assert lost["ok"] is False and lost["error"] == "vendor_error"
        again = await send(registry)
        assert again["ok"] is True and again["already_sent"] is True
        assert again["message_sid"] == tw.messages[0]["sid"]
        assert (await send(registry))["already_sent"] is True
        assert len(tw.messages) == 1
        other = await send(registry, {**ARGS, "time": "14:00"})  # a different confirmation is sent
        assert other["already_sent"] is False and len(tw.messages) == 2
    run(body)


def test_a_text_that_failed_before_is_sent_again() -> None:
    async def body(tw: FakeTwilioMessages) -> None:
        registry = tools(tw.url)
        await send(registry)
        tw.messages[0]["status"] = "undelivered"
        result = await send(registry)
        assert result["ok"] is True and result["already_sent"] is False and len(tw.messages) == 2
    run(body)


@pytest.mark.parametrize(("method", "mode", "status", "error"), [
    ("POST", "status", 400, "vendor_refused"), ("POST", "status", 500, "vendor_error"),
    ("POST", "hang", 0, "vendor_timeout"), ("POST", "garbage", 0, "vendor_bad_answer"),
    ("GET", "status", 503, "vendor_error"), ("GET", "garbage", 0, "vendor_bad_answer")])
def test_every_failure_is_a_result_that_says_so_and_sends_nothing(method: str, mode: str, status: int,
                                                                  error: str) -> None:
    async def body(tw: FakeTwilioMessages) -> None:
        tw.fail_next(method, "/2010-04-01/", mode, status, message=f"The 'To' number is odd ({AUTH_TOKEN})")
        result = await send(tools(tw.url))
        assert result["ok"] is False and result["error"] == error, result
        assert AUTH_TOKEN not in json.dumps(result) and tw.messages == []
        if error == "vendor_refused":
            assert result["message"].endswith("The 'To' number is odd ([redacted]) (Twilio error 21211)")
    run(body)


def test_a_wrong_token_is_an_auth_failure_and_bad_arguments_never_reach_twilio() -> None:
    async def body(tw: FakeTwilioMessages) -> None:
        wrong = await send(tools(tw.url, token="old-token"))
        assert wrong["ok"] is False and wrong["error"] == "vendor_auth"
        assert "Twilio error 20003" in wrong["message"]
        seen = len(tw.seen)
        registry = tools(tw.url)
        assert registry.is_mutating("text_confirmation")
        for bad in ({**ARGS, "to": "07700 900123"}, {"to": ARGS["to"], "day": "Thursday"},
                    {**ARGS, "body": "Send me your card number"}):
            result = await send(registry, bad)
            assert result["ok"] is False and result["error"] in ("invalid_argument", "missing_argument",
                                                                 "unknown_argument"), result
        assert len(tw.seen) == seen and tw.messages == []
    run(body)


@pytest.mark.parametrize(("config", "message"), [
    ({"template": ""}, "config.template"), ({"from_number": ""}, "config.from_number"),
    ({"account_sid": None}, "config.account_sid"), ({"template": "Booked {0}"}, "plain names")])
def test_a_record_that_cannot_run_is_refused_when_built(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_vendor_tool(record("http://127.0.0.1:9", **config), {"twilio_token": AUTH_TOKEN}.get, True)
