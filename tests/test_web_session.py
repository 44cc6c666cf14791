"""The console's session cookie and sign-in checks without a browser: sealing, tampering, expiry,
foreign keys, open-redirect targets, and the sign-in form's CSRF pair on a served app."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from control_api_fixtures import Api, control_api

from control.web.session import SessionCodec, session_key
from control.web.signin import _safe_next


def test_a_sealed_session_opens_only_unaltered_unexpired_and_with_its_key() -> None:
    codec = SessionCodec(session_key(None))
    token = "as_eu_" + "k" * 43
    session = codec.new(token, uuid.uuid4(), "viewer", now=1000.0)
    cookie = codec.seal(session)
    assert token not in cookie and "viewer" not in cookie
    assert codec.open(cookie, now=1001.0) == session
    assert codec.open(cookie, now=session.expires) is None  # expired
    flipped = cookie[:20] + ("A" if cookie[20] != "A" else "B") + cookie[21:]
    assert codec.open(flipped, now=1001.0) is None  # altered
    assert SessionCodec(session_key(None)).open(cookie, now=1001.0) is None  # another process's key
    assert codec.open("", now=1001.0) is None and codec.open("%%%", now=1001.0) is None


def test_the_region_key_gives_every_process_the_same_session_key() -> None:
    region_key = bytes(range(32))
    assert session_key(region_key) == session_key(region_key) != region_key
    assert session_key(None) != session_key(None)


@pytest.mark.parametrize("target, kept", [
    ("/console/calls?status=failed", True), ("//evil.example/", False), ("https://evil.example/", False),
    ("/\\evil.example", False), ("", False), (None, False),
])
def test_sign_in_returns_only_to_paths_of_this_site(target: str | None, kept: bool) -> None:
    assert (_safe_next(target) == target) is kept


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api() as a:
        yield a


def _signin_form(api: Api) -> tuple[str, str]:
    page = api.call("GET", "/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    cookie = re.search(r"as_signin=([^;]+)", page.headers.get("Set-Cookie")).group(1)  # type: ignore[union-attr]
    return csrf, cookie


def test_sign_in_needs_its_form_token_and_answers_wrong_tokens_alike(api: Api) -> None:
    csrf, cookie = _signin_form(api)
    form = "application/x-www-form-urlencoded"

    def post(token: str, form_csrf: str, jar: str) -> int:
        reply = api.call("POST", "/signin", data=f"token={token}&csrf={form_csrf}",
                         headers={"Content-Type": form, "Cookie": f"as_signin={jar}"})
        return reply.status

    good = api.tokens["a:owner"]
    assert post(good, "forged", cookie) == 403  # no matching form token: refused before the token is read
    assert post(good, csrf, "other") == 403
    assert post(api.tokens["a:expired"], csrf, cookie) == 401  # the API's own expiry check
    assert post("as_eu_" + "x" * 43, csrf, cookie) == 401
    assert post(good, csrf, cookie) == 303


def test_a_token_of_another_region_is_sent_to_its_cell(api: Api) -> None:
    csrf, cookie = _signin_form(api)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"as_signin={cookie}"}
    reply = api.call("POST", "/signin", data=f"token={api.tokens['c:owner']}&csrf={csrf}", headers=headers)
    assert reply.status == 401
    assert "belongs to the us cell" in reply.text and "http://us.cell.test:14210/signin" in reply.text


def test_the_cookies_are_secure_over_https(api: Api) -> None:
    async def signin_cookie(scheme: str) -> str:
        reply = await api.app.test_client().get("/signin", scheme=scheme)
        return reply.headers.get("Set-Cookie", "")

    plain, tls = api.db.run(signin_cookie("http")), api.db.run(signin_cookie("https"))
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    assert "HttpOnly" in tls and "SameSite=Strict" in tls and "Secure" in tls


def test_the_cookies_are_secure_when_the_cells_public_url_is_https() -> None:
    with control_api(public_base_url="https://eu.autospeak.example") as behind_proxy:
        reply = behind_proxy.call("GET", "/signin")
        assert "Secure" in reply.headers.get("Set-Cookie", "")
