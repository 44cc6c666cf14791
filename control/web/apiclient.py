"""The console asks the cell's own API, in process, with the signed-in token.

Every read and write of the console goes through the same route, guard, tenant scope, validation and
audit as an API client's request (no query is written twice); only the transport is local: an ASGI
call into the running app, with no socket and no second server.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from quart import current_app


@dataclass(frozen=True, slots=True)
class ApiReply:
    status: int
    body: Any
    content_type: str
    data: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def problem(self) -> str:
        """The API's own explanation of a refusal (its problem+json detail and field errors)."""
        if isinstance(self.body, dict):
            detail = str(self.body.get("detail") or self.body.get("title") or "")
            errors = self.body.get("errors")
            if isinstance(errors, list) and errors:
                parts = [f"{e.get('path', '')}: {e.get('message', '')}"
                         for e in errors[:5] if isinstance(e, dict)]
                detail = "; ".join(parts) or detail
            if detail:
                return detail
        return f"The request was refused ({self.status})."


class TenantApi:
    """The API of one tenant, as the signed-in token sees it."""

    def __init__(self, token: str, tenant_id: uuid.UUID) -> None:
        self._token = token
        self.prefix = f"/v1/tenants/{tenant_id}"

    async def call(self, method: str, rest: str = "", *, params: dict[str, Any] | None = None,
                   json_body: Any = None, idempotency_key: str | None = None) -> ApiReply:
        transport = httpx.ASGITransport(app=current_app)  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {self._token}"}
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        # A create form carries a key drawn when the form was shown: posting it twice creates once.
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        async with httpx.AsyncClient(transport=transport, base_url="http://console.local") as client:
            resp = await client.request(method, self.prefix + rest, params=query, headers=headers,
                                        json=json_body)
        body: Any = None
        if "json" in resp.headers.get("content-type", ""):
            try:
                body = json.loads(resp.content)
            except ValueError:
                body = None
        return ApiReply(resp.status_code, body, resp.headers.get("content-type", ""), resp.content)

    async def get(self, rest: str = "", **params: Any) -> ApiReply:
        return await self.call("GET", rest, params=params)
