"""The console in a real browser: Playwright driving Debian's chromium against a served cell app on the
embedded PostgreSQL, with calls put in through the real event ingest.

Skipped only when chromium is absent on a developer's machine; under CI (the CI variable set) a
missing chromium fails instead, so the browser tests cannot silently stop running there.
Screenshots go to reports/console/ (AUTOSPEAK_REPORTS overrides the root).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from web_fixtures import Site, console_site, require_browser, shot

from control.web.workers import worker_load

playwright, CHROMIUM = require_browser()
STAGES = {"turn_end": 130.0, "stt_final": 270.0, "first_token": 420.0, "first_tts_audio": 575.0,
          "first_frame_sent": 612.0}
SLOW = {"turn_end": 180.0, "stt_final": 340.0, "first_token": 1450.0, "first_tts_audio": 1700.0,
        "first_frame_sent": 1834.0}


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with console_site() as s:
        agent = s.api("POST", "a:owner", "/agents", json={"name": "Front desk", "persona": "Warm and brief."})
        assert agent.status_code == 201, agent.text
        s.agent_id = agent.json()["id"]  # type: ignore[attr-defined]
        s.call_id = s.call("a", s.agent_id, turns=[STAGES, SLOW])  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:  # after the site: its database setup needs the thread's loop free
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def sign_in(page: Any, site: Site, who: str) -> None:
    page.goto(site.url + "/")
    assert page.url.endswith("/signin")
    page.fill("#token", site.tokens[who])
    page.click("#signin")
    page.wait_for_url(re.compile(r"/dashboard$"))


def agent_persona(site: Site) -> str:
    return site.api("GET", "a:owner", f"/agents/{site.agent_id}").json()["persona"]  # type: ignore[attr-defined]


def test_root_leads_to_sign_in_and_a_wrong_token_is_refused_plainly(page: Any, site: Site) -> None:
    page.goto(site.url + "/")
    assert page.url == site.url + "/signin"
    shot(page, "signin")
    for wrong in ("not a token", "as_eu_" + "A" * 43, site.tokens["a:owner"][:-1] + "Z"):
        page.fill("#token", wrong)
        with page.expect_response(lambda r: r.request.method == "POST") as reply:
            page.click("#signin")
        assert reply.value.status == 401
        assert page.inner_text("#signin-error") == "That token was not accepted. Check it and try again."
    assert not [c for c in page.context.cookies() if c["name"] == "as_session"]
    shot(page, "signin-refused")


def test_session_cookie_is_httponly_strict_and_holds_no_token(page: Any, site: Site) -> None:
    sign_in(page, site, "a:owner")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "as_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"]  # plain http here; over https the flag is set (request.scheme)
    token = site.tokens["a:owner"]
    # The secret part (after "as_<region>_"; it may hold "_" itself): no 20-character run of it either.
    secret = token.split("_", 2)[-1]
    assert len(secret) >= 20 and token not in cookie["value"] and secret[:20] not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # not readable by scripts


def test_dashboard_shows_the_call_latency_and_links_a_slow_turn_to_its_timeline(page: Any,
                                                                                 site: Site) -> None:
    sign_in(page, site, "a:owner")
    assert page.inner_text("#v2v-p50") == "612"  # nearest-rank median of 612 and 1834
    assert page.inner_text("#turns") == "2"
    assert "1834 ms" in page.inner_text("#slow-turns")
    dots = page.locator("#v2v-chart a.turn-link")
    assert dots.count() == 2
    assert page.locator("#stage-chart svg rect").count() == 5
    page.select_option("#metric", "first_token")  # one stage over time: its own values, same turns
    titles = page.locator("#v2v-chart circle title").all_text_contents()
    assert sorted(t.split(" ms")[0] for t in titles) == ["1450", "420"]
    page.select_option("#metric", "v2v")
    shot(page, "dashboard")
    page.click("#slow-turns a")  # the slowest turn first
    page.wait_for_url(re.compile(rf"/console/calls/{site.call_id}#turn-2$"))  # type: ignore[attr-defined]
    row = page.locator("#turn-2")
    assert "1834 ms" in row.inner_text()
    assert "first token 1450" in row.inner_text()
    assert page.locator("#turn-2 svg rect").count() == 5
    assert "caller line 1" in page.inner_text("#transcript")
    shot(page, "call-timeline")


def test_the_call_recording_plays_in_the_page_and_only_for_its_tenant(page: Any, site: Site) -> None:
    call_id = site.call("a", site.agent_id, turns=[STAGES])  # type: ignore[attr-defined]
    site.recording("a", call_id, seconds=1.0)
    sign_in(page, site, "a:owner")
    page.goto(f"{site.url}/console/calls/{call_id}")
    page.evaluate("() => document.querySelector('#recording').play()")
    for _ in range(200):  # until the browser has decoded and started the served WAV
        if page.evaluate("() => document.querySelector('#recording').currentTime") > 0:
            break
        page.wait_for_timeout(50)
    audio = page.evaluate("() => { const a = document.querySelector('#recording');"
                          " return {t: a.currentTime, d: a.duration, err: a.error && a.error.code}; }")
    assert audio["err"] is None and audio["t"] > 0 and abs(audio["d"] - 1.0) < 0.01
    page.context.clear_cookies()
    sign_in(page, site, "b:owner")
    reply = page.request.get(f"{site.url}/console/calls/{call_id}/recording")
    assert reply.status == 404


def test_a_call_made_while_the_dashboard_is_open_appears_live(page: Any, site: Site) -> None:
    sign_in(page, site, "a:owner")
    worker = f"eu-live-{uuid.uuid4().hex[:6]}"
    assert worker not in page.inner_text("#live-table")
    site.call("a", site.agent_id, worker=worker, turns=[STAGES], end=False)  # type: ignore[attr-defined]
    # The cell hears each worker's load in its slot answers (control.cell.app records them).
    assert site.app is not None
    worker_load(site.app).record({"accepted": True, "worker_id": worker, "active": 3, "capacity": 12})
    # The page polls its data every few seconds; no reload here.
    playwright.expect(page.locator("#live-table")).to_contain_text(worker, timeout=30_000)
    assert page.locator("#live-chart svg rect").count() >= 1
    playwright.expect(page.locator("#worker-load")).to_contain_text("25.0 %", timeout=30_000)
    shot(page, "dashboard-live")


def test_owner_creates_and_edits_an_agent(page: Any, site: Site) -> None:
    sign_in(page, site, "a:owner")
    page.goto(site.url + "/console/agents")
    page.click("#new-agent")
    page.fill("#name", "Night line")
    page.fill("#persona", "Calm; takes messages after hours.")
    page.fill("#disclosure_text", "You are speaking with an AI assistant.")
    page.click("#save")
    page.wait_for_selector("#saved")
    agent_id = page.url.split("/console/agents/")[1].split("?")[0]
    stored = site.api("GET", "a:owner", f"/agents/{agent_id}").json()
    assert stored["persona"] == "Calm; takes messages after hours."
    assert stored["compliance"]["disclosure_text"] == "You are speaking with an AI assistant."
    page.fill("#persona", "Calm; books the next free morning slot.")
    page.uncheck("#ai_disclosure")
    page.click("#save")
    page.wait_for_selector("#saved")
    stored = site.api("GET", "a:owner", f"/agents/{agent_id}").json()
    assert stored["persona"] == "Calm; books the next free morning slot."
    assert stored["compliance"]["ai_disclosure"] is False
    shot(page, "agent-edit")
    page.fill("#name", "")  # the API's validation, shown with what was typed kept
    page.eval_on_selector("#name", "n => n.removeAttribute('required')")
    page.fill("#persona", "kept text")
    page.click("#save")
    assert page.inner_text("#form-error")
    assert page.input_value("#persona") == "kept text"


def test_a_forged_post_without_the_form_token_is_refused(page: Any, site: Site) -> None:
    sign_in(page, site, "a:owner")
    before = agent_persona(site)
    target = f"{site.url}/console/agents/{site.agent_id}"  # type: ignore[attr-defined]
    for forged in ({}, {"csrf": "forged"}):
        # The browser's own cookies ride along (same context), as a cross-site form would try.
        reply = page.request.post(target, form={"name": "Hijacked", "persona": "pwned", **forged})
        assert reply.status == 403
        assert "security check" in reply.text()
    assert agent_persona(site) == before
    # The same post with the page's token goes through: the refusal above was the token's doing.
    csrf = page.get_attribute("input[name=csrf]", "value")
    ok = page.request.post(target, form={"name": "Front desk", "persona": before + " ", "csrf": csrf},
                           max_redirects=0)
    assert ok.status == 303
    assert agent_persona(site) == before + " "


def test_a_viewer_sees_but_cannot_edit(page: Any, site: Site) -> None:
    sign_in(page, site, "a:viewer")
    assert page.text_content("#role") == "viewer"
    page.goto(f"{site.url}/console/agents/{site.agent_id}")  # type: ignore[attr-defined]
    assert page.is_visible("#read-only") and page.locator("#save").count() == 0
    assert page.get_attribute("#persona", "readonly") is not None
    shot(page, "agent-viewer")
    page.goto(site.url + "/console/agents")
    assert page.locator("#new-agent").count() == 0
    page.goto(site.url + "/console/agents/new")
    assert "cannot create agents" in page.inner_text("#error-message")
    # With a valid form token the API itself refuses the viewer's change.
    before = agent_persona(site)
    csrf = page.get_attribute("input[name=csrf]", "value")
    reply = page.request.post(f"{site.url}/console/agents/{site.agent_id}",  # type: ignore[attr-defined]
                              form={"name": "X", "persona": "viewer edit", "csrf": csrf})
    assert reply.status == 403 and "viewer" in reply.text()
    assert agent_persona(site) == before


def test_another_tenant_sees_none_of_it(page: Any, site: Site) -> None:
    sign_in(page, site, "b:owner")
    assert page.inner_text("#turns") == "0" and page.inner_text("#v2v-p50") == "—"
    page.goto(site.url + "/console/calls")
    assert "No calls match." in page.inner_text("#calls")
    reply = page.goto(f"{site.url}/console/calls/{site.call_id}")  # type: ignore[attr-defined]
    assert reply is not None and reply.status == 404
    reply = page.goto(f"{site.url}/console/agents/{site.agent_id}")  # type: ignore[attr-defined]
    assert reply is not None and reply.status == 404


def test_calls_list_filters_and_other_pages(page: Any, site: Site) -> None:
    sign_in(page, site, "a:owner")
    site.call("a", site.agent_id, turns=[], end=False)  # type: ignore[attr-defined]  # one still live
    for status in ("completed", "in_progress"):
        listed = site.api("GET", "a:owner", "/calls", params={"status": status}).json()["items"]
        page.goto(f"{site.url}/console/calls?status={status}")
        rows = page.locator("#calls tbody tr")
        assert listed and rows.count() == len(listed)
        assert {rows.nth(i).locator("span.tag").inner_text() for i in range(rows.count())} == {status}
    shot(page, "calls")
    page.goto(site.url + "/console/knowledge")
    page.fill("#title", "Opening hours")
    page.fill("#text", "We are open Monday to Friday, 8 to 18.")
    page.click("#upload-form button")
    page.wait_for_selector("#saved")
    assert "Opening hours" in page.inner_text("#documents")
    page.set_input_files("#file", files=[{"name": "parking.md", "mimeType": "text/markdown",
                                          "buffer": b"# Parking\n\nFree parking behind the clinic.\n"}])
    page.click("#upload-form button")
    page.wait_for_selector("#saved")
    assert "parking.md" in page.inner_text("#documents")
    page.set_input_files("#file", files=[{"name": "notes.exe", "mimeType": "application/octet-stream",
                                          "buffer": b"MZ"}])
    page.click("#upload-form button")
    assert "Upload one of" in page.inner_text("#form-error")
    shot(page, "knowledge")
    page.goto(site.url + "/console/webhooks")
    page.fill("#url", "http://127.0.0.1:9/hook")  # refused by the API's target check, shown as such
    page.click("#webhook-form button")
    assert "url" in page.inner_text("#form-error")
    page.fill("#url", "https://hooks.example.com/autospeak")
    page.fill("#event_types", "call.ended")
    page.click("#webhook-form button")
    assert page.inner_text("#signing-secret").startswith("whsec_")
    page.click("text=Open the endpoint")
    assert "No deliveries." in page.inner_text("#deliveries")
    for path, marker in (("/console/webhooks", "#endpoints"), ("/console/usage", "#usage")):
        page.goto(site.url + path)
        assert page.is_visible(marker)
        shot(page, marker[1:])


def test_sign_out_ends_the_session(page: Any, site: Site) -> None:
    sign_in(page, site, "a:operator")
    page.click("#signout")
    page.wait_for_url(re.compile(r"/signin\?reason=out$"))
    assert "signed out" in page.inner_text("main")
    assert not [c for c in page.context.cookies() if c["name"] == "as_session"]
    page.goto(site.url + "/dashboard")
    assert "/signin" in page.url


def test_a_revoked_token_ends_its_session(page: Any, site: Site) -> None:
    made = site.api("POST", "a:owner", "/tokens", json={"role": "operator", "name": "short-lived"})
    assert made.status_code == 201, made.text
    site.tokens["a:temp"] = made.json()["token"]
    sign_in(page, site, "a:temp")
    assert site.api("DELETE", "a:owner", f"/tokens/{made.json()['id']}").status_code == 204
    page.goto(site.url + "/console/agents")
    assert "/signin" in page.url and "session ended" in page.inner_text("main")
