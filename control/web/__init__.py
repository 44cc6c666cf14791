"""The cell's web pages: sign-in, the SRE dashboard and the tenant console (server-rendered by Quart,
with plain HTML, CSS and JavaScript from this package; nothing from npm or a CDN).

`install_web(app)` registers them on a control app; every tenant read and write goes through the app's
own API routes (see control.web.apiclient).
"""

from __future__ import annotations

from quart import Quart

from control.api.state import EXTENSION_KEY
from control.web import agents, calls, dashboard, signin, tenant_pages  # noqa: F401  (they add the routes)
from control.web.core import CODEC_KEY, bp
from control.web.session import SessionCodec, session_key
from control.web.workers import WORKERS_KEY, WorkerLoad


def install_web(app: Quart) -> None:
    settings = app.extensions[EXTENSION_KEY].settings
    app.extensions[CODEC_KEY] = SessionCodec(session_key(settings.secrets_key))
    app.extensions[WORKERS_KEY] = WorkerLoad()
    app.register_blueprint(bp)


__all__ = ["install_web"]
