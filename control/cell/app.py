"""`create_cell_app(settings)`: a cell's control API plus, when NATS is configured, the voice webhook,
the call event consumer and the tenant webhook dispatcher, all in one process (one per region)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from quart import Quart

from cells.contract.call_token import CallTokenAuthority
from cells.contract.envelope import CallEventEnvelope
from control.api.app import HEALTH_PROBE_KEY, create_control_app
from control.api.routes.knowledge import KNOWLEDGE_KEY
from control.api.settings import ControlSettings
from control.api.state import api_state
from control.cell.runtime import CellRuntime
from control.cell.voice import cell_voice_blueprint
from control.knowledge.responder import KnowledgeResponder
from control.observability import control_metrics
from control.observability.ingest import consumer_pending, measured_ingest
from control.records.responder import RecordResponder
from control.records.service import RecordService
from control.web.workers import worker_load

log = logging.getLogger(__name__)
RUNTIME_KEY = "autospeak.cell"


def create_cell_app(settings: ControlSettings, *, call_token_secret: str | None = None) -> Quart:
    app = create_control_app(settings)
    if settings.nats_url is None:
        return app  # the REST API alone
    secret = call_token_secret or os.environ.get("AUTOSPEAK_CALL_TOKEN_SECRET", "")
    if len(secret) < 32:
        raise ValueError("AUTOSPEAK_CALL_TOKEN_SECRET (shared with the workers) needs 32 characters or more")
    metrics = control_metrics(app)
    runtime = CellRuntime(settings, ingest=measured_ingest(metrics))
    metrics.watch_runtime(runtime.health)
    metrics.probes.append(lambda: consumer_pending(metrics, runtime))
    app.extensions[RUNTIME_KEY] = runtime

    async def publish(event: CallEventEnvelope) -> None:
        await runtime.publish(event)

    async def request_slot(req: dict[str, Any]) -> dict[str, Any] | None:
        start, outcome = time.perf_counter(), "error"
        try:
            reply = await runtime.request_slot(req)
            worker_load(app).record(reply)  # the answer carries the worker's load, for the dashboard
            outcome = "accepted" if reply and reply.get("accepted") else "no_worker"
            return reply
        finally:
            metrics.slot_done(outcome, time.perf_counter() - start)

    async def should_resume(call_id: str) -> bool:
        return await runtime.should_resume(call_id)

    async def claim_call(call_id: str, **fields: Any) -> bool:
        return await runtime.claim_call(call_id, **fields)

    public = settings.public_base_url or settings.cells.get(settings.region, "")
    app.register_blueprint(cell_voice_blueprint(
        settings, tokens=CallTokenAuthority(secret), publish=publish, request_slot=request_slot,
        should_resume=should_resume, claim_call=claim_call,
        allow_insecure_streams=public.startswith("http://")))

    knowledge: list[KnowledgeResponder | RecordResponder] = []

    @app.before_serving
    async def _start_runtime() -> None:
        await runtime.start(api_state().sessions)
        if runtime.nc is not None:  # the region's workers search the knowledge through this cell
            responder = KnowledgeResponder(runtime.nc, app.extensions[KNOWLEDGE_KEY].service)
            await responder.start()
            knowledge.append(responder)
            # ... and keep their agents' tool records (screen results, reservations) in its database.
            service = RecordService(lambda: api_state().sessions, settings.region)
            records = RecordResponder(runtime.nc, service)
            await records.start()
            knowledge.append(records)

    async def _stop_runtime() -> None:
        for responder in knowledge:
            await responder.stop()
        knowledge.clear()
        await runtime.stop()

    # First of the after-serving handlers: the consumer and the dispatcher stop (and finish what they
    # hold) before the API closes the database engine under them.
    app.after_serving_funcs.insert(0, _stop_runtime)
    app.extensions[HEALTH_PROBE_KEY] = runtime.health

    return app
