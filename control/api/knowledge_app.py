"""Wire the knowledge base into the control app: its job runner and the larger body limit of uploads.

Uploads carry a whole document (up to `KnowledgeSettings.max_document_bytes`, base64 in JSON), while
every other route keeps the app's small body limit. Quart fixes a request's limit when it builds the
request, so the request class picks the limit from the path.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Quart
from quart.wrappers import Request

from control.api.routes.knowledge import KNOWLEDGE_KEY, UPLOAD_PATHS
from control.api.settings import ControlSettings
from control.api.state import ApiState
from control.knowledge.jobs import KnowledgeJobs
from control.knowledge.service import KnowledgeService

_UPLOAD_RE = re.compile(r"^/v1/tenants/[^/]+(?:" + "|".join(re.escape(p) for p in UPLOAD_PATHS)
                        + r")(?:/[^/]+)?/?$")


def upload_body_limit(max_document_bytes: int) -> int:
    # base64 is 4/3 of the bytes; 64 KiB more for the JSON around it.
    return max_document_bytes * 4 // 3 + 4 + 64 * 1024


def _request_class(upload_limit: int) -> type[Request]:
    class KnowledgeAwareRequest(Request):
        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
            if _UPLOAD_RE.match(path) and method in ("POST", "PUT"):
                kwargs["max_content_length"] = upload_limit
            super().__init__(method, scheme, path, *args, **kwargs)

    return KnowledgeAwareRequest


def install_knowledge(app: Quart, settings: ControlSettings, state: ApiState) -> KnowledgeJobs:
    """The app's knowledge job runner; the app starts it once the database is open and stops it first."""
    app.request_class = _request_class(upload_body_limit(settings.knowledge.max_document_bytes))

    def sessions() -> Any:
        if state.sessions is None:
            raise RuntimeError("the control API is not serving (no database engine yet)")
        return state.sessions

    jobs = KnowledgeJobs(KnowledgeService(settings.knowledge, sessions, settings.region))
    app.extensions[KNOWLEDGE_KEY] = jobs
    return jobs
