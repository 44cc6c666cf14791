"""The Twilio REST client both planes use: the control plane places outbound calls with it, a
worker's telephony provider transfers, hangs up and plays DTMF. The SDK is blocking (requests), so
each request runs in a thread with an overall deadline, and failures become provider errors (the
control plane's dialer tells a retryable one from a refusal by `ProviderError.retryable`).
`api_base_url` points the client somewhere other than https://api.twilio.com (a regional gateway, or
the local fake in tests) by setting the Api domain's base URL, the one place the SDK builds
`/2010-04-01/...` URLs from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from cells.providers.base import ProviderConfigError, ProviderError, ProviderTimeout, ProviderUnavailable

# ProviderError is what these functions raise; published here so that the control plane catches it
# through the contract.
__all__ = ["PROVIDER", "CallNotFound", "ProviderError", "make_client", "map_twilio_error", "point_client_at",
           "run_blocking"]

log = logging.getLogger(__name__)
PROVIDER = "twilio"
T = TypeVar("T")


class CallNotFound(ProviderError):
    """Twilio does not know the call (20404), or it is no longer in progress (21220)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, provider=PROVIDER, retryable=False)


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
