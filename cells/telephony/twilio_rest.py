"""TelephonyProvider over Twilio's REST API: dial, transfer, hang up and send DTMF on a live call.

Call ids here are Twilio CallSids. The client, its deadline and its error mapping are the shared
`cells.contract.twilio_client` (the control plane dials with it too).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from cells.contract.twilio_client import PROVIDER, make_client, point_client_at, run_blocking
from cells.providers.base import AudioChunk, ProviderConfigError

__all__ = ["TwilioRestSettings", "TwilioRestTelephony", "dial_twiml", "play_digits_twiml", "whisper_twiml"]

log = logging.getLogger(__name__)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_DIGITS = re.compile(r"[0-9*#wW]{1,64}")  # w = half-second pause, as Twilio's <Play digits> defines

T = TypeVar("T")
AudioSink = Callable[[str, AudioChunk], Awaitable[None]]


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
               action_url: str | None = None, whisper_url: str | None = None) -> str:
    """`<Dial><Number>` TwiML: bridge the live call to a number (transfer, or an outbound leg).

    `whisper_url`: TwiML the answering person hears before the bridge (Twilio runs `<Number url>` on the
    called party's leg once they answer). `action_url`: requested (POST) when the dial ends, with
    DialCallStatus (completed, answered, busy, no-answer, failed, canceled); the caller's call then
    continues with the TwiML it returns."""
    _check_number(to_number)
    for url in (action_url, whisper_url):
        if url is not None and not url.startswith(("https://", "http://")):
            raise ProviderConfigError(f"{url!r} is not an absolute URL Twilio can request", provider=PROVIDER)
    response = VoiceResponse()
    dial = response.dial(caller_id=caller_id, timeout=timeout_s, action=action_url,
                         method="POST" if action_url else None)
    dial.number(to_number, url=whisper_url, method="POST" if whisper_url else None)
    return str(response)


def whisper_twiml(summary: str, *, language: str = "en-US") -> str:
    """`<Say>` of the transfer summary, for the person who answers; the bridge follows when it ends."""
    response = VoiceResponse()
    response.say(" ".join(summary.split())[:600], language=language)
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

    async def transfer(self, call_id: str, to_number: str, *, caller_id: str | None = None,
                       whisper_url: str | None = None, action_url: str | None = None) -> None:
        """Replace the call's TwiML with `<Dial>`: the media stream ends and the caller is bridged (after
        the person hears the whisper at `whisper_url`; `action_url` hears how the dial ended)."""
        twiml = dial_twiml(to_number, caller_id=caller_id, whisper_url=whisper_url, action_url=action_url)
        await self._update("transfer", call_id, twiml=twiml)

    async def hangup(self, call_id: str) -> None:
        await self._update("hangup", call_id, status="completed")

    async def dtmf(self, call_id: str, digits: str) -> None:
        """Play digits into the call (e.g. an extension). This replaces the running TwiML, so the media
        stream ends; with `resume_url` set the call then goes back to our webhook for a new stream."""
        twiml = play_digits_twiml(digits, then_url=self.settings.resume_url)
        await self._update("dtmf", call_id, twiml=twiml)
