"""`create_control_app(settings)`: the Quart app of one cell's control API.

The app owns its database engine, created when serving starts, because asyncpg connections belong
to the event loop that opened them and the server (granian, hypercorn, a test client) picks the loop.
"""

from __future__ import annotations

from quart import Quart, Response

from control.api.knowledge_app import install_knowledge
from control.api.openapi import build_document
from control.api.problems import install_error_handlers
from control.api.ratelimit import TokenBuckets
from control.api.routes import BLUEPRINTS
from control.api.routes.common import json_response
from control.api.settings import ControlSettings
from control.api.state import EXTENSION_KEY, ApiState
from control.db.session import create_engine, session_factory
from control.observability import install_metrics

# A process that adds parts to the API (the cell: NATS, the event consumer) registers a callable here
# returning {"ok": bool, ...}; /healthz then reports it and answers 503 while it is not ok.
HEALTH_PROBE_KEY = "autospeak.health"


def create_control_app(settings: ControlSettings) -> Quart:
    app = Quart(__name__, static_folder=None)
    # Quart answers 413 itself once a body passes this size, before any handler reads it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    state = ApiState(settings, TokenBuckets(settings.rate_per_second, settings.rate_burst))
    app.extensions[EXTENSION_KEY] = state
    install_error_handlers(app)
    install_metrics(app, settings.region, lambda: state.engine)  # GET /metrics, request timing
    knowledge_jobs = install_knowledge(app, settings, state)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    from control.web import install_web  # here, not at the top: control.web imports control.api

    install_web(app)  # sign-in, the SRE dashboard and the tenant console (control/web)

    @app.after_request
    async def _no_content(response: Response) -> Response:
        # 204 has no body (RFC 9110 15.3.5), so nothing describes one: Quart would add text/html.
        if response.status_code == 204:
            response.set_data(b"")
            for name in ("Content-Type", "Content-Length"):
                response.headers.pop(name, None)
        return response

    @app.before_serving
    async def _open_database() -> None:
        # hide_parameters: a database error's text never carries the statement's values (tenant data,
        # secrets), wherever it ends up (the error handler logs only the type and SQLSTATE anyway).
        state.engine = create_engine(settings.database_url, hide_parameters=True)
        state.sessions = session_factory(state.engine)
        await knowledge_jobs.start()

    @app.after_serving
    async def _close_database() -> None:
        await knowledge_jobs.stop()  # before the engine goes: a job in flight ends cleanly or resumes later
        if state.engine is not None:
            await state.engine.dispose()
        state.engine = state.sessions = None

    document = build_document(server_url=settings.cells.get(settings.region))

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return json_response(document)

    @app.get("/healthz")
    async def healthz() -> Response:
        body: dict[str, object] = {"status": "ok", "region": settings.region}
        probe = app.extensions.get(HEALTH_PROBE_KEY)
        if probe is None:
            return json_response(body)
        details = probe()
        body.update(details)
        if not details.get("ok", True):
            body["status"] = "degraded"
        return json_response(body, 200 if body["status"] == "ok" else 503)

    return app
