"""Knowledge uploads, webhooks with their deliveries, and usage: the rest of the tenant console, through
the API's routes."""

from __future__ import annotations

import base64
from typing import Any, Final

from quart import Response, redirect, request

from control.api.routes.webhooks import DELIVERY_STATUSES
from control.web.core import api, api_failure, bp, form_key, page, signed_in

# The types the API reads (control.knowledge.extract); a file's type comes from its name.
_TYPES: Final = {".txt": "text/plain", ".md": "text/markdown", ".html": "text/html", ".htm": "text/html",
                 ".csv": "text/csv", ".pdf": "application/pdf"}


async def _knowledge_page(status: int = 200, error: str | None = None) -> Response:
    docs = await api().get("/knowledge/documents", limit=100, offset=request.args.get("offset", "0"))
    if not docs.ok:
        return await api_failure(docs)
    agents = await api().get("/agents", limit=100)
    return await page("knowledge.html", status, title="Knowledge", documents=docs.body["items"],
                      next_offset=docs.body["next_offset"], agents=agents.body["items"] if agents.ok else [],
                      key=form_key(), error=error, saved=request.args.get("saved") == "1")


@bp.get("/console/knowledge")
@signed_in
async def knowledge() -> Response:
    return await _knowledge_page()


@bp.post("/console/knowledge")
@signed_in
async def upload_knowledge() -> Response:
    form, files = await request.form, await request.files
    body: dict[str, Any] = {"title": (form.get("title") or "").strip(),
                            "agent_id": form.get("agent_id") or None}
    upload = files.get("file")
    if upload is not None and upload.filename:
        suffix = "." + upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
        if suffix not in _TYPES:
            return await _knowledge_page(422, f"Upload one of: {', '.join(sorted(_TYPES))}.")
        body.update(content_type=_TYPES[suffix], content_base64=base64.b64encode(upload.read()).decode())
        body["title"] = body["title"] or upload.filename
    elif (form.get("text") or "").strip():
        body.update(content_type=form.get("content_type") or "text/plain", text=form["text"])
    else:
        return await _knowledge_page(422, "Choose a file or paste some text.")
    reply = await api().call("POST", "/knowledge/documents", json_body=body, idempotency_key=form.get("key"))
    if reply.status in (409, 413, 422):
        return await _knowledge_page(reply.status, reply.problem())
    if not reply.ok:
        return await api_failure(reply)
    return redirect("/console/knowledge?saved=1", 303)


@bp.get("/console/webhooks")
@signed_in
async def webhooks() -> Response:
    reply = await api().get("/webhook-endpoints", limit=100)
    if not reply.ok:
        return await api_failure(reply)
    return await page("webhooks.html", title="Webhooks", endpoints=reply.body["items"], key=form_key())


@bp.post("/console/webhooks")
@signed_in
async def create_webhook() -> Response:
    form = await request.form
    kinds = [k.strip() for k in (form.get("event_types") or "").split(",") if k.strip()]
    reply = await api().call("POST", "/webhook-endpoints", json_body={"url": (form.get("url") or "").strip(),
                                                            "event_types": kinds},
                             idempotency_key=form.get("key"))
    if not reply.ok:
        listed = await api().get("/webhook-endpoints", limit=100)
        return await page("webhooks.html", reply.status if reply.status in (403, 409, 422) else 400,
                          title="Webhooks", endpoints=listed.body["items"] if listed.ok else [],
                          key=form_key(), error=reply.problem())
    # The signing secret is shown once, on this page, as the API returns it once.
    return await page("webhook_created.html", 201, title="Webhook created", endpoint=reply.body)


@bp.get("/console/webhooks/<uuid:endpoint_id>")
@signed_in
async def webhook(endpoint_id: Any) -> Response:
    endpoint = await api().get(f"/webhook-endpoints/{endpoint_id}")
    if not endpoint.ok:
        return await api_failure(endpoint)
    deliveries = await api().get(f"/webhook-endpoints/{endpoint_id}/deliveries", limit=100,
                                 status=request.args.get("status", ""))
    if not deliveries.ok:
        return await api_failure(deliveries)
    return await page("webhook.html", title="Webhook", endpoint=endpoint.body,
                      deliveries=deliveries.body["items"], chosen=request.args.get("status", ""),
                      statuses=DELIVERY_STATUSES)


@bp.get("/console/usage")
@signed_in
async def usage() -> Response:
    chosen = {"from": request.args.get("from", ""), "to": request.args.get("to", "")}
    reply = await api().get("/usage", **chosen)
    if not reply.ok:
        return await api_failure(reply, title="Range refused")
    return await page("usage.html", title="Usage", report=reply.body, chosen=chosen)
