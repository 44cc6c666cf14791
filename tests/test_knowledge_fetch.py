"""URL fetches for knowledge uploads: each hop passes the SSRF guard, so a public name that redirects
inside the network is refused; size, type, redirect-count and time limits hold."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from knowledge_fixtures import http_server

from control.api.netguard import resolve_public
from control.knowledge.fetch import FetchError, fetch_document


def public_name_at(port_host: str) -> Any:
    """A resolver that answers `docs.example.com` with the loopback test server (standing in for a
    public host) and checks every other name with the real guard."""

    async def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
        if host == "docs.example.com":
            return [port_host]
        return await resolve_public(host, port, allow_private=allow_private)

    return resolve


def fetch(url: str, port_host: str = "127.0.0.1", **kw: Any) -> Any:
    args = {"allow_private": False, "max_bytes": 10_000, "timeout_s": 5.0, "max_redirects": 2, **kw}
    return asyncio.run(fetch_document(url, resolve=public_name_at(port_host), **args))


ROUTES = {
    "/ok.md": (200, {"Content-Type": "text/markdown"}, b"# Rooms\nDouble rooms cost 180 a night."),
    "/to-loopback": (302, {"Location": "http://127.0.0.1:9/secret"}, b""),
    "/to-metadata": (301, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
    "/to-localhost": (307, {"Location": "http://localhost/admin"}, b""),
    "/big": (200, {"Content-Type": "text/plain"}, b"x" * 20_000),
    "/exe": (200, {"Content-Type": "application/x-msdownload"}, b"MZ"),
    "/gone": (404, {"Content-Type": "text/plain"}, b"no"),
}


def test_a_public_host_is_fetched() -> None:
    with http_server(ROUTES) as base:
        port = base.rsplit(":", 1)[1]
        got = fetch(f"http://docs.example.com:{port}/ok.md")
    assert got.content_type == "text/markdown" and got.data.startswith(b"# Rooms")


@pytest.mark.parametrize("path", ["/to-loopback", "/to-metadata", "/to-localhost"])
def test_a_redirect_inside_the_network_is_refused(path: str) -> None:
    with http_server(ROUTES) as base:
        port = base.rsplit(":", 1)[1]
        with pytest.raises(FetchError, match="public"):
            fetch(f"http://docs.example.com:{port}{path}")


def test_redirect_loops_are_cut() -> None:
    with http_server({"/a": (302, {"Location": "/b"}, b""), "/b": (302, {"Location": "/a"}, b"")}) as base:
        port = base.rsplit(":", 1)[1]
        with pytest.raises(FetchError, match="redirects"):
            fetch(f"http://docs.example.com:{port}/a")


@pytest.mark.parametrize(
    ("path", "message"),
    [("/big", "larger than"), ("/exe", "content type"), ("/gone", "HTTP 404")],
)
def test_size_type_and_status_limits(path: str, message: str) -> None:
    with http_server(ROUTES) as base:
        port = base.rsplit(":", 1)[1]
        with pytest.raises(FetchError, match=message):
            fetch(f"http://docs.example.com:{port}{path}")


def test_a_host_that_never_answers_times_out() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        with pytest.raises(FetchError, match="did not answer"):
            fetch(f"http://docs.example.com:{listener.getsockname()[1]}/", timeout_s=0.5)
    finally:
        listener.close()


def test_direct_internal_targets_are_refused_without_a_request() -> None:
    for url in ("http://127.0.0.1/", "http://10.1.2.3/", "http://[fe80::1]/", "ftp://docs.example.com/"):
        with pytest.raises(FetchError):
            fetch(url)
