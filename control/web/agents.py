"""Agent pages: list, view, create, and edit the persona, disclosure and recording settings.

Reads and writes go through the API's agent routes (its validation and role checks); a refused
change is shown with the API's own explanation and the form keeps what was typed.
"""

from __future__ import annotations

from typing import Any, Final

from quart import Response, redirect, request
from werkzeug.datastructures import MultiDict

from control.web.core import api, api_failure, bp, can, form_key, page, role_name, signed_in

VERTICALS: Final = ("reception", "recruit", "stay")


def _agent_body(form: MultiDict[str, str], current: dict[str, Any] | None) -> dict[str, Any]:
    """The API body of the form: name, vertical, persona and the compliance settings it shows."""
    compliance = dict((current or {}).get("compliance") or {})
    disclosure = (form.get("disclosure_text") or "").strip()
    compliance.update(ai_disclosure="ai_disclosure" in form, disclosure_text=disclosure or None,
                      record_calls="record_calls" in form)
    return {"name": (form.get("name") or "").strip(), "vertical": form.get("vertical") or "reception",
            "persona": form.get("persona") or "", "compliance": compliance}


@bp.get("/console/agents")
@signed_in
async def agents() -> Response:
    offset = request.args.get("offset", "0")
    reply = await api().get("/agents", limit=50, offset=offset)
    if not reply.ok:
        return await api_failure(reply)
    return await page("agents.html", title="Agents", agents=reply.body["items"],
                      next_offset=reply.body["next_offset"])


@bp.get("/console/agents/new")
@signed_in
async def new_agent() -> Response:
    if not can("admin"):
        return await page("error.html", 403, title="Refused",
                          message=f"Your role ({role_name()}) cannot create agents.")
    return await page("agent_form.html", title="New agent", agent=None, verticals=VERTICALS, key=form_key())


@bp.post("/console/agents")
@signed_in
async def create_agent() -> Response:
    form = await request.form
    reply = await api().call("POST", "/agents", json_body=_agent_body(form, None),
                             idempotency_key=form.get("key"))
    if reply.status == 422:
        return await page("agent_form.html", 422, title="New agent", agent=None, draft=form,
                          verticals=VERTICALS, key=form.get("key"), error=reply.problem())
    if not reply.ok:
        return await api_failure(reply)
    return redirect(f"/console/agents/{reply.body['id']}?saved=1", 303)


@bp.get("/console/agents/<uuid:agent_id>")
@signed_in
async def agent(agent_id: Any) -> Response:
    reply = await api().get(f"/agents/{agent_id}")
    if not reply.ok:
        return await api_failure(reply)
    docs = await api().get("/knowledge/documents", limit=100)  # the API lists them all; this agent's below
    calls = await api().get("/calls", agent_id=str(agent_id), limit=10)
    return await page("agent.html", title=reply.body["name"], agent=reply.body, verticals=VERTICALS,
                      saved=request.args.get("saved") == "1",
                      documents=[d for d in docs.body["items"] if d["agent_id"] == str(agent_id)]
                      if docs.ok else [],
                      calls=calls.body["items"] if calls.ok else [])


@bp.post("/console/agents/<uuid:agent_id>")
@signed_in
async def update_agent(agent_id: Any) -> Response:
    form = await request.form
    current = await api().get(f"/agents/{agent_id}")
    if not current.ok:
        return await api_failure(current)
    reply = await api().call("PATCH", f"/agents/{agent_id}", json_body=_agent_body(form, current.body))
    if reply.status == 422:
        return await page("agent.html", 422, title=current.body["name"], agent=current.body, draft=form,
                          verticals=VERTICALS, error=reply.problem(), documents=[], calls=[])
    if not reply.ok:
        return await api_failure(reply)
    return redirect(f"/console/agents/{agent_id}?saved=1", 303)

