"""Sign-in with a tenant API token, sign-out, and the cell's root URL.

A wrong token gets one answer whatever was wrong with it (unknown, revoked, expired, malformed), so the
form cannot be used to learn which tokens exist. A token of another region is sent to its own cell,
which the token itself names (its prefix), so saying so reveals nothing.
"""

from __future__ import annotations

from typing import Final

from quart import Response, redirect, request

from control.api.auth import _load_token, token_region
from control.api.state import api_state
from control.web.apiclient import TenantApi
from control.web.core import (
    SIGNIN_PATH,
    bp,
    codec,
    new_signin_csrf,
    page,
    signed_in,
    web_session,
)
from control.web.session import COOKIE, LIFETIME_S, SIGNIN_COOKIE, clear_cookie, set_cookie

HOME: Final = "/dashboard"
WRONG: Final = "That token was not accepted. Check it and try again."
_REASONS: Final = {"ended": "Your session ended (signed out, or the token was revoked or expired). "
                            "Sign in again.",
                   "out": "You are signed out."}


def _safe_next(target: str | None) -> str:
    # Only a path on this site: "//host" or "https://host" would make the form an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME


@bp.get("/")
async def root() -> Response:
    return redirect(HOME if web_session() else SIGNIN_PATH)


async def _form(status: int = 200, error: str | None = None, elsewhere: str | None = None) -> Response:
    csrf = new_signin_csrf()
    resp = await page("signin.html", status, signin_csrf=csrf, error=error, elsewhere=elsewhere,
                      notice=_REASONS.get(request.args.get("reason", "")),
                      next=_safe_next(request.args.get("next") or (await request.form).get("next")))
    set_cookie(resp, SIGNIN_COOKIE, csrf, max_age=3600)
    return resp


@bp.get(SIGNIN_PATH)
async def signin_form() -> Response:
    if web_session() is not None:
        return redirect(HOME)
    return await _form()


@bp.post(SIGNIN_PATH)
async def signin() -> Response:
    form = await request.form
    token = (form.get("token") or "").strip()
    region = token_region(token)
    here = api_state().settings
    if region is not None and region != here.region:
        return await _form(401, f"This token belongs to the {region} cell; sign in there.",
                           elsewhere=here.cells.get(region))
    row = await _load_token(region, token) if region is not None else None
    if row is None:
        return await _form(401, WRONG)
    # The API decides whether the token is good now (revoked, expired, rate limited), as for any client.
    check = await TenantApi(token, row.tenant_id).get("")
    if check.status == 429:
        return await _form(429, "Too many requests with this token; wait a moment and try again.")
    if not check.ok:
        return await _form(401, WRONG)
    session = codec().new(token, row.tenant_id, row.role)
    resp = redirect(_safe_next(form.get("next")), 303)
    set_cookie(resp, COOKIE, codec().seal(session), max_age=LIFETIME_S)
    clear_cookie(resp, SIGNIN_COOKIE)
    return resp


@bp.post("/signout")
@signed_in
async def signout() -> Response:
    resp = redirect(SIGNIN_PATH + "?reason=out", 303)
    clear_cookie(resp, COOKIE)
    return resp
