"""The `greenhouse` tool kind: a phone screen's result into Greenhouse Harvest (API v1) for Recruit.

Auth is HTTP Basic with the Harvest API key as the user name and an empty password (`secret` names the
key); every write carries `On-Behalf-Of: <config.user_id>`, the Greenhouse user it is done as. Errors
come as `{"message": ..., "errors": [{"message", "field"}]}`.

`submit_screen` finds the candidate (by email when given, else by phone among the job's candidates),
creates them with an application to `config.job_id` when there is none, adds the application when they
have none for the job, and adds the screen as a note on the candidate's activity feed. Harvest has no
idempotency key, so every step asks first: the candidate by email or phone, the application by job,
and the note by the reference (from the call's idempotency key) it ends with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from cells.tools.base import ToolError
from cells.tools.vendors.base import (
    OperationSpec,
    VendorHttp,
    VendorTool,
    bad_answer,
    common,
    http_for,
    require,
    secret_for,
)

BASE_URL = "https://harvest.greenhouse.io"
VENDOR = "Greenhouse"
PER_PAGE = 500  # Harvest's largest page
MAX_PAGES = 10
VISIBILITIES = ("admin_only", "private", "public")


def _error_message(body: Any) -> str:
    details = "; ".join(f"{e.get('field', '')}: {e.get('message', '')}".strip(": ")
                        for e in body.get("errors") or [] if isinstance(e, dict))
    return " - ".join(p for p in (str(body.get("message") or ""), details) if p)


def _digits(phone: Any) -> str:
    return re.sub(r"\D", "", str(phone or ""))


class GreenhouseTool(VendorTool):
    kind = "greenhouse"

    def __init__(self, name: str, operation: str, http: VendorHttp, *, job_id: int, user_id: int,
                 visibility: str = "public", description: str = "", mutating: bool = False) -> None:
        super().__init__(name, operation, http, description=description, mutating=mutating)
        self.job_id = job_id
        self.user_id = user_id
        self.visibility = visibility

    @classmethod
    def from_record(cls, tool: Mapping[str, Any], secrets: Callable[[str], str | None],
                    allow_private: bool) -> GreenhouseTool:
        name = str(tool.get("name") or "")
        config = tool.get("config") or {}
        key = secret_for(str(tool.get("secret") or ""), name, secrets)
        visibility = str(config.get("visibility") or "public")
        if visibility not in VISIBILITIES:
            raise ValueError(f"tool {name!r} (greenhouse): visibility is one of {', '.join(VISIBILITIES)}")
        user_id = int(require(config, "user_id", name, cls.kind))
        http = http_for(tool, VENDOR, BASE_URL, _error_message, allow_private, secrets=(key,),
                        auth=httpx.BasicAuth(key, ""), headers={"On-Behalf-Of": str(user_id)})
        job_id = int(require(config, "job_id", name, cls.kind))
        return cls(name, str(tool.get("operation") or "submit_screen"), http, job_id=job_id, user_id=user_id,
                   visibility=visibility, **common(tool))

    async def candidates(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            batch = await self.http.request("GET", "/v1/candidates",
                                            params={**params, "per_page": PER_PAGE, "page": page})
            if not isinstance(batch, list):
                raise bad_answer(VENDOR, "a list of candidates")
            found += [c for c in batch if isinstance(c, dict)]
            if len(batch) < PER_PAGE:
                break
        return found

    async def find_candidate(self, phone: str, email: str) -> dict[str, Any] | None:
        if email:
            found = await self.candidates({"email": email})
            if found:
                return found[0]
        wanted = _digits(phone)
        for candidate in await self.candidates({"job_id": self.job_id}):
            if any(_digits(p.get("value")) == wanted for p in candidate.get("phone_numbers") or []
                   if isinstance(p, dict)):
                return candidate
        return None

    def application_id(self, candidate: Mapping[str, Any]) -> int | None:
        for application in candidate.get("applications") or []:
            if any(job.get("id") == self.job_id for job in application.get("jobs") or []):
                return int(application["id"])
        return None


def _names(full: str, tool: str) -> tuple[str, str]:
    parts = full.split()
    if len(parts) < 2:
        raise ToolError("invalid_argument", f"{tool} needs the candidate's first and last name",
                        fields=["name"])
    return " ".join(parts[:-1]), parts[-1]


def _note(args: Mapping[str, Any], ref: str) -> str:
    outcome = "knocked out" if args.get("knocked_out") else "passed the knock-out questions"
    if args.get("knocked_out") and args.get("knockout_reason"):
        outcome += f" ({args['knockout_reason']})"
    lines = [f"Phone screen by the AutoSpeak agent: {outcome}."]
    if args.get("score") is not None:
        lines.append(f"Score: {args['score']}.")
    if args.get("summary"):
        lines.append(str(args["summary"]))
    lines.append(ref)
    return "\n".join(lines)


async def _submit_screen(tool: GreenhouseTool, args: Mapping[str, Any], key: str) -> dict[str, Any]:
    first, last = _names(str(args["name"]), tool.name)
    phone, email = str(args["phone"]), str(args.get("email") or "")
    candidate = await tool.find_candidate(phone, email)
    created = candidate is None
    if candidate is None:
        body: dict[str, Any] = {"first_name": first, "last_name": last,
                                "phone_numbers": [{"value": phone, "type": "mobile"}],
                                "applications": [{"job_id": tool.job_id}]}
        if email:
            body["email_addresses"] = [{"value": email, "type": "personal"}]
        candidate = await tool.http.request("POST", "/v1/candidates", json_body=body)
    if not isinstance(candidate, dict) or not isinstance(candidate.get("id"), int):
        raise bad_answer(VENDOR, "a candidate id")
    cid = candidate["id"]
    application_id = tool.application_id(candidate)
    if application_id is None:
        application = await tool.http.request("POST", f"/v1/candidates/{cid}/applications",
                                              json_body={"job_id": tool.job_id})
        if not isinstance(application, dict) or not isinstance(application.get("id"), int):
            raise bad_answer(VENDOR, "an application id")
        application_id = application["id"]
    ref = f"[AutoSpeak ref {key[:16]}]"
    feed = await tool.http.request("GET", f"/v1/candidates/{cid}/activity_feed")
    if not isinstance(feed, dict) or not isinstance(feed.get("notes", []), list):
        raise bad_answer(VENDOR, "an activity feed")
    note = next((n for n in feed.get("notes", []) if isinstance(n, dict) and ref in str(n.get("body"))), None)
    already = note is not None
    if note is None:
        note = await tool.http.request("POST", f"/v1/candidates/{cid}/activity_feed/notes",
                                       json_body={"user_id": tool.user_id, "body": _note(args, ref),
                                                  "visibility": tool.visibility})
        if not isinstance(note, dict) or "id" not in note:
            raise bad_answer(VENDOR, "a note id")
    return {"candidate_id": cid, "application_id": application_id, "note_id": note["id"],
            "candidate_created": created, "already_recorded": already}


GreenhouseTool.OPERATIONS = {
    "submit_screen": OperationSpec(_submit_screen, {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 3, "maxLength": 200},
                       "phone": {"type": "string", "pattern": r"^\+?[0-9 ()-]{7,20}$"},
                       "email": {"type": "string", "format": "email"},
                       "score": {"type": "number", "minimum": 0, "maximum": 100},
                       "knocked_out": {"type": "boolean"},
                       "knockout_reason": {"type": "string", "maxLength": 500},
                       "summary": {"type": "string", "maxLength": 4000}},
        "required": ["name", "phone", "knocked_out"], "additionalProperties": False},
        True, "Record the phone screen's result on the candidate's application."),
}
