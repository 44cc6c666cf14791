"""The `greenhouse` tool kind against a local server speaking Greenhouse Harvest v1: the screen's result
lands once as a note on the candidate's application (found by phone or email, created when new),
with Basic auth and On-Behalf-Of, and every failure is `ok: false` with no secret in it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from vendor_fakes.greenhouse_fake import API_KEY, JOB_ID, USER_ID, FakeGreenhouse

from cells.tools.base import ToolRegistry
from cells.tools.vendors import build_vendor_tool

SCREEN = {"name": "Sam de Vries", "phone": "+44 7700 900123", "score": 82, "knocked_out": False,
          "summary": "Forklift licence; can work nights."}


def record(url: str, **config: Any) -> dict[str, Any]:
    return {"name": "submit_screen", "kind": "greenhouse", "operation": "submit_screen",
            "secret": "ats_key", "timeout_s": 1.0,
            "config": {"base_url": url, "job_id": JOB_ID, "user_id": USER_ID, **config}}


def tools(url: str, key: str = API_KEY, **config: Any) -> ToolRegistry:
    return ToolRegistry([build_vendor_tool(record(url, **config), {"ats_key": key}.get, True)])


def run(body: Callable[[FakeGreenhouse], Awaitable[None]]) -> None:
    async def main() -> None:
        async with FakeGreenhouse() as server:
            await body(server)  # type: ignore[arg-type]
    asyncio.run(main())


async def submit(registry: ToolRegistry, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return await registry.call("submit_screen", args or SCREEN, confirmed=True)


def test_a_new_candidate_is_created_on_the_job_with_the_screen_as_a_note() -> None:
    async def body(gh: FakeGreenhouse) -> None:
        result = await submit(tools(gh.url))
        assert result["ok"] is True and result["candidate_created"] is True, result
        (candidate,) = gh.candidates.values()
        assert (candidate["first_name"], candidate["last_name"]) == ("Sam de", "Vries")
        assert result["application_id"] == candidate["applications"][0]["id"]
        assert candidate["applications"][0]["jobs"][0]["id"] == JOB_ID
        (note,) = gh.notes[candidate["id"]]
        assert "passed the knock-out questions" in note["body"] and "Score: 82." in note["body"]
        assert "Forklift licence" in note["body"] and note["visibility"] == "public"
        assert re.search(r"\[AutoSpeak ref [0-9a-f]{16}\]$", note["body"])
    run(body)


def test_a_known_candidate_is_found_by_phone_or_email_and_not_created_again() -> None:
    async def body(gh: FakeGreenhouse) -> None:
        known = gh.add("Sam", "de Vries", "+447700900123")
        knocked = await submit(tools(gh.url), {**SCREEN, "knocked_out": True,
                                               "knockout_reason": "no right to work"})
        assert knocked["ok"] is True and knocked["candidate_id"] == known["id"]
        assert knocked["candidate_created"] is False
        assert "knocked out (no right to work)" in gh.notes[known["id"]][0]["body"]
        by_email = gh.add("Jo", "Park", "+15005550006", email="jo@example.org", job_id=None)
        result = await submit(tools(gh.url), {"name": "Jo Park", "phone": "+1 500 555 0007",
                                              "email": "jo@example.org", "knocked_out": False})
        assert result["candidate_id"] == by_email["id"] and result["ok"] is True
        assert [w[0] for w in gh.writes] == ["note", "application", "note"]  # applied to the job first
    run(body)


@pytest.mark.parametrize("step", ["/v1/candidates", "/v1/candidates/1001/activity_feed/notes"])
def test_a_retry_after_a_lost_answer_writes_each_thing_once(step: str) -> None:
    async def body(gh: FakeGreenhouse) -> None:
        registry = tools(gh.url)
        gh.fail_next("POST", step, "lost")
        lost = await submit(registry)
        assert lost["ok"] is False and lost["error"] == "vendor_error"
        again = await submit(registry)
        assert again["ok"] is True, again
        repeated = await submit(registry)
        assert repeated["already_recorded"] is True and repeated["note_id"] == again["note_id"]
        kinds = [w[0] for w in gh.writes]
        assert kinds.count("candidate") == 1 and kinds.count("note") == 1 and len(gh.candidates) == 1
    run(body)


@pytest.mark.parametrize(("method", "path", "mode", "status", "error"), [
    ("POST", "/v1/candidates/", "status", 422, "vendor_refused"),  # the note
    ("POST", "/v1/candidates", "status", 500, "vendor_error"),
    ("GET", "/v1/candidates", "hang", 0, "vendor_timeout"),
    ("GET", "/v1/candidates", "garbage", 0, "vendor_bad_answer"),
])
def test_every_failure_is_a_result_that_says_so(method: str, path: str, mode: str, status: int,
                                                error: str) -> None:
    async def body(gh: FakeGreenhouse) -> None:
        if path == "/v1/candidates/":
            gh.add("Sam", "de Vries", "+447700900123")
        gh.fail_next(method, path, mode, status, message=f"body is invalid for {API_KEY}")
        result = await submit(tools(gh.url))
        assert result["ok"] is False and result["error"] == error, result
        assert API_KEY not in json.dumps(result)
        assert not [w for w in gh.writes if w[0] == "note"]
        if error == "vendor_refused":
            assert "body is invalid for [redacted]" in result["message"]
    run(body)


def test_a_wrong_key_is_an_auth_failure_and_a_one_word_name_is_refused_before_any_request() -> None:
    async def body(gh: FakeGreenhouse) -> None:
        wrong = await submit(tools(gh.url, key="not-the-key"))
        assert wrong["ok"] is False and wrong["error"] == "vendor_auth" and wrong["status"] == 401
        assert "Invalid Basic Auth credentials" in wrong["message"] and "not-the-key" not in json.dumps(wrong)
        before = len(gh.seen)
        short = await submit(tools(gh.url), {**SCREEN, "name": "Sam"})
        assert short["ok"] is False and short["error"] == "invalid_argument" and short["fields"] == ["name"]
        typed = await submit(tools(gh.url), {**SCREEN, "score": "eighty"})
        assert typed["ok"] is False and typed["error"] == "invalid_argument"
        assert len(gh.seen) == before and gh.writes == []
    run(body)


def test_writes_are_made_on_behalf_of_the_configured_user() -> None:
    async def body(gh: FakeGreenhouse) -> None:
        other = await submit(tools(gh.url, user_id=USER_ID + 1))
        assert other["ok"] is False and other["error"] == "vendor_auth" and other["status"] == 403
        assert gh.writes == []
    run(body)


@pytest.mark.parametrize(("config", "message"), [
    ({"user_id": None}, "config.user_id"), ({"job_id": ""}, "config.job_id"),
    ({"visibility": "everyone"}, "visibility is one of")])
def test_a_record_that_cannot_run_is_refused_when_built(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_vendor_tool(record("http://127.0.0.1:9", **config), {"ats_key": API_KEY}.get, True)
