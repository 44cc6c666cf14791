"""The webhook SSRF guard: which URLs and resolved addresses the cell may POST to."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from control.api.netguard import (
    UnsafeWebhookTarget,
    check_webhook_url,
    is_public_address,
    pin_to_address,
    resolve_public,
    url_origin,
)

NOT_PUBLIC = (
    "127.0.0.1",
    "127.8.9.10",
    "0.0.0.0",
    "0.1.2.3",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "224.0.0.1",
    "239.1.1.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "::127.0.0.1",
)
PUBLIC = ("8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1")


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # https only
        "ftp://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://127.0.0.1:4222/",
        "https://[::1]:8222/varz",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/",
        "https://100.64.0.1/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fe80::1%25eth0]/",
        "https://0.0.0.0:5432/",
        "https://2130706433/",
        "https://0x7f.1/",
        "https://127.1/",
        "https://017700000001/",
        "https://localhost/",
        "https://LOCALHOST./",
        "https://db.localhost/",
        "https://nats:8222/",
        "https://postgres/",
        "https://metadata.google.internal/",
        "https://printer.local/",
        "https:///nohost",
        "https://h.example.com:0/",
        "https://h.example.com/a b",
        "not a url",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(UnsafeWebhookTarget) as exc:
        check_webhook_url(url, allow_private=False)
    assert isinstance(exc.value, ValueError) and str(exc.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/autospeak?token=abc",
        "https://93.184.216.34:8443/hook",
        "https://[2606:4700:4700::1111]/x",
        "https://Hooks.Example.COM./x",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert check_webhook_url(url, allow_private=False) == url


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@hooks.example.com/x",
        "https://user@hooks.example.com/x",
        "https://:pass@hooks.example.com/x",
        "https://@hooks.example.com/x",
        "https://user:pass@93.184.216.34/x",
        "http://user:pass@127.0.0.1:9123/hook",
    ],
)
def test_urls_with_credentials_are_refused(url: str, allow_private: bool) -> None:
    with pytest.raises(UnsafeWebhookTarget) as exc:
        check_webhook_url(url, allow_private=allow_private)
    message = str(exc.value)
    assert "user name or password" in message and "signature" in message
    assert "pass@" not in message.replace("password@", "")  # the credentials are not echoed


def test_an_at_sign_outside_the_authority_is_fine() -> None:
    for url in ("https://hooks.example.com/to/a@b", "https://hooks.example.com/x?email=a@b.example"):
        assert check_webhook_url(url, allow_private=False) == url


def test_dev_stacks_may_use_loopback_over_http() -> None:
    for url in (
        "http://127.0.0.1:9123/hook",
        "http://localhost:8080/",
        "http://[::1]:9/",
        "http://nats:8222/",
    ):
        assert check_webhook_url(url, allow_private=True) == url
    for url in ("ftp://127.0.0.1/", "http://0.0.0.0:80/", "http://224.0.0.1/"):
        with pytest.raises(UnsafeWebhookTarget):
            check_webhook_url(url, allow_private=True)


def _with_resolver(answers: dict[str, list[str]], coro_fn: Any) -> Any:
    """Run coro_fn on a loop whose resolver answers from `answers` (a DNS stand-in)."""
    loop = asyncio.new_event_loop()

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for a in answers[host]:
            if ":" in a:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)))
        return out

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


def test_resolve_public_refuses_names_that_resolve_inside() -> None:
    answers = {
        "hooks.example.com": ["93.184.216.34", "2606:2800:220:1::248", "93.184.216.34"],
        "rebind.example.com": ["127.0.0.1"],
        "mixed.example.com": ["93.184.216.34", "10.0.0.7"],
        "meta.example.com": ["::ffff:169.254.169.254"],
    }
    got = _with_resolver(answers, lambda: resolve_public("hooks.example.com", 443, allow_private=False))
    assert got == ["93.184.216.34", "2606:2800:220:1::248"]
    for host in (
        "rebind.example.com",
        "mixed.example.com",
        "meta.example.com",
        "localhost",
        "nats",
        "127.0.0.1",
        "[::1]",
        "2130706433",
    ):
        with pytest.raises(UnsafeWebhookTarget):
            _with_resolver(answers, lambda h=host: resolve_public(h, 443, allow_private=False))
    # Allowed on a dev stack; an unknown name is an OSError (worth retrying), not a refusal.
    assert _with_resolver(answers, lambda: resolve_public("rebind.example.com", 80, allow_private=True)) == [
        "127.0.0.1"
    ]
    with pytest.raises(OSError):
        _with_resolver(answers, lambda: resolve_public("nowhere.example.com", 443, allow_private=False))


def test_resolve_public_with_the_real_resolver_on_loopback() -> None:
    addresses = asyncio.run(resolve_public("localhost", 80, allow_private=True))
    assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    assert asyncio.run(resolve_public("8.8.8.8", 443, allow_private=False)) == ["8.8.8.8"]


def test_url_origin_drops_path_query_and_credentials() -> None:
    assert url_origin("https://user:pw@Hooks.example.com:8443/t/SECRET?key=SECRET") == (
        "https://hooks.example.com:8443"
    )
    assert url_origin("https://hooks.example.com/x?token=1") == "https://hooks.example.com"
    assert url_origin("http://[::1]:9/x") == "http://[::1]:9"


@pytest.mark.parametrize(("url", "address", "pinned", "host", "sni"), [
    ("https://hooks.example.com/a?b=1", "93.184.216.34", "https://93.184.216.34/a?b=1",
     "hooks.example.com", "hooks.example.com"),
    ("https://hooks.example.com:8443/x", "2606:2800:220:1::1", "https://[2606:2800:220:1::1]:8443/x",
     "hooks.example.com:8443", "hooks.example.com"),
    ("http://hooks.example.com/x", "93.184.216.34", "http://93.184.216.34/x", "hooks.example.com", None),
    ("https://bücher.example/x", "93.184.216.34", "https://93.184.216.34/x", "xn--bcher-kva.example",
     "xn--bcher-kva.example"),
])
def test_a_pinned_request_connects_to_the_address_and_names_the_host(
        url: str, address: str, pinned: str, host: str, sni: str | None) -> None:
    target = pin_to_address(url, address)
    assert target.url == pinned and target.headers == {"host": host}
    assert target.extensions.get("sni_hostname") == sni


def test_a_url_with_an_address_literal_is_sent_as_it_is() -> None:
    target = pin_to_address("https://[2606:2800:220:1::1]:8443/x", "2606:2800:220:1::1")
    assert (target.url, target.headers, target.extensions) == ("https://[2606:2800:220:1::1]:8443/x", {}, {})
