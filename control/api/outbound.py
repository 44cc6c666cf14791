"""Placing outbound calls: the `Dialer` the control API asks, and its Twilio implementation.

The API decides whether a call may be placed (agent, caller id, consent); the dialer only asks the
carrier to ring `to` from `from_`. When the callee answers, the carrier fetches `voice_url` (our
voice webhook, which carries our call id) exactly as for an inbound call, so both directions share
one path from there on.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

from twilio.rest import Client

from cells.contract.twilio_client import ProviderError, make_client, run_blocking

# Every progress step, so that the call row follows the carrier from queued to completed.
STATUS_EVENTS: Final = ("initiated", "ringing", "answered", "completed")


class DialError(Exception):
    """The carrier did not accept the call. The message is safe to show to the API client."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Dialer(Protocol):
    async def dial(self, *, to: str, from_: str, voice_url: str, status_url: str) -> str:
        """Ask the carrier to place the call; return its call id (Twilio: the CallSid).

        Raises DialError when the carrier refuses or cannot be reached.
        """
        ...


class TwilioDialer:
    """Dialer over Twilio's Calls resource (`POST /2010-04-01/Accounts/<sid>/Calls.json`)."""

    def __init__(self, *, account_sid: str, auth_token: str, api_base_url: str | None = None,
                 timeout_s: float = 10.0, client: Client | None = None) -> None:
        self.account_sid = account_sid
        self.timeout_s = timeout_s
        self._client = client or make_client(account_sid, auth_token, api_base_url=api_base_url,
                                             timeout_s=timeout_s)

    def __repr__(self) -> str:  # never the auth token
        return f"TwilioDialer(account_sid={self.account_sid!r})"

    async def dial(self, *, to: str, from_: str, voice_url: str, status_url: str) -> str:
        def create() -> str:
            call = self._client.calls.create(
                to=to, from_=from_, url=voice_url, method="POST",
                status_callback=status_url, status_callback_method="POST",
                status_callback_event=list(STATUS_EVENTS))
            return str(call.sid)

        try:
            return await run_blocking("dial", create, self.timeout_s)
        except ProviderError as exc:
            raise DialError(str(exc), retryable=exc.retryable) from exc
