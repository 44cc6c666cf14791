"""A local stand-in for Twilio's Messages API (2010-04-01), speaking its wire format: HTTP Basic with
the account SID and auth token, form-encoded creates, message JSON with an `SM` sid, lists newest
first under `messages`, and `{"code", "message", "more_info", "status"}` errors."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from aiohttp import web

from .scripted import ScriptedFake

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "twilio-token-9c2b7a61e4d0f358"
FROM = "+15005550006"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


class FakeTwilioMessages(ScriptedFake):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []  # newest last
        self.forms: list[dict[str, str]] = []

    def error_body(self, status: int, message: str) -> Any:
        return _error(20500 if status >= 500 else 21211, message, status)

    def add_routes(self, app: web.Application) -> None:
        path = "/2010-04-01/Accounts/{sid}/Messages.json"
        app.router.add_post(path, self.create)
        app.router.add_get(path, self.list_messages)

    def _refuse(self, request: web.Request) -> web.Response | None:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected or request.match_info["sid"] != ACCOUNT_SID:
            return web.json_response(_error(20003, "Authenticate", 401), status=401)
        return None

    async def create(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        form = {k: str(v) for k, v in (await request.post()).items()}
        to = form.get("To", "")
        if not _E164.fullmatch(to):
            return web.json_response(_error(21211, f"The 'To' number {to} is not a valid phone number.", 400),
                                     status=400)
        if not form.get("Body"):
            return web.json_response(_error(21602, "Message body is required.", 400), status=400)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return web.json_response(_error(21603, "A 'From' phone number is required.", 400), status=400)
        self.forms.append(form)
        sid = "SM" + secrets.token_hex(16)
        message = {"sid": sid, "account_sid": ACCOUNT_SID, "to": to, "from": form.get("From"),
                   "messaging_service_sid": form.get("MessagingServiceSid"), "body": form["Body"],
                   "status": "queued", "num_segments": "1", "direction": "outbound-api",
                   "date_sent": None, "date_created": "Mon, 02 Mar 2026 09:00:00 +0000",
                   "error_code": None, "error_message": None, "api_version": "2010-04-01",
                   "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"}
        self.messages.append(message)
        return web.json_response(message, status=201)

    async def list_messages(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        q = request.query
        found = [m for m in reversed(self.messages)
                 if m["to"] == q.get("To", m["to"]) and m["from"] == q.get("From", m["from"])]
        size = int(q.get("PageSize", 50))
        return web.json_response({"messages": found[:size], "page": 0, "page_size": size,
                                  "next_page_uri": None, "uri": request.path_qs})
