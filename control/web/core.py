"""The console's blueprint and what every page shares: the session, the CSRF check, the sign-in guard,
role checks, security headers and rendering."""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar
from urllib.parse import urlencode

from quart import Blueprint, Response, current_app, g, redirect, render_template, request

from control.api.auth import ROLE_RANK
from control.api.state import api_state
from control.web.apiclient import ApiReply, TenantApi
from control.web.session import COOKIE, SIGNIN_COOKIE, SessionCodec, WebSession, clear_cookie, csrf_matches

P = ParamSpec("P")
T = TypeVar("T")
CODEC_KEY: Final = "autospeak.web.sessions"
HERE: Final = Path(__file__).parent
SIGNIN_PATH: Final = "/signin"

bp = Blueprint("web", __name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"),
               static_url_path="/console/static")

# Pages use no inline script or style: the CSP allows only this origin's files, and no framing.
_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; media-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@bp.app_template_filter("utc_time")
def utc_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def codec() -> SessionCodec:
    return current_app.extensions[CODEC_KEY]


def web_session() -> WebSession | None:
    return g.get("web_session")


def api() -> TenantApi:
    session = g.web_session
    return TenantApi(session.token, session.tenant)


def role_name() -> str:
    session = web_session()
    return session.role if session else "?"


def can(role: str) -> bool:
    """Whether the signed-in token's role reaches `role` (the API checks again on every write)."""
    session = web_session()
    return session is not None and ROLE_RANK[session.role] >= ROLE_RANK[role]


@bp.before_request
async def _load_session() -> Response | None:
    g.web_session = codec().open(request.cookies.get(COOKIE))
    if request.method != "POST":
        return None
    form = await request.form
    given = form.get("csrf")
    if request.path == SIGNIN_PATH:  # before sign-in: the form's value must match its cookie
        ok = csrf_matches(request.cookies.get(SIGNIN_COOKIE, ""), given)
    else:
        ok = g.web_session is not None and csrf_matches(g.web_session.csrf, given)
    if not ok:
        return await page("error.html", 403, title="Refused",
                          message="This form was not sent from a page of this console (its security check "
                                  "failed). Reload the page and try again.")
    return None


@bp.after_request
async def _headers(response: Response) -> Response:
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/console/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def signin_redirect(reason: str | None = None) -> Response:
    query = {"next": request.full_path.rstrip("?")} if request.method == "GET" else {}
    if reason:
        query["reason"] = reason
    resp = redirect(SIGNIN_PATH + ("?" + urlencode(query) if query else ""))
    if reason:
        clear_cookie(resp, COOKIE)
    return resp


def signed_in(view: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
    """The page needs a session whose token the API still accepts (not revoked, not expired)."""

    @functools.wraps(view)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
        if web_session() is None:
            return signin_redirect()
        tenant = await api().get("")
        if tenant.status in (401, 307, 421):
            return signin_redirect("ended")
        if not tenant.ok:
            return await api_failure(tenant)
        g.tenant = tenant.body
        return await view(*args, **kwargs)

    return guarded


async def page(template: str, status: int = 200, **context: Any) -> Response:
    session = web_session()
    settings = api_state().settings
    html = await render_template(
        template, session=session, tenant=g.get("tenant"), can=can, region=settings.region,
        other_cells={r: url for r, url in settings.cells.items() if r != settings.region},
        csrf=session.csrf if session else "", **context)
    return Response(html, status=status, content_type="text/html; charset=utf-8")


async def api_failure(reply: ApiReply, title: str = "Refused") -> Response:
    """A refusal of the API as a page: its own explanation, its status."""
    if reply.status == 403:
        message = f"Your role ({role_name()}) cannot do this. {reply.problem()}"
    elif reply.status == 404:
        title, message = "Not found", "There is no such item in this tenant."
    else:
        message = reply.problem()
    return await page("error.html", reply.status, title=title, message=message)


def form_key() -> str:
    """A fresh idempotency key for a create form (a double submit creates once)."""
    return str(uuid.uuid4())


def new_signin_csrf() -> str:
    return secrets.token_urlsafe(32)
