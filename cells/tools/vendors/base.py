"""What every vendor tool shares: one HTTP client per tool that turns a vendor's answer into data or a
ToolError, the idempotency key of a call, and the tool adapter that runs one operation.

Failures are results, never exceptions and never "done": a 4xx becomes `vendor_refused` with the
vendor's own message summarised (secrets cut out, at most a sentence), 401/403 `vendor_auth`, a 5xx
`vendor_error`, no answer in time `vendor_timeout`, a connection failure `vendor_unreachable`, and a
2xx whose body is not the JSON the operation expects `vendor_bad_answer`.

Idempotency: the key of a call is a hash of the call scope (`CALL_SCOPE`, the phone call's id where the
call loop sets it), the tool kind, the tool's name and its arguments. A vendor that honours an
idempotency key gets it; the others are asked before anything is created whether the thing already
exists (check-before-create), so a retried or repeated call never books twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx

from cells.tools.base import ToolAdapter, ToolError
from cells.tools.http import pinned_target

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 8.0
MESSAGE_CHARS = 200
# The phone call a tool runs for; part of every idempotency key (empty outside a call).
CALL_SCOPE: ContextVar[str] = ContextVar("autospeak_tool_call_scope", default="")


def idempotency_key(kind: str, tool: str, args: Mapping[str, Any]) -> str:
    body = json.dumps({"scope": CALL_SCOPE.get(), "kind": kind, "tool": tool, "args": dict(args)},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def summarise(text: str, secrets: tuple[str, ...]) -> str:
    """A vendor's message as the dialogue may see it: secrets cut out, one line, bounded."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = re.sub(r"\s+", " ", text).strip()
    return text[:MESSAGE_CHARS] + ("..." if len(text) > MESSAGE_CHARS else "")


def bad_answer(vendor: str, what: str) -> ToolError:
    return ToolError("vendor_bad_answer", f"{vendor} gave an answer without {what}")


@dataclass
class VendorHttp:
    """One vendor's HTTP API: base URL, auth, timeout, and how to read its error bodies."""

    vendor: str
    base_url: str
    error_message: Callable[[Any], str]  # the vendor's error body (parsed JSON) -> its message
    secrets: tuple[str, ...] = field(repr=False, default=())
    headers: Mapping[str, str] = field(repr=False, default_factory=dict)
    auth: httpx.Auth | tuple[str, str] | None = field(repr=False, default=None)
    timeout_s: float = DEFAULT_TIMEOUT_S
    allow_private: bool = False
    client: httpx.AsyncClient | None = None

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      form: Mapping[str, str] | None = None, params: Any = None,
                      headers: Mapping[str, str] | None = None) -> Any:
        """The parsed JSON of a 2xx answer; a ToolError for anything else."""
        url = self.base_url.rstrip("/") + path
        target = await pinned_target(url, self.allow_private)  # resolved once, sent to the checked address
        client = self.client or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        try:
            response = await client.request(method, target.url, json=json_body, data=form, params=params,
                                            headers={**self.headers, **(headers or {}), **target.headers},
                                            auth=self.auth, timeout=self.timeout_s,
                                            extensions=target.extensions)
        except httpx.TimeoutException:
            raise ToolError("vendor_timeout", f"{self.vendor} did not answer in time") from None
        except httpx.HTTPError as exc:
            log.warning("%s %s %s: %s", self.vendor, method, path, type(exc).__name__)
            raise ToolError("vendor_unreachable", f"{self.vendor} could not be reached") from None
        finally:
            if self.client is None:
                await client.aclose()
        return self._answer(method, path, response)

    def _answer(self, method: str, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= status < 300:
            if body is None:
                raise bad_answer(self.vendor, "a JSON body")
            return body
        log.warning("%s %s %s answered %s", self.vendor, method, path, status)
        if status >= 500:
            raise ToolError("vendor_error", f"{self.vendor} failed (HTTP {status})", status=status)
        try:
            said = self.error_message(body) if body is not None else ""
        except (KeyError, TypeError, AttributeError, IndexError):
            said = ""
        said = summarise(said or response.reason_phrase or "", self.secrets)
        code = "vendor_auth" if status in (401, 403) else "vendor_refused"
        message = f"{self.vendor} refused the request (HTTP {status})" + (f": {said}" if said else "")
        raise ToolError(code, message, status=status)


Operation = Callable[[Any, Mapping[str, Any], str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class OperationSpec:
    run: Operation  # (the vendor tool, arguments, idempotency key) -> result fields
    parameters: dict[str, Any]
    mutating: bool
    description: str


class VendorTool(ToolAdapter):
    """A record-declared tool that runs one operation of a vendor's API. Subclasses set `kind`,
    `OPERATIONS` and build their `VendorHttp` from the record's config and secrets."""

    kind: str = ""
    OPERATIONS: Mapping[str, OperationSpec] = {}

    def __init__(self, name: str, operation: str, http: VendorHttp, *, description: str = "",
                 mutating: bool = False) -> None:
        spec = self.OPERATIONS.get(operation)
        if spec is None:
            raise ValueError(f"tool {name!r}: {self.kind} has no operation {operation!r} "
                             f"(it has {', '.join(self.OPERATIONS)})")
        self.name = name
        self.operation = operation
        self.description = description or spec.description
        self.parameters = spec.parameters
        # A vendor operation that writes is always confirmed first, whatever the record says.
        self.mutating = spec.mutating or mutating
        self.http = http
        self._run = spec.run

    @classmethod
    def from_record(cls, tool: Mapping[str, Any], secrets: Callable[[str], str | None],
                    allow_private: bool) -> VendorTool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, operation={self.operation!r})"

    async def call(self, args: Mapping[str, Any]) -> dict[str, Any]:
        key = idempotency_key(self.kind, self.name, args)
        try:
            result = await self._run(self, args, key)
        except ToolError as e:
            return e.as_result()
        return {**result, "ok": True}


def http_for(tool: Mapping[str, Any], vendor: str, default_base: str, error_message: Callable[[Any], str],
             allow_private: bool, **options: Any) -> VendorHttp:
    """The vendor's client for a declared tool: `config.base_url` (a regional or test endpoint) or the
    vendor's own, and the tool's `timeout_s`."""
    config = tool.get("config") or {}
    return VendorHttp(vendor, str(config.get("base_url") or default_base), error_message,
                      timeout_s=float(tool.get("timeout_s") or DEFAULT_TIMEOUT_S),
                      allow_private=allow_private, **options)


def common(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor keywords every vendor tool takes from its record."""
    return {"description": str(tool.get("description") or ""),
            "mutating": bool(tool.get("requires_confirmation"))}


def require(config: Mapping[str, Any], key: str, tool: str, kind: str) -> Any:
    value = config.get(key)
    if value in (None, ""):
        raise ValueError(f"tool {tool!r} ({kind}) needs config.{key}")
    return value


def secret_for(name: str, tool: str, lookup: Callable[[str], str | None]) -> str:
    """A credential by the name the record gives; the record never holds the value."""
    value = lookup(name) if name else None
    if not value:
        raise ValueError(f"tool {tool!r} needs its credential {name or '(unnamed)'!r}, "
                         "which this worker does not have")
    return value
