"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error the API returns goes through `problem()`, so clients parse one shape. Unexpected
exceptions become a bare 500 whose body says nothing about the cause; the cause goes to the log,
except for database errors, whose text carries the statement's parameters (tenant data, secrets): of
those the log gets the exception type, the SQLSTATE and the stack, never the message.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterable
from typing import Any, Final

from pydantic import ValidationError
from quart import Quart, Response
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from control.db.session import sqlstate_of

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
PROBLEM_BASE: Final = "https://autospeak.dev/problems/"
FOREIGN_KEY_VIOLATION: Final = "23503"


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


def not_found_problem() -> ApiProblem:
    # One body for "missing", "another tenant's" and "no such path": nothing tells them apart.
    return ApiProblem(404, "Not Found", "No such resource.", slug="not-found")


def _database_error(exc: BaseException) -> BaseException | None:
    """The database error in `exc`'s chain (itself, its cause or context), if there is one."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        err = stack.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, SQLAlchemyError) or sqlstate_of(err) is not None:
            return err
        stack.extend(e for e in (err.__cause__, err.__context__) if e is not None)
    return None


def log_unexpected(exc: BaseException) -> None:
    """Log an unhandled error; a database error without its text (it holds the SQL parameters)."""
    db_error = _database_error(exc)
    if db_error is None:
        log.exception("unhandled error in control API", exc_info=exc)
        return
    # Frames only (file, line, code), no exception message and no chained driver error.
    stack = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled database error in control API: %s (SQLSTATE %s)\n%s", type(db_error).__name__,
              sqlstate_of(db_error) or "unknown", stack.rstrip())


def install_error_handlers(app: Quart) -> None:
    def _from(exc: ApiProblem) -> Response:
        return problem(exc.status, exc.title, exc.detail, slug=exc.slug, headers=exc.headers,
                       **exc.extensions)

    @app.errorhandler(ApiProblem)
    async def _api_problem(exc: ApiProblem) -> Response:
        return _from(exc)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:  # no route matched, e.g. a malformed id in the path: same as a missing one
            return _from(not_found_problem())
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(sorted(exc.valid_methods or ()))
        # werkzeug's own descriptions are generic and safe to show.
        return problem(status, exc.name, exc.description, headers=headers)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, DBAPIError) and sqlstate_of(exc) == FOREIGN_KEY_VIOLATION:
            # A row still referenced by others (or a reference to one just deleted): a race the route's
            # own checks could not see. The client may retry after resolving the reference.
            return problem(409, "Conflict", "Other records refer to this resource, or it refers to one "
                           "that no longer exists.", slug="still-referenced")
        log_unexpected(exc)
        return problem(500, "Internal server error", "The server could not complete the request.",
                       slug="internal")
