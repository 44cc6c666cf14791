"""A local stand-in for Twilio's REST API (the Calls resource), speaking Twilio's wire format.

It is a double of the vendor, not of our code: form-encoded requests with HTTP basic auth (AccountSid,
AuthToken), Twilio-shaped call JSON, and Twilio-shaped error JSON (code, message, more_info, status).
Every request is recorded for assertions.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/2010-04-01"
_TERMINAL = {"completed", "canceled", "failed", "busy", "no-answer"}
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass
class RecordedRequest:
    method: str
    path: str
    form: dict[str, list[str]]
    headers: dict[str, str]

    def value(self, key: str) -> str | None:
        values = self.form.get(key)
        return values[-1] if values else None


@dataclass
class FakeCall:
    sid: str
    to: str
    from_: str
    status: str = "in-progress"
    direction: str = "inbound"
    twiml: str | None = None
    url: str | None = None
    method: str | None = None
    status_callback: str | None = None
    status_callback_method: str | None = None
    status_callback_events: list[str] = field(default_factory=list)

    def as_json(self, account_sid: str) -> dict[str, Any]:
        return {
            "sid": self.sid, "account_sid": account_sid, "to": self.to, "from": self.from_,
            "status": self.status, "direction": self.direction, "api_version": "2010-04-01",
            "date_created": "Tue, 01 Jul 2025 10:00:00 +0000", "price_unit": "USD",
            "uri": f"{API}/Accounts/{account_sid}/Calls/{self.sid}.json",
        }


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "0" * 31 + "1"
    auth_token: str = "fake-auth-token-" + "x" * 16
    calls: dict[str, FakeCall] = field(default_factory=dict)
    # The account's own numbers; when any are set, a call must come from one of them (as on Twilio).
    numbers: set[str] = field(default_factory=set)
    requests: list[RecordedRequest] = field(default_factory=list)
    _next_failure: tuple[int, int, str] | None = None
    _hang_next: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_call(self, status: str = "in-progress", to: str = "+15005550006",
                 from_: str = "+14155550100") -> str:
        sid = "CA" + secrets.token_hex(16)
        self.calls[sid] = FakeCall(sid=sid, to=to, from_=from_, status=status)
        return sid

    def fail_next(self, status: int, code: int, message: str) -> None:
        """The next authenticated request gets this Twilio error (e.g. 503 / 20500)."""
        self._next_failure = (status, code, message)

    def hang_next(self) -> None:
        """The next request gets no answer until the server stops (a stalled API)."""
        self._hang_next = True

    def handle(self, method: str, path: str, auth: str | None, form: dict[str, list[str]]
               ) -> tuple[int, dict[str, Any]]:
        if self._hang_next:
            self._hang_next = False
            self.released.wait(timeout=30)
        with self._lock:
            return self._handle(method, path, auth, form)

    def _handle(self, method: str, path: str, auth: str | None, form: dict[str, list[str]]
                ) -> tuple[int, dict[str, Any]]:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if auth != expected:
            return error(401, 20003, "Authenticate")
        if self._next_failure:
            (status, code, message), self._next_failure = self._next_failure, None
            return error(status, code, message)
        prefix = f"{API}/Accounts/{self.account_sid}/Calls"
        if path == prefix + ".json" and method == "POST":
            return self._create(form)
        if path.startswith(prefix + "/") and path.endswith(".json"):
            call = self.calls.get(path[len(prefix) + 1: -len(".json")])
            if call is None:
                return error(404, 20404, f"The requested resource {path} was not found")
            if method == "GET":
                return 200, call.as_json(self.account_sid)
            if method == "POST":
                return self._update(call, form)
        return error(404, 20404, f"The requested resource {path} was not found")

    def _create(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        # Twilio's checks and error codes for POST .../Calls.json, in Twilio's order.
        to, from_ = _one(form, "To"), _one(form, "From")
        if not to:
            return error(400, 21201, "No 'To' number is specified")
        if not from_:
            return error(400, 21213, "No 'From' number is specified")
        if not _E164.fullmatch(to):
            return error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not _E164.fullmatch(from_):
            return error(400, 21212, f"Invalid From Number (caller ID): {from_}")
        if self.numbers and from_ not in self.numbers:
            return error(400, 21210, f"The source phone number provided, {from_}, is not yet verified for "
                                     "your account.")
        if not (_one(form, "Url") or _one(form, "Twiml") or _one(form, "ApplicationSid")):
            return error(400, 21205, "Url parameter is required")
        events = form.get("StatusCallbackEvent", [])
        sid = "CA" + secrets.token_hex(16)
        call = FakeCall(sid=sid, to=to, from_=from_, status="queued", direction="outbound-api",
                        url=_one(form, "Url"), twiml=_one(form, "Twiml"), method=_one(form, "Method"),
                        status_callback=_one(form, "StatusCallback"),
                        status_callback_method=_one(form, "StatusCallbackMethod"),
                        status_callback_events=list(events))
        self.calls[sid] = call
        return 201, call.as_json(self.account_sid)

    def _update(self, call: FakeCall, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        status, twiml, url = _one(form, "Status"), _one(form, "Twiml"), _one(form, "Url")
        if call.status in _TERMINAL:
            return error(400, 21220, "Call is not in-progress. Cannot redirect.")
        if status is not None:
            if status not in ("completed", "canceled"):
                return error(400, 21218, f"Invalid value '{status}' for Status")
            call.status = status
        if twiml is not None or url is not None:
            call.twiml, call.url = twiml, url
        return 200, call.as_json(self.account_sid)


def error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status}


def _one(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[-1] if values else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        form = parse_qs(body, keep_blank_values=True)
        path = urlsplit(self.path).path
        fake = self.server.fake
        fake.requests.append(RecordedRequest(self.command, path, form, dict(self.headers.items())))
        status, payload = fake.handle(self.command, path, self.headers.get("Authorization"), form)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeTwilio) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class FakeTwilioServer:
    """Runs a FakeTwilio on a free local port: `with FakeTwilioServer() as srv: srv.base_url`."""

    def __init__(self, fake: FakeTwilio | None = None) -> None:
        self.fake = fake or FakeTwilio()
        self._server = _Server(self.fake)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="fake-twilio", daemon=True)

    @property
    def base_url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> FakeTwilioServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
