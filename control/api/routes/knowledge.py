"""Knowledge: a tenant's documents (uploads processed as jobs), and search over their chunks.

Upload answers 202 with the document in `queued`; poll it until `ready` or `failed` (with `error`).
The same bytes uploaded again answer 200 with the existing document. A URL is fetched during the
request under the SSRF guard, so a refused or unreachable URL is a 422 and writes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from typing import Any, Final

from quart import Blueprint, Response, current_app
from sqlalchemy.ext.asyncio import AsyncSession

from cells.knowledge.extract import CONTENT_TYPES, ExtractError, extract
from control.api.auth import current_auth, require
from control.api.openapi import operation
from control.api.problems import ApiProblem
from control.api.routes.common import TENANT_PREFIX, fetch_page, json_response, scoped_one
from control.api.routes.params import PAGE, not_found, read_page
from control.api.schemas import parse_body
from control.api.schemas_knowledge import (
    KnowledgeDocumentList,
    KnowledgeDocumentOut,
    KnowledgeSearchIn,
    KnowledgeSearchOut,
    KnowledgeUpload,
)
from control.api.state import sessions
from control.db.models import Agent, KnowledgeDocument
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_select
from control.knowledge import store
from control.knowledge.fetch import FetchError, fetch_document
from control.knowledge.jobs import KnowledgeJobs

bp = Blueprint("knowledge", __name__, url_prefix=TENANT_PREFIX)
KNOWLEDGE_KEY: Final = "autospeak.knowledge"
UPLOAD_PATHS: Final = ("/knowledge/documents",)
"""Path endings whose bodies may be as large as a document (the app raises their body limit)."""


def jobs() -> KnowledgeJobs:
    return current_app.extensions[KNOWLEDGE_KEY]


def _out(doc: KnowledgeDocument) -> dict[str, Any]:
    return KnowledgeDocumentOut.model_validate(doc).model_dump(mode="json")


def _invalid(path: str, message: str, code: str = "invalid") -> ApiProblem:
    return ApiProblem(422, "Unprocessable content", f"{path}: {message}", slug="validation",
                      errors=[{"path": path, "message": message, "code": code}])


async def _read_upload(spec: KnowledgeUpload) -> store.Upload:
    """The upload's bytes and type, from the body or fetched from its URL; 422 on anything unusable."""
    limits = jobs().service.settings
    source: str | None = None
    if spec.url is not None:
        try:
            fetched = await fetch_document(spec.url, allow_private=limits.allow_private_urls,
                                           max_bytes=limits.max_document_bytes,
                                           timeout_s=limits.fetch_timeout_s,
                                           max_redirects=limits.max_redirects)
        except FetchError as exc:
            raise _invalid("url", str(exc), "url_refused") from None
        data, content_type, source = fetched.data, fetched.content_type, spec.url
    elif spec.text is not None:
        data, content_type = spec.text.encode("utf-8"), str(spec.content_type)
    else:
        try:
            data = base64.b64decode(spec.content_base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("content_base64", "not valid base64", "base64") from None
        content_type = str(spec.content_type)
    if not data:
        raise _invalid("url" if spec.url else "content", "the document is empty", "empty")
    if len(data) > limits.max_document_bytes:
        raise ApiProblem(413, "Content Too Large", f"The document is larger than {limits.max_document_bytes} "
                         "bytes.", slug="document-too-large")
    if content_type not in CONTENT_TYPES:
        raise _invalid("content_type", f"one of {', '.join(CONTENT_TYPES)}")
    try:
        # Read once now, so that garbage, a wrong type or a broken PDF is a 422 and never a job.
        await asyncio.to_thread(extract, data, content_type)
    except ExtractError as exc:
        raise _invalid("content", str(exc), "unreadable") from None
    return store.Upload(spec.title, content_type, data, spec.agent_id, source)


async def _check_agent(session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID | None) -> None:
    if agent_id is not None:
        try:
            await scoped_one(session, Agent, scope, Agent.id == agent_id)
        except ApiProblem:
            raise _invalid("agent_id", "no such agent", "unknown_agent") from None


_UPLOAD_NOTES = (
    "Send `text` (plain text, Markdown, HTML, CSV), `content_base64` (any of them, and PDF) or `url` "
    "(http or https; private, loopback, link-local and metadata addresses are refused, redirects are "
    "checked the same way, the size, type and time are limited). The document is processed in the "
    "background: 202 with status `queued`, then `processing`, `ready` or `failed` with `error`. The "
    "same bytes again answer 200 with the document that has them. CSV is read as FAQ pairs "
    "(question, answer columns). Over the tenant's document quota: 409 `knowledge-quota`."
)


@operation(bp, "POST", "/knowledge/documents", summary="Upload a knowledge document", status=202,
           body=KnowledgeUpload, response=KnowledgeDocumentOut, errors=(409,), description=_UPLOAD_NOTES)
@require("operator")
async def upload_document(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(KnowledgeUpload)
    upload = await _read_upload(spec)
    scope = current_auth().scope
    limit = jobs().service.settings.max_documents

    async def work(session: AsyncSession) -> tuple[dict[str, Any], bool]:
        await _check_agent(session, scope, upload.agent_id)
        try:
            doc, created = await store.queue_document(session, scope, upload, limit)
        except store.QuotaExceeded as exc:
            raise ApiProblem(409, "Conflict", str(exc), slug="knowledge-quota") from None
        return _out(doc), created

    body, created = await run_transaction(sessions(), work, scope=scope)
    if created:
        jobs().submit(scope, uuid.UUID(body["id"]))
    return json_response(body, 202 if created else 200,
                         {"Location": f"/v1/tenants/{tenant_id}/knowledge/documents/{body['id']}"})


@operation(bp, "PUT", "/knowledge/documents/<uuid:document_id>", summary="Replace a knowledge document",
           status=202, body=KnowledgeUpload, response=KnowledgeDocumentOut, errors=(409,),
           description="The document is queued again with the new content; its current chunks answer "
                       "searches until the new ones are ready. 409 `duplicate-content` if another document "
                       "already has these bytes.")
@require("operator")
async def replace_document(tenant_id: uuid.UUID, document_id: uuid.UUID) -> Response:
    spec = await parse_body(KnowledgeUpload)
    upload = await _read_upload(spec)
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        await _check_agent(session, scope, upload.agent_id)
        doc = await scoped_one(session, KnowledgeDocument, scope, KnowledgeDocument.id == document_id,
                               lock=True)
        try:
            await store.requeue_document(session, scope, doc, upload)
        except store.DuplicateContent as exc:
            raise ApiProblem(409, "Conflict", f"Document {exc.document_id} already has this content.",
                             slug="duplicate-content") from None
        return _out(doc)

    body = await run_transaction(sessions(), work, scope=scope)
    jobs().submit(scope, document_id)
    return json_response(body, 202)


@operation(bp, "GET", "/knowledge/documents", summary="List knowledge documents",
           response=KnowledgeDocumentList, query=PAGE)
@require("viewer")
async def list_documents(tenant_id: uuid.UUID) -> Response:
    limit, offset = read_page()
    scope = current_auth().scope

    async def work(session: AsyncSession) -> KnowledgeDocumentList:
        stmt = scoped_select(KnowledgeDocument, scope).order_by(KnowledgeDocument.created_at,
                                                                KnowledgeDocument.id)
        rows, next_offset = await fetch_page(session, stmt, limit=limit, offset=offset)
        return KnowledgeDocumentList(items=[KnowledgeDocumentOut.model_validate(d) for d in rows],
                                     next_offset=next_offset)

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "GET", "/knowledge/documents/<uuid:document_id>", summary="Get a knowledge document and its "
           "job status", response=KnowledgeDocumentOut)
@require("viewer")
async def get_document(tenant_id: uuid.UUID, document_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _out(await scoped_one(session, KnowledgeDocument, scope, KnowledgeDocument.id == document_id))

    return json_response(await run_transaction(sessions(), work, scope=scope))


@operation(bp, "DELETE", "/knowledge/documents/<uuid:document_id>", summary="Delete a knowledge document",
           status=204, description="A hard delete: the document, its chunks and their vectors are gone.")
@require("operator")
async def delete_document(tenant_id: uuid.UUID, document_id: uuid.UUID) -> Response:
    scope = current_auth().scope

    async def work(session: AsyncSession) -> None:
        if not await store.delete_document(session, scope, document_id):
            raise not_found()

    await run_transaction(sessions(), work, scope=scope)
    return Response("", status=204)


@operation(bp, "POST", "/knowledge/search", summary="Search the knowledge", body=KnowledgeSearchIn,
           response=KnowledgeSearchOut,
           description="The chunks nearest the question (cosine similarity of MiniLM embeddings). `known` "
                       "is false when the best score is below the threshold: the agent then says it does "
                       "not know and offers a message or a transfer.")
@require("viewer")
async def search(tenant_id: uuid.UUID) -> Response:
    spec = await parse_body(KnowledgeSearchIn)
    scope = current_auth().scope
    answer = await jobs().service.search(scope, spec.question, agent_id=spec.agent_id, top_k=spec.top_k,
                                         threshold=spec.threshold)
    return json_response(answer.to_json())
