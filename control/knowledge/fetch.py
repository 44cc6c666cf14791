"""Fetch a document from a tenant-given URL under the webhooks' SSRF guard (control.api.netguard).

Every hop (the URL and each redirect) is checked before it is requested: http or https only, no
credentials in the URL, a host that is not plainly internal, and every address its name resolves to
public (loopback, private, link-local and metadata addresses refused) unless the operator allows
private targets. The connection goes to the checked address, never to a second DNS answer. Redirects
are followed by hand (at most `max_redirects`), the body is read up to `max_bytes`, and the whole
fetch has one deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from control.api.netguard import UnsafeWebhookTarget, check_webhook_url, pin_to_address, resolve_public

Resolver = Callable[..., Awaitable[list[str]]]

_TYPES: Final = {
    "text/plain": "text/plain", "text/markdown": "text/markdown", "text/x-markdown": "text/markdown",
    "text/html": "text/html", "application/xhtml+xml": "text/html", "text/csv": "text/csv",
    "application/pdf": "application/pdf",
}


class FetchError(ValueError):
    """The URL was refused or could not be fetched; the message is safe to show the tenant."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str
    url: str


def check_fetch_url(url: str, *, allow_private: bool) -> None:
    """The webhook URL rules, except that plain http is allowed: a fetch sends nothing secret."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError("the URL must be http or https")
    try:
        # netguard's host rules, applied to the https form of the URL.
        check_webhook_url(urlunsplit(parts._replace(scheme="https")), allow_private=allow_private)
    except UnsafeWebhookTarget as exc:
        raise FetchError(str(exc)) from None


async def _one_hop(client: httpx.AsyncClient, url: str, allow_private: bool,
                   resolve: Resolver) -> httpx.Response:
    check_fetch_url(url, allow_private=allow_private)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(parts.hostname or "", port, allow_private=allow_private)
    except UnsafeWebhookTarget as exc:
        raise FetchError(str(exc)) from None
    except OSError:
        raise FetchError("the URL's host name does not resolve") from None
    target = pin_to_address(url, addresses[0])
    request = client.build_request("GET", target.url, headers={**target.headers, "accept": ", ".join(_TYPES)},
                                   extensions=target.extensions)
    return await client.send(request, stream=True)


async def _read(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"the document is larger than {max_bytes} bytes")
    body = bytearray()
    async for piece in response.aiter_bytes():
        body += piece
        if len(body) > max_bytes:
            raise FetchError(f"the document is larger than {max_bytes} bytes")
    return bytes(body)


async def _fetch(url: str, allow_private: bool, max_bytes: int, max_redirects: int,
                 resolve: Resolver) -> Fetched:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        for _ in range(max_redirects + 1):
            response = await _one_hop(client, url, allow_private, resolve)
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    if not location:
                        raise FetchError("a redirect without a Location")
                    url = urljoin(url, location)
                    continue  # the next hop is checked like the first
                if response.status_code != 200:
                    raise FetchError(f"the URL answered HTTP {response.status_code}")
                mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if mime not in _TYPES:
                    raise FetchError(f"the URL's content type {mime or '(none)'!r} is not a supported "
                                     "document type")
                return Fetched(await _read(response, max_bytes), _TYPES[mime], url)
            finally:
                await response.aclose()
    raise FetchError(f"more than {max_redirects} redirects")


async def fetch_document(url: str, *, allow_private: bool, max_bytes: int, timeout_s: float,
                         max_redirects: int = 3, resolve: Resolver = resolve_public) -> Fetched:
    try:
        async with asyncio.timeout(timeout_s):
            return await _fetch(url, allow_private, max_bytes, max_redirects, resolve)
    except TimeoutError:
        raise FetchError(f"the URL did not answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"the URL could not be fetched ({type(exc).__name__})") from None
