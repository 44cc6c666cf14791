"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error the API returns goes through `problem()`, so clients parse one shape. Unexpected
exceptions become a bare 500 whose body says nothing about the cause; the cause goes to the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Final

from pydantic import ValidationError
from quart import Quart, Response
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
PROBLEM_BASE: Final = "https://autospeak.dev/problems/"


class ApiProblem(Exception):
    """Raised anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, *, slug: str | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.headers = headers or {}
        self.extensions = extensions


def problem(status: int, title: str, detail: str | None = None, *, slug: str | None = None,
            headers: dict[str, str] | None = None, **extensions: Any) -> Response:
    body: dict[str, Any] = {
        # A resolvable-looking URI per problem kind; "about:blank" would force clients to use titles.
        "type": PROBLEM_BASE + (slug or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extensions)
    resp = Response(_dumps(body), status=status, content_type=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), default=str)


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as {path, message} pairs; the input value is left out (it may be a secret)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in err["loc"]) or "(body)"
        out.append({"path": path, "message": err["msg"], "code": err["type"]})
    return out


def validation_problem(errors: Iterable[dict[str, str]]) -> ApiProblem:
    errs = list(errors)
    detail = "; ".join(f"{e['path']}: {e['message']}" for e in errs[:5])
    return ApiProblem(422, "Unprocessable content", detail, slug="validation", errors=errs)


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiProblem)
    async def _api_problem(exc: ApiProblem) -> Response:
        return problem(exc.status, exc.title, exc.detail, slug=exc.slug, headers=exc.headers,
                       **exc.extensions)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(sorted(exc.valid_methods or ()))
        # werkzeug's own descriptions are generic and safe to show.
        return problem(status, exc.name, exc.description, headers=headers)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in control API", exc_info=exc)
        return problem(500, "Internal server error", "The server could not complete the request.",
                       slug="internal")
