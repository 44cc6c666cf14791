"""Call pages: the list with the API's filters, and one call's transcript, per-turn timeline, events
(tool calls and results, provider errors) and recording, all read through the API."""

from __future__ import annotations

from typing import Any, Final

from quart import Response, request

from control.web.core import api, api_failure, bp, page, signed_in
from control.web.dashboard_data import STAGES
from control.web.timeline import turn_rows

FILTERS: Final = ("status", "direction", "agent_id", "started_after", "started_before")
STATUSES: Final = ("queued", "ringing", "in_progress", "completed", "busy", "failed", "no_answer", "canceled")


def _day_bound(value: str | None, end: bool) -> str | None:
    """A date from the form's date input as the instant the API filters on (UTC day bounds)."""
    if not value:
        return None
    return f"{value}T{'23:59:59' if end else '00:00:00'}Z" if len(value) == 10 else value


@bp.get("/console/calls")
@signed_in
async def calls() -> Response:
    chosen = {k: request.args.get(k, "") for k in FILTERS}
    query = {**chosen, "started_after": _day_bound(chosen["started_after"], False),
             "started_before": _day_bound(chosen["started_before"], True)}
    reply = await api().get("/calls", limit=50, offset=request.args.get("offset", "0"), **query)
    if not reply.ok:
        return await api_failure(reply, title="Filter refused")
    agents = await api().get("/agents", limit=100)
    names = {a["id"]: a["name"] for a in agents.body["items"]} if agents.ok else {}
    return await page("calls.html", title="Calls", calls=reply.body["items"],
                      next_offset=reply.body["next_offset"], chosen=chosen, statuses=STATUSES,
                      agent_names=names)


@bp.get("/console/calls/<uuid:call_id>")
@signed_in
async def call(call_id: Any) -> Response:
    reply = await api().get(f"/calls/{call_id}")
    if not reply.ok:
        return await api_failure(reply)
    transcript = await api().get(f"/calls/{call_id}/transcript")
    events = await api().get(f"/calls/{call_id}/events", limit=1000)
    call = reply.body
    turns = transcript.body["turns"] if transcript.ok else []
    items = events.body["items"] if events.ok else []
    notable = [e for e in items if e["kind"] not in ("transcript", "agent_said", "turn")]
    agent = await api().get(f"/agents/{call['agent_id']}") if call.get("agent_id") else None
    return await page("call.html", title="Call", call=call, turns=turns, events=notable,
                      timeline=turn_rows(call.get("latency") or {}), stages=STAGES,
                      agent=agent.body if agent is not None and agent.ok else None,
                      has_recording=any(e["kind"] == "recording_ready" for e in items))


@bp.get("/console/calls/<uuid:call_id>/recording")
@signed_in
async def recording(call_id: Any) -> Response:
    reply = await api().get(f"/calls/{call_id}/recording")
    if not reply.ok:
        return await api_failure(reply)
    return Response(reply.data, content_type=reply.content_type or "audio/wav",
                    headers={"Cache-Control": "private, no-store"})
