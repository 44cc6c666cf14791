"""A local stand-in for Greenhouse Harvest API v1 (candidates, applications, activity-feed notes),
speaking its wire format: HTTP Basic with the API key as user name and an empty password, the
`On-Behalf-Of` user id on every write, `{"message", "errors": [{"message", "field"}]}` errors, and
list endpoints paged by `per_page` and `page`. Candidates live in memory."""

from __future__ import annotations

import base64
import itertools
from typing import Any

from aiohttp import web

from .scripted import ScriptedFake

API_KEY = "harvest-key-5f0c2e9d71a84b36"
USER_ID = 7001
JOB_ID = 55


class FakeGreenhouse(ScriptedFake):
    def __init__(self) -> None:
        super().__init__()
        self.candidates: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.writes: list[tuple[str, Any]] = []  # (what, body) of every write
        self._ids = itertools.count(1001)

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "errors": [{"message": message, "field": "body"}]} if status == 422 \
            else {"message": message}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/candidates", self.list_candidates)
        app.router.add_post("/v1/candidates", self.create_candidate)
        app.router.add_post("/v1/candidates/{id}/applications", self.add_application)
        app.router.add_get("/v1/candidates/{id}/activity_feed", self.feed)
        app.router.add_post("/v1/candidates/{id}/activity_feed/notes", self.add_note)

    def _refuse(self, request: web.Request, write: bool) -> web.Response | None:
        expected = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"message": "Invalid Basic Auth credentials"}, status=401)
        if write and request.headers.get("On-Behalf-Of") != str(USER_ID):
            return web.json_response({"message": "Missing or invalid On-Behalf-Of header"}, status=403)
        return None

    def _candidate(self, request: web.Request) -> dict[str, Any] | None:
        return self.candidates.get(int(request.match_info["id"]))

    def add(self, first: str, last: str, phone: str, email: str = "",
            job_id: int | None = JOB_ID) -> dict[str, Any]:
        cid = next(self._ids)
        candidate = {"id": cid, "first_name": first, "last_name": last,
                     "phone_numbers": [{"value": phone, "type": "mobile"}],
                     "email_addresses": [{"value": email, "type": "personal"}] if email else [],
                     "applications": []}
        self.candidates[cid] = candidate
        self.notes[cid] = []
        if job_id is not None:
            self._apply(candidate, job_id)
        return candidate

    def _apply(self, candidate: dict[str, Any], job_id: int) -> dict[str, Any]:
        application = {"id": next(self._ids), "candidate_id": candidate["id"], "status": "active",
                       "jobs": [{"id": job_id, "name": "Warehouse Operative"}]}
        candidate["applications"].append(application)
        return application

    async def list_candidates(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, False)) is not None:
            return refused
        q = request.query
        found = list(self.candidates.values())
        if "email" in q:
            found = [c for c in found if any(e["value"] == q["email"] for e in c["email_addresses"])]
        if "job_id" in q:
            found = [c for c in found if any(j["id"] == int(q["job_id"]) for a in c["applications"]
                                             for j in a["jobs"])]
        per_page, page = int(q.get("per_page", 100)), int(q.get("page", 1))
        return web.json_response(found[(page - 1) * per_page: page * per_page])

    async def create_candidate(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, True)) is not None:
            return refused
        body = await request.json()
        if not body.get("first_name") or not body.get("last_name"):
            return web.json_response(self.error_body(422, "first_name and last_name are required"),
                                     status=422)
        self.writes.append(("candidate", body))
        emails = body.get("email_addresses") or []
        candidate = self.add(body["first_name"], body["last_name"], body["phone_numbers"][0]["value"],
                             emails[0]["value"] if emails else "", job_id=None)
        for application in body.get("applications") or []:
            self._apply(candidate, int(application["job_id"]))
        return web.json_response(candidate, status=201)

    async def add_application(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, True)) is not None:
            return refused
        candidate = self._candidate(request)
        if candidate is None:
            return web.json_response({"message": "Resource not found"}, status=404)
        body = await request.json()
        self.writes.append(("application", body))
        return web.json_response(self._apply(candidate, int(body["job_id"])), status=201)

    async def feed(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, False)) is not None:
            return refused
        candidate = self._candidate(request)
        if candidate is None:
            return web.json_response({"message": "Resource not found"}, status=404)
        return web.json_response({"notes": self.notes[candidate["id"]], "emails": [], "activities": []})

    async def add_note(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request, True)) is not None:
            return refused
        candidate = self._candidate(request)
        if candidate is None:
            return web.json_response({"message": "Resource not found"}, status=404)
        body = await request.json()
        visible = body.get("visibility") in ("admin_only", "private", "public")
        if body.get("user_id") != USER_ID or not visible:
            return web.json_response(self.error_body(422, "user_id and visibility are required"), status=422)
        self.writes.append(("note", body))
        note = {"id": next(self._ids), "created_at": "2026-03-02T09:00:00.000Z", "body": body["body"],
                "user": {"id": USER_ID, "name": "Rita Recruiter"}, "private": False,
                "visiblity": body["visibility"], "visibility": body["visibility"]}
        self.notes[candidate["id"]].append(note)
        return web.json_response(note, status=201)
