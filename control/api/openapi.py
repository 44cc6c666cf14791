"""The route table and the OpenAPI 3.1 document built from it.

Routes are registered through `operation()`, which records what the document needs (method, path,
role, body and response models) at the same time as it adds the Quart route, so the document cannot
describe a route that does not exist or miss one that does.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel
from quart import Blueprint

from control.api.problems import PROBLEM_JSON
from control.api.schemas import Problem

ViewFn = Callable[..., Awaitable[Any]]

_CONVERTER_RE: Final = re.compile(r"<(?:(\w+):)?(\w+)>")
_PARAM_SCHEMAS: Final = {"uuid": {"type": "string", "format": "uuid"}, None: {"type": "string"}}


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str  # Quart rule, e.g. /v1/tenants/<uuid:tenant_id>/agents
    summary: str
    operation_id: str
    role: str | None
    status: int
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    query: tuple[QueryParam, ...] = ()
    idempotent_create: bool = False
    errors: tuple[int, ...] = field(default=())
    media_type: str | None = None  # a non-JSON success body (a recording), documented as binary
    description: str = ""  # behaviour worth documenting beyond the summary (refusals, side effects)


OPERATIONS: list[Operation] = []


def operation(bp: Blueprint, method: str, rule: str, *, summary: str, status: int = 200,
              body: type[BaseModel] | None = None, response: type[BaseModel] | None = None,
              query: tuple[QueryParam, ...] = (), idempotent_create: bool = False,
              errors: tuple[int, ...] = (), media_type: str | None = None,
              description: str = "") -> Callable[[ViewFn], ViewFn]:
    def register(view: ViewFn) -> ViewFn:
        full = (bp.url_prefix or "") + rule
        role = getattr(view, "required_role", None)
        OPERATIONS.append(Operation(method, full, summary, view.__name__, role,
                                    status, body, response, query, idempotent_create, errors, media_type,
                                    description))
        bp.add_url_rule(rule, view_func=view, methods=[method])
        return view

    return register


def openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params: list[dict[str, Any]] = []

    def sub(m: re.Match[str]) -> str:
        params.append({"name": m.group(2), "in": "path", "required": True,
                       "schema": _PARAM_SCHEMAS.get(m.group(1), {"type": "string"})})
        return "{" + m.group(2) + "}"

    return _CONVERTER_RE.sub(sub, rule), params


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


_ERROR_TEXT: Final = {
    307: "Tenant homed in another region; follow Location to its home cell.",
    400: "Malformed JSON or bad header.",
    401: "Missing, invalid or expired token, or a token of another tenant (the same answer).",
    403: "The token's role is not enough, or a compliance check (consent) refused the action.",
    404: "No such resource for this tenant.",
    409: "Conflict: the resource exists already or is still in use, or an idempotent request is still "
         "in progress.",
    413: "Body too large.", 415: "Body is not JSON.",
    421: "Tenant homed in another region (redirects disabled).",
    422: "Validation failed; `errors` names each field path.", 429: "Rate limited; see Retry-After.",
    502: "The carrier failed; an outbound call is recorded as failed and its Idempotency-Key replays this.",
    503: "The cell is not configured for this operation.",
}


def _schema_ref(model: type[BaseModel], components: dict[str, Any], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)  # type: ignore[arg-type]
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_document(title: str = "AutoSpeak control API", version: str = "0.1.0",
                   server_url: str | None = None) -> dict[str, Any]:
    components: dict[str, Any] = {}
    _schema_ref(Problem, components, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path, params = openapi_path(op.rule)
        params += [{"name": q.name, "in": "query", "required": False, "schema": q.schema,
                    "description": q.description} for q in op.query]
        ok: dict[str, Any] = {"description": op.summary}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": _schema_ref(op.response, components,
                                                                         "serialization")}}
        elif op.media_type is not None:
            ok["content"] = {op.media_type: {"schema": {"type": "string", "format": "binary"}}}
        responses: dict[str, Any] = {str(op.status): ok}
        codes = {307, 401, 404, 429, 421, *op.errors}
        if op.role is not None:
            codes.add(403)
        if op.body is not None:
            codes |= {400, 413, 415, 422}
        if op.idempotent_create:
            codes.add(409)
        for code in sorted(codes):
            responses[str(code)] = _problem(_ERROR_TEXT[code])
        entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                                 "parameters": params, "responses": responses,
                                 "security": [{"bearer": []}]}
        notes = [op.description] if op.description else []
        if op.role is not None:
            notes.append(f"Needs the `{op.role}` role (or higher) on the tenant.")
        if notes:
            entry["description"] = "\n\n".join(notes)
        if op.idempotent_create:
            entry["parameters"].append({"name": "Idempotency-Key", "in": "header", "required": False,
                                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                                        "description": "Replays the first response for the same key."})
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": _schema_ref(op.body, components, "validation")}}}
        paths.setdefault(path, {})[op.method.lower()] = entry
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
