"""Worker metrics and traces on a real call: the embedded worker (its own process) is called by the
scripted caller over Twilio's protocol while /metrics is scraped; then its traces are read back."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cells.simulator.caller import ScriptedCaller
from cells.simulator.run import embedded_worker
from cells.simulator.scripts import SCRIPTS
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine

TOKEN = secrets.token_hex(16)
STAGES = ("vad_end", "endpointing", "stt_final", "first_token", "first_audio", "first_frame")


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("worker")
    os.environ.pop("AUTOSPEAK_METRICS_TOKEN", None)
    with embedded_worker(data, TOKEN) as url:
        yield url, data


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum over samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in metrics.items() if n == name and set(labels.items()) <= set(ls))


async def scrape(client: httpx.AsyncClient, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def call_while_scraping(url: str) -> tuple[str, str, list[float], dict[Any, float], dict[Any, float]]:
    """Runs the `hours` call; returns its CallSid and caller number, the active-call gauge as scraped
    during the call,
    and the metrics before and after."""
    async with httpx.AsyncClient(timeout=10) as client:
        before = await scrape(client, url)
        peer = TwilioPeer(url, TOKEN)
        await peer.open_stream(await peer.ring())
        caller = asyncio.create_task(ScriptedCaller(peer, SCRIPTS["hours"], engine=EspeakEngine(),
                                                    max_call_s=60).run())
        during: list[float] = []
        while not caller.done():
            during.append(value(await scrape(client, url), "autospeak_worker_active_calls"))
            await asyncio.sleep(0.25)
        await caller
        after: dict[Any, float] = {}
        for _ in range(100):  # the call record and its end are written just after the socket closes
            after = await scrape(client, url)
            ended = value(after, "autospeak_calls_ended_total") > value(before, "autospeak_calls_ended_total")
            if ended and value(after, "autospeak_worker_active_calls") == 0:
                break
            await asyncio.sleep(0.1)
        return peer.call_sid, peer.from_number, during, before, after


def record(data: Path, call_sid: str) -> dict[str, Any]:
    return json.loads((data / "calls" / f"{call_sid}.json").read_text())


def test_metrics_during_and_after_a_call_and_a_trace_per_turn_stage(worker: tuple[str, Path]) -> None:
    url, data = worker
    call_sid, from_number, during, before, after = asyncio.run(call_while_scraping(url))
    rec = record(data, call_sid)
    # During the call the worker counted it active; after, it counted it ended with its disposition.
    assert 1.0 in during, during
    assert value(after, "autospeak_worker_active_calls") == 0
    assert value(after, "autospeak_worker_capacity_calls") >= 1
    disposition = rec["disposition"]
    assert value(after, "autospeak_calls_ended_total", disposition=disposition) == \
        value(before, "autospeak_calls_ended_total", disposition=disposition) + 1
    assert value(after, "autospeak_calls_started_total") == value(before, "autospeak_calls_started_total") + 1
    # Every stage of a spoken turn was observed, and voice-to-voice too; frame pacing as well.
    spoken = [t for t in rec["turns"] if t["speech_end"] is not None and t["first_frame_sent"] is not None]
    assert spoken, rec["turns"]
    for stage in (*STAGES, "voice_to_voice"):
        grew = value(after, "autospeak_turn_stage_seconds_count", stage=stage) - \
            value(before, "autospeak_turn_stage_seconds_count", stage=stage)
        assert grew >= len(spoken), (stage, grew)
    assert value(after, "autospeak_playout_frame_lateness_seconds_count") > 0
    # No ids and no caller words in the metrics.
    text = httpx.get(url + "/metrics", timeout=5).text
    assert rec["call_id"] not in text and rec["tenant_id"] not in text and call_sid not in text
    assert from_number.lstrip("+") not in text

    traces = httpx.get(url + "/traces/recent", params={"call_id": rec["call_id"]}, timeout=5).json()["traces"]
    assert len(traces) == 1, traces
    spans = traces[0]["spans"]
    by_id = {s["span_id"]: s for s in spans}
    (root,) = [s for s in spans if s["name"] == "call"]
    assert root["parent_id"] is None and root["attributes"]["disposition"] == disposition
    turns = [s for s in spans if s["name"] == "turn"]
    assert len(turns) == len(rec["turns"]) and all(t["parent_id"] == root["span_id"] for t in turns)
    first = next(t for t in turns if t["attributes"]["turn.index"] == spoken[0]["index"])
    children = [s for s in spans if s["parent_id"] == first["span_id"]]
    assert sorted(s["name"] for s in children) == sorted(STAGES)  # one span per stage, no more
    for s in children:
        assert s["start_unix_nano"] <= s["end_unix_nano"]
        assert first["start_unix_nano"] <= s["start_unix_nano"]
        assert s["end_unix_nano"] <= first["end_unix_nano"]
    # The stage spans follow each other as the turn's stages did.
    ordered = sorted(children, key=lambda s: STAGES.index(s["name"]))
    assert all(a["end_unix_nano"] == b["start_unix_nano"] for a, b in itertools.pairwise(ordered))
    for s in spans:
        attrs = s["attributes"]
        assert attrs["call_id"] == rec["call_id"] and attrs["tenant_id"] == rec["tenant_id"]
        assert attrs["agent_id"] == rec["agent_id"] and attrs["region"]
        assert s["parent_id"] is None or s["parent_id"] in by_id
    # No caller (or agent) words anywhere in the trace, and not the caller's number either.
    dumped = json.dumps(traces)
    for t in rec["turns"]:
        for words in (t["caller_text"], t["agent_text"]):
            assert not words or words not in dumped
    assert from_number.lstrip("+") not in dumped
