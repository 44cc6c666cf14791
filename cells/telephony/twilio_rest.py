"""TelephonyProvider over Twilio's REST API: dial, transfer, hang up and send DTMF on a live call.

Call ids here are Twilio CallSids. The SDK is blocking (requests), so each call runs in a worker thread
with an overall deadline. `api_base_url` points the client somewhere other than https://api.twilio.com
(a regional gateway, or the local fake in tests) by setting the Api domain's base URL, the one place the
SDK builds `/2010-04-01/...` URLs from.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from cells.providers.base import (
    AudioChunk,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)
PROVIDER = "twilio"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_DIGITS = re.compile(r"[0-9*#wW]{1,64}")  # w = half-second pause, as Twilio's <Play digits> defines

T = TypeVar("T")
AudioSink = Callable[[str, AudioChunk], Awaitable[None]]


class CallNotFound(ProviderError):
    """Twilio does not know the call (20404), or it is no longer in progress (21220)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, provider=PROVIDER, retryable=False)


@dataclass(frozen=True)
class TwilioRestSettings:
    account_sid: str
    auth_token: str = field(repr=False)
    api_base_url: str | None = None  # None: https://api.twilio.com
    timeout_s: float = 10.0  # per HTTP request, and the overall deadline of one operation
    voice_url: str | None = None  # where an outbound call's answer fetches TwiML (our voice webhook)
    status_callback_url: str | None = None
    resume_url: str | None = None  # TwiML to continue with after a DTMF play (the voice webhook)


def dial_twiml(to_number: str, *, caller_id: str | None = None, timeout_s: int = 30,
               action_url: str | None = None) -> str:
    """`<Dial><Number>` TwiML: bridge the live call to a number (transfer, or an outbound leg)."""
    _check_number(to_number)
    response = VoiceResponse()
    dial = response.dial(caller_id=caller_id, timeout=timeout_s, action=action_url)
    dial.number(to_number)
    return str(response)


def play_digits_twiml(digits: str, *, then_url: str | None = None) -> str:
    """`<Play digits>` then, if given, `<Redirect>` so the call goes back to our webhook afterwards."""
    if not _DIGITS.fullmatch(digits):
        raise ProviderConfigError(f"DTMF digits must be 0-9, *, # or w, got {digits!r}", provider=PROVIDER)
    response = VoiceResponse()
    response.play(digits=digits)
    if then_url:
        response.redirect(then_url, method="POST")
    return str(response)


def _check_number(number: str) -> None:
    if not _E164.fullmatch(number):
        raise ProviderConfigError(f"{number!r} is not an E.164 phone number", provider=PROVIDER)


def _check_call_sid(call_id: str) -> None:
    if not _CALL_SID.fullmatch(call_id):
        raise ProviderConfigError(f"{call_id!r} is not a Twilio CallSid", provider=PROVIDER)


def map_twilio_error(exc: Exception, action: str) -> ProviderError:
    """A Twilio/transport failure -> our provider error, with a message that names what failed."""
    if isinstance(exc, TwilioRestException):
        what = f"twilio {action} failed: HTTP {exc.status}, code {exc.code}: {exc.msg}"
        if exc.code in (20404, 21220) or exc.status == 404:
            return CallNotFound(what)
        if exc.status in (401, 403) or exc.code == 20003:
            return ProviderConfigError(what + " (check the account sid and auth token)", provider=PROVIDER)
        if exc.status == 429 or exc.status >= 500:
            return ProviderUnavailable(what, provider=PROVIDER)
        return ProviderError(what, provider=PROVIDER, retryable=False)
    if isinstance(exc, requests.Timeout):
        return ProviderTimeout(f"twilio {action} timed out", provider=PROVIDER)
    if isinstance(exc, requests.RequestException):
        return ProviderUnavailable(f"twilio {action} failed: {type(exc).__name__}", provider=PROVIDER)
    return ProviderError(f"twilio {action} failed: {type(exc).__name__}: {exc}", provider=PROVIDER)


def make_client(account_sid: str, auth_token: str, *, api_base_url: str | None = None,
                timeout_s: float = 10.0) -> Client:
    """A Twilio REST client with a per-request timeout, optionally aimed at another API base URL."""
    client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout_s))
    if api_base_url:
        point_client_at(client, api_base_url)
    return client


def point_client_at(client: Client, api_base_url: str) -> None:
    # region/edge would rewrite the host name; an explicit base URL wins.
    client.region = None
    client.edge = None
    client.api.base_url = api_base_url.rstrip("/")


async def run_blocking(action: str, fn: Callable[[], T], timeout_s: float) -> T:
    """Run one blocking SDK call in a thread with an overall deadline; failures become ProviderErrors."""
    try:
        # The thread may outlive the deadline; requests' own timeout bounds it.
        return await asyncio.wait_for(asyncio.to_thread(fn), timeout=timeout_s + 1.0)
    except TimeoutError:
        raise ProviderTimeout(f"twilio {action} timed out", provider=PROVIDER) from None
    except Exception as exc:  # the SDK raises its own, requests' and plain errors
        err = map_twilio_error(exc, action)
        log.warning("%s", err)
        raise err from exc


class TwilioRestTelephony:
    """cells.providers.base.TelephonyProvider for Twilio.

    Audio does not travel over REST: `send_audio` forwards to `audio_sink` (the worker's media stream
    for that call) when one is given.
    """

    name = PROVIDER

    def __init__(self, settings: TwilioRestSettings, *, client: Client | None = None,
                 audio_sink: AudioSink | None = None) -> None:
        self.settings = settings
        self._audio_sink = audio_sink
        if client is None:
            client = make_client(settings.account_sid, settings.auth_token, timeout_s=settings.timeout_s)
        if settings.api_base_url:
            point_client_at(client, settings.api_base_url)
        self.client = client

    def __repr__(self) -> str:
        return f"TwilioRestTelephony(account_sid={self.settings.account_sid!r})"

    async def _run(self, action: str, fn: Callable[[], T]) -> T:
        return await run_blocking(action, fn, self.settings.timeout_s)

    async def _update(self, action: str, call_id: str, **fields: Any) -> None:
        _check_call_sid(call_id)
        await self._run(action, lambda: self.client.calls(call_id).update(**fields))
        log.info("twilio %s on call %s", action, call_id)

    async def answer(self, call_id: str) -> None:
        """Nothing to do: Twilio answers when our voice webhook returns TwiML."""

    async def dial(self, to_number: str, from_number: str, *, call_id: str | None = None) -> str:
        """Place an outbound call; when answered, Twilio fetches `voice_url` like for an inbound call."""
        _check_number(to_number)
        _check_number(from_number)
        if not self.settings.voice_url:
            raise ProviderConfigError("dialling needs TwilioRestSettings.voice_url", provider=PROVIDER)
        url = self.settings.voice_url
        if call_id:
            url += ("&" if "?" in url else "?") + f"call_id={urllib.parse.quote(call_id, safe='')}"
        kwargs: dict[str, Any] = {"to": to_number, "from_": from_number, "url": url, "method": "POST"}
        if self.settings.status_callback_url:
            kwargs |= {"status_callback": self.settings.status_callback_url, "status_callback_method": "POST",
                       "status_callback_event": ["initiated", "ringing", "answered", "completed"]}
        call = await self._run("dial", lambda: self.client.calls.create(**kwargs))
        log.info("twilio dial placed call %s", call.sid)
        return str(call.sid)

    async def send_audio(self, call_id: str, chunk: AudioChunk) -> None:
        if self._audio_sink is None:
            raise ProviderConfigError("Twilio audio goes over the media stream; no audio sink is attached",
                                      provider=PROVIDER)
        await self._audio_sink(call_id, chunk)

    async def transfer(self, call_id: str, to_number: str, *, caller_id: str | None = None) -> None:
        """Replace the call's TwiML with `<Dial>`: the media stream ends and the caller is bridged."""
        await self._update("transfer", call_id, twiml=dial_twiml(to_number, caller_id=caller_id))

    async def hangup(self, call_id: str) -> None:
        await self._update("hangup", call_id, status="completed")

    async def dtmf(self, call_id: str, digits: str) -> None:
        """Play digits into the call (e.g. an extension). This replaces the running TwiML, so the media
        stream ends; with `resume_url` set the call then goes back to our webhook for a new stream."""
        twiml = play_digits_twiml(digits, then_url=self.settings.resume_url)
        await self._update("dtmf", call_id, twiml=twiml)
