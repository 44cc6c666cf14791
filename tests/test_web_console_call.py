"""A real call seen in the browser: the embedded stack's eu cell (PostgreSQL, NATS, the cell's control
plane, one pool worker), a scripted caller speaking in real time, and the console in chromium.

The owner edits the demo agent's disclosure in the console, then places a call while the dashboard is
open: the call shows as live on its worker, then its measured latency appears, the slowest turn links
to its timeline, the agent greets the caller with the new disclosure (the edit reached the next call),
and the recording plays in the page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cell_stack import place_call, running_stack, wait_completed
from web_fixtures import require_browser, shot

from cells.launcher.stack import EmbeddedStack

playwright, CHROMIUM = require_browser()
DISCLOSURE = "Hello, you have reached the console test line, and I am an automated assistant."


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(workers=1, capacity=2) as s:
        yield s


@pytest.fixture
def page(stack: EmbeddedStack) -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        pg = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def test_a_real_call_appears_live_then_with_its_latency_timeline_and_recording(
        page: Any, stack: EmbeddedStack) -> None:
    cell, demo = stack.api_url("eu"), stack.demo["eu"]
    page.goto(cell + "/")
    page.fill("#token", demo.owner_token)
    page.click("#signin")
    page.wait_for_url(re.compile(r"/dashboard$"))

    page.goto(f"{cell}/console/agents/{demo.agent_id}")
    page.fill("#disclosure_text", DISCLOSURE)
    page.click("#save")
    page.wait_for_selector("#saved")

    page.goto(cell + "/dashboard?hours=1")
    with ThreadPoolExecutor(1) as pool:  # the caller runs its own event loop beside Playwright's
        placed = pool.submit(lambda: asyncio.run(place_call(stack, "eu", "hours")))
        # Live while it lasts: the page polls every 5 s and the scripted call talks for longer.
        playwright.expect(page.locator("#live-table")).to_contain_text("eu", timeout=60_000)
        assert page.locator("#live-chart svg rect").count() == 1
        shot(page, "real-call-live")
        call = placed.result(timeout=300)
    call_id = wait_completed(stack, "eu", call.call_sid)

    page.goto(cell + "/dashboard?hours=1")
    assert int(page.inner_text("#turns")) >= 1
    assert page.inner_text("#v2v-p50").isdigit()
    assert page.locator("#stage-chart svg rect").count() >= 3
    assert call_id[:8] in page.inner_text("#slow-turns")
    shot(page, "real-call-dashboard")
    page.click(f"#slow-turns a[href^='/console/calls/{call_id}']")
    page.wait_for_url(re.compile(rf"/console/calls/{call_id}#turn-\d+$"))
    assert "first frame sent" in page.inner_text("#timeline")
    first_agent_line = page.locator("#transcript li.agent").first.inner_text()
    assert "console test line" in first_agent_line  # the edit made in the console, used by this call
    page.evaluate("() => document.querySelector('#recording').play()")
    for _ in range(200):
        if page.evaluate("() => document.querySelector('#recording').currentTime") > 0:
            break
        page.wait_for_timeout(50)
    audio = page.evaluate("() => { const a = document.querySelector('#recording');"
                          " return {t: a.currentTime, d: a.duration, err: a.error && a.error.code}; }")
    assert audio["err"] is None and audio["t"] > 0 and audio["d"] > 1
    shot(page, "real-call-timeline")
