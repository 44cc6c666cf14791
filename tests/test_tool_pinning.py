"""The worker's outbound tools (the `http` kind and the vendor tools) resolve a tool's host once, check
every address, and connect to the address they checked: a name whose DNS answer changes between the
check and the connection (rebinding: public when looked at, loopback when used) never reaches the
inside. The resolver is a stand-in on the event loop (httpx resolves through the same loop), answering
each lookup of a name from a list of answers, one after the other."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from cells.tools.base import ToolError
from cells.tools.http import HttpTool
from cells.tools.vendors.base import VendorHttp

PUBLIC = "93.184.216.34"  # a global address: passes the check; nothing answers it from this sandbox
SCHEMA = {"type": "object", "properties": {"day": {"type": "string"}}}


class Receiver:
    """A loopback HTTP server that records each request's path and Host header."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                receiver.seen.append((self.path, self.headers.get("Host", "")))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b'{"ok": true, "booked": "yes"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


Job = Callable[[], Awaitable[Any]]


def run_with_dns(answers: dict[str, list[str]], job: Job) -> tuple[Any, dict[str, int]]:
    """Run `job` on a loop whose resolver answers the names in `answers` one answer per lookup (the last
    one repeats) and resolves anything else for real; also the number of lookups of each name."""
    loop = asyncio.new_event_loop()
    real = loop.getaddrinfo
    lookups: dict[str, int] = {}

    async def getaddrinfo(host: Any, port: Any, **kw: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return await real(host, port, **kw)
        n = lookups.get(name, 0)
        lookups[name] = n + 1
        address = answers[name][min(n, len(answers[name]) - 1)]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(job()), lookups
    finally:
        loop.close()


def http_tool(url: str, *, allow_private: bool) -> HttpTool:
    return HttpTool("book", "", SCHEMA, url=url, secret=b"s", mutating=True, timeout_s=0.5,
                    allow_private=allow_private)


def test_a_name_rebound_to_loopback_after_the_check_is_never_reached(receiver: Receiver) -> None:
    name = "tools.rebind.test"
    tool = http_tool(f"https://{name}:{receiver.port}/book", allow_private=False)
    result, lookups = run_with_dns({name: [PUBLIC, "127.0.0.1"]}, lambda: tool.call({"day": "friday"}))
    # The request went to the public address that was checked (which does not answer here), not to a
    # second answer pointing inside.
    assert receiver.seen == [] and lookups == {name: 1}
    assert result["ok"] is False and result["error"] in ("tool_timeout", "tool_unreachable"), result


def test_a_name_that_resolves_inside_is_refused_before_any_request(receiver: Receiver) -> None:
    for answer in ("127.0.0.1", "169.254.169.254", "10.0.0.7"):
        tool = http_tool(f"https://tools.inside.test:{receiver.port}/book", allow_private=False)
        result, _ = run_with_dns({"tools.inside.test": [answer]}, lambda t=tool: t.call({"day": "friday"}))
        assert result["error"] == "tool_address_refused", (answer, result)
    assert receiver.seen == []


def test_the_request_goes_to_the_checked_address_with_the_tools_host_name(receiver: Receiver) -> None:
    """Allowed private targets (a dev stack): the first answer is loopback, any later one elsewhere; the
    call arrives, so it used the first answer, and the receiver sees the URL's own host name."""
    name = "shop.pinned.test"
    tool = http_tool(f"http://{name}:{receiver.port}/book", allow_private=True)
    result, lookups = run_with_dns({name: ["127.0.0.1", "10.255.255.1"]},
                                   lambda: tool.call({"day": "friday"}))
    assert result == {"ok": True, "booked": "yes"} and lookups == {name: 1}
    assert receiver.seen == [("/book", f"{name}:{receiver.port}")]


def vendor(base_url: str, *, allow_private: bool) -> VendorHttp:
    return VendorHttp("Shop", base_url, lambda body: str(body), timeout_s=0.5, allow_private=allow_private)


def test_vendor_tools_are_pinned_too(receiver: Receiver) -> None:
    name = "api.vendor.test"
    rebound = vendor(f"https://{name}:{receiver.port}", allow_private=False)
    with pytest.raises(ToolError) as refused:
        run_with_dns({name: [PUBLIC, "127.0.0.1"]}, lambda: rebound.request("GET", "/slots"))
    assert refused.value.code in ("vendor_timeout", "vendor_unreachable") and receiver.seen == []
    pinned = vendor(f"http://{name}:{receiver.port}", allow_private=True)
    body, lookups = run_with_dns({name: ["127.0.0.1", "10.255.255.1"]},
                                 lambda: pinned.request("GET", "/slots"))
    assert body == {"ok": True, "booked": "yes"} and lookups == {name: 1}
    assert receiver.seen == [("/slots", f"{name}:{receiver.port}")]
