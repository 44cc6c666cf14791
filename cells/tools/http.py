"""The `http` tool kind: a tool an agent record declares with a URL, run as a signed JSON POST.

The body is `{"tool": name, "arguments": {...}}`; the request carries
`X-AutoSpeak-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the agent's secret
(named in the record, resolved by the worker, never stored in the record), and an `Idempotency-Key`
derived from the tool and its arguments, so a retried request books once on a receiver that honours it.

The result the dialogue sees is `{"ok": true, ...the JSON object the receiver answered}` on a 2xx, and
`{"ok": false, "error": ...}` on a 4xx or 5xx, a timeout, an unreachable or refused address, or an
answer that is not a JSON object (or says `"ok": false`): a failed tool is never reported as done.
Private, loopback and link-local addresses are refused unless the agent's environment allows them
(the embedded stack and tests, whose receivers listen on loopback); the host is resolved once and the
request goes to the address that was checked (cells.contract.netguard), never to a second DNS answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from cells.contract.netguard import PinnedTarget, UnsafeWebhookTarget, pin_to_address, resolve_public
from cells.tools.base import ToolAdapter, ToolError

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-AutoSpeak-Signature"
DEFAULT_TIMEOUT_S = 5.0


def sign(secret: bytes, body: bytes, at: int) -> str:
    mac = hmac.new(secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, now: float, tolerance_s: float = 300.0) -> bool:
    """A receiver's check of `SIGNATURE_HEADER` (for tool servers written in Python, and the tests)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        at = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, at), header)


async def pinned_target(url: str, allow_private: bool) -> PinnedTarget:
    """Where to send a request to `url`: its host resolved once, every address checked (none may be
    loopback, private, link-local or reserved unless allowed), and the request aimed at the first
    checked address with the URL's host name kept for the Host header and TLS. Connecting to that
    address, not to a second DNS answer, is what keeps a name re-pointed inside (rebinding) out."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError("tool_misconfigured", "the tool's URL is not an http(s) URL")
    if parts.scheme == "http" and not allow_private:
        raise ToolError("tool_address_refused", "the tool's URL must use https")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await resolve_public(parts.hostname, port, allow_private=allow_private)
    except UnsafeWebhookTarget:
        raise ToolError("tool_address_refused", "the tool's host is not a public address") from None
    except (OSError, ValueError) as exc:  # no such name, or a port outside 0-65535
        raise ToolError("tool_unreachable", "the tool's host does not resolve") from exc
    return pin_to_address(url, addresses[0])


class HttpTool(ToolAdapter):
    """A record-declared tool that POSTs its arguments to the tool's URL."""

    def __init__(self, name: str, description: str, parameters: dict[str, Any], *, url: str,
                 secret: bytes, mutating: bool, timeout_s: float = DEFAULT_TIMEOUT_S,
                 allow_private: bool = False, client: httpx.AsyncClient | None = None) -> None:
        if not secret:
            raise ValueError(f"tool {name!r} has no signing secret")
        self.name = name
        self.description = description
        self.parameters = parameters
        self.mutating = mutating
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self._client = client

    def _request(self, args: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"tool": self.name, "arguments": dict(args)}, sort_keys=True,
                          separators=(",", ":")).encode()
        key = hashlib.sha256(self.name.encode() + b"\0" + body).hexdigest()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   SIGNATURE_HEADER: sign(self._secret, body, int(time.time()))}
        return body, headers

    async def call(self, args: Mapping[str, Any]) -> dict[str, Any]:
        try:
            target = await pinned_target(self.url, self.allow_private)
            body, headers = self._request(args)
            client = self._client or httpx.AsyncClient(follow_redirects=False, trust_env=False)
            try:
                request = client.build_request("POST", target.url, content=body,
                                               headers={**headers, **target.headers},
                                               extensions=target.extensions, timeout=self.timeout_s)
                response = await client.send(request)
            finally:
                if self._client is None:
                    await client.aclose()
        except ToolError as e:
            return e.as_result()
        except httpx.TimeoutException:
            return {"ok": False, "error": "tool_timeout", "message": f"{self.name} did not answer in time"}
        except httpx.HTTPError as exc:
            log.warning("tool %s: %s", self.name, type(exc).__name__)
            return {"ok": False, "error": "tool_unreachable", "message": f"{self.name} could not be reached"}
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        if not 200 <= response.status_code < 300:
            return {"ok": False, "error": "tool_http_error", "status": response.status_code,
                    "message": f"{self.name} answered {response.status_code}"}
        try:
            value = response.json()
        except ValueError:
            value = None
        if not isinstance(value, dict):
            return {"ok": False, "error": "tool_bad_answer", "message": f"{self.name} did not answer JSON"}
        if value.get("ok") is False:
            return {**value, "ok": False, "error": str(value.get("error") or "tool_refused")}
        return {**value, "ok": True}
