"""A whole call with real audio through a cell, answered from a document the tenant uploaded through the
API: the clinic's tenant replaces its seeded FAQ with one whose wifi answer is new, the cell embeds it
into pgvector, and an eSpeak NG caller rings the cell's voice webhook. The worker asks the control plane
over NATS; the caller hears the uploaded answer, then "I don't know" for a question nothing covers.
What the caller heard is the agent's audio transcribed by a recogniser of its own."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest
from cell_stack import events_of, running_stack, wait_completed, wait_for

from cells.launcher.seed import demo_knowledge_files
from cells.launcher.stack import EmbeddedStack
from cells.simulator.caller import CallerLine, CallResult, ScriptedCaller
from cells.simulator.run import agent_utterances, transcribe
from cells.simulator.twilio_peer import TwilioPeer
from cells.speech.espeak import EspeakEngine

pytestmark = pytest.mark.slow

SEEDED = "free wifi is available in the waiting room"
ANSWER = "Yes: the wifi network is Bright Guest, and the password is on the blue card at the desk."
LINES = [
    CallerLine("Hi, is there wifi in the waiting room?"),
    CallerLine("And do you sell gift cards?"),
    CallerLine("No, thank you."),
    CallerLine("That's all, goodbye."),
]


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(workers={"eu": 1, "in": 1, "us": 1}) as s:
        yield s


def _replace_the_faq(stack: EmbeddedStack) -> None:
    """Replace the clinic's seeded FAQ through the API with one whose wifi answer is new, and wait until
    the cell has embedded it (the old chunks answer until the new ones replace them all)."""
    demo = stack.demo["eu"]
    base = f"{stack.api_url('eu')}/v1/tenants/{demo.tenant_id}/knowledge/documents"
    headers = {"Authorization": f"Bearer {demo.owner_token}"}

    def seeded() -> dict | None:
        docs = httpx.get(base, headers=headers, timeout=10).json()["items"]
        doc = next((d for d in docs if d["source_uri"] == "demo:clinic_faq.csv"), None)
        return doc if doc is not None and doc["status"] == "ready" else None

    doc = wait_for(seeded, timeout=300, what="the seeded FAQ to be embedded")
    [faq] = [p for p in demo_knowledge_files("clinic") if p.name == "clinic_faq.csv"]
    old = faq.read_text()
    assert SEEDED in old.lower()
    text = "\n".join(
        f"Is there wifi in the waiting room?,{ANSWER.replace(',', '')}" if "wifi" in line.lower() else line
        for line in old.splitlines())
    r = httpx.put(f"{base}/{doc['id']}", headers=headers, timeout=30, json={
        "title": "Clinic FAQ", "content_type": "text/csv", "text": text, "agent_id": demo.agent_id})
    assert r.status_code == 202, r.text

    def replaced() -> dict | None:
        now = httpx.get(f"{base}/{doc['id']}", headers=headers, timeout=10).json()
        assert now["status"] != "failed", now
        return now if now["status"] == "ready" and now["content_hash"] != doc["content_hash"] else None

    wait_for(replaced, timeout=180, what="the replaced FAQ to be embedded")


async def _call(stack: EmbeddedStack) -> tuple[str, CallResult]:
    peer = TwilioPeer(stack.api_url("eu"), stack.secrets["twilio_auth_token"],
                      to_number=stack.demo["eu"].number)
    await peer.open_stream(await peer.ring())
    result = await ScriptedCaller(peer, LINES, engine=EspeakEngine(), voice="en-us+f2", rate_wpm=170,
                                  max_call_s=120).run()
    return peer.call_sid, result


def test_a_caller_hears_the_answer_from_an_uploaded_document(stack: EmbeddedStack) -> None:
    _replace_the_faq(stack)
    sid, result = asyncio.run(_call(stack))
    call_id = wait_completed(stack, "eu", sid)
    events = events_of(stack, "eu", call_id)
    said = [str(e["payload"].get("text", "")) for e in events if e["kind"] == "agent_said"]
    texts = [(e["kind"], e["payload"].get("text")) for e in events if e["payload"].get("text")]
    # The uploaded answer, and nothing of the seeded one it replaced.
    answer = next((s for s in said if "blue card" in s.lower()), None)
    assert answer is not None, f"the call's words: {texts}"
    assert not any(SEEDED in s.lower() for s in said)
    refusal = next((s for s in said if "don't know" in s), None)
    assert refusal is not None, f"the call's words: {texts}"
    assert said.index(answer) < said.index(refusal)
    heard = _plain(" ".join(asyncio.run(transcribe([a for _, a in agent_utterances(result.agent_audio)]))))
    # Words only the uploaded answer has (Whisper on eSpeak's phone audio may blur the ends of phrases).
    assert "network" in heard and "blue" in heard, heard
    assert "don't know" in heard or "do not know" in heard, heard
