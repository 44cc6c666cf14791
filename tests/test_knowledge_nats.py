"""The worker's knowledge search over NATS request/reply, answered by the control plane's responder on
a real nats-server and the real database: the same answers as the API, scoped to the asking tenant,
and an answer that is not `known` whenever the search cannot run (never a guess)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator

import nats
import pytest
from control_api_fixtures import FAST, Api, control_api
from test_knowledge_api import CLINIC_MD, LIMITS, owner, upload, wait_done

from cells.agents.reception.policy import ReceptionPolicy
from cells.contract.knowledge import NatsKnowledgeSearch, knowledge_search_subject
from cells.launcher.nats import nats_server_binary
from cells.launcher.ports import free_port
from cells.providers.base import Message, TextDelta
from cells.worker.agent import agent_from_spec
from control.knowledge.responder import KnowledgeResponder
from control.knowledge.service import KnowledgeService


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST, knowledge=LIMITS) as api:
        reply = upload(api, {"title": "Clinic", "content_type": "text/markdown", "text": CLINIC_MD})
        assert wait_done(api, reply.body["id"])["status"] == "ready"
        yield api


async def _connect(url: str) -> nats.aio.client.Client:
    for _ in range(100):
        try:
            return await nats.connect(url, max_reconnect_attempts=0)
        except Exception:
            await asyncio.sleep(0.05)
    raise AssertionError("nats-server did not start")


def test_workers_get_the_tenants_answers_over_nats(api: Api, nats_url: str) -> None:
    question = "how much does it cost to whiten my teeth"
    via_api = api.call(
        "POST", api.tenant_path("a", "/knowledge/search"), token=owner(api), json={"question": question}
    ).body

    async def scenario() -> None:
        nc = await _connect(nats_url)
        responder = KnowledgeResponder(nc, KnowledgeService(LIMITS, lambda: api.db.sessions, "eu"))
        await responder.start()
        try:
            a = NatsKnowledgeSearch(nc, "eu", str(api.tenants["a"]), budget_s=30)
            answer = await a.search(question)
            assert answer.known and answer.error is None
            assert "Teeth whitening" in answer.hits[0].text and answer.best is answer.hits[0]
            assert [h.text for h in answer.hits] == [h["text"] for h in via_api["hits"]]
            unknown = await a.search("what is the capital of peru")
            assert not unknown.known and unknown.best is None and unknown.hits
            # Another tenant asking the same: nothing of a's.
            b = await NatsKnowledgeSearch(nc, "eu", str(api.tenants["b"]), budget_s=30).search(
                "teeth whitening"
            )
            assert b.hits == [] and not b.known
            bad = json.loads(
                (await nc.request(knowledge_search_subject("eu"), b'{"tenant_id": "x"}', timeout=30)).data
            )
            assert bad["known"] is False and bad["error"] == "malformed query"
            long = await NatsKnowledgeSearch(nc, "eu", str(api.tenants["a"]), budget_s=30).search("x" * 1001)
            assert not long.known and "1 to 1000" in (long.error or "")
        finally:
            await responder.stop()
        # No responder: the worker hears "not known" within its budget instead of waiting.
        gone = await NatsKnowledgeSearch(nc, "eu", str(api.tenants["a"]), budget_s=0.2).search("whitening")
        assert not gone.known and gone.error in ("NoRespondersError", "TimeoutError")
        await nc.close()

    api.db.run(scenario())


def test_a_cells_rules_brain_answers_from_the_tenants_documents_over_nats(api: Api, nats_url: str) -> None:
    """The clinic's rules, built for a cell's agent as the coordinated worker builds it (the agent record
    names its tenant), answer a free question from the tenant's uploaded FAQ in pgvector."""
    faq = "question,answer\nIs there wifi in the waiting room?,Yes: free wifi; the password is at the desk.\n"
    doc = upload(api, {"title": "Clinic FAQ", "content_type": "text/csv", "text": faq})
    assert wait_done(api, doc.body["id"])["status"] == "ready"
    spec = {"id": "", "tenant_id": str(api.tenants["a"])}
    assert NatsKnowledgeSearch.for_agent(None, "eu", spec) is None  # no connection, no search

    async def turn(policy: ReceptionPolicy, question: str) -> str:
        history = [Message("assistant", "Hello."), Message("user", question)]
        return "".join([i.text async for i in policy.complete(history) if isinstance(i, TextDelta)])

    async def scenario() -> None:
        nc = await _connect(nats_url)
        responder = KnowledgeResponder(nc, KnowledgeService(LIMITS, lambda: api.db.sessions, "eu"))
        await responder.start()
        try:
            # As the coordinated worker builds a cell's agent: its brain searches over this connection.
            agent = agent_from_spec({**spec, "id": str(uuid.uuid4())}, data_dir=None, nc=nc, region="eu")
            policy = agent.brain
            assert isinstance(policy, ReceptionPolicy) and policy.knowledge is not None
            search = policy.knowledge.search
            assert isinstance(search, NatsKnowledgeSearch) and search.tenant_id == spec["tenant_id"]
            search.budget_s = policy.knowledge.budget_s = 30  # a loaded machine; the budget is tested apart
            assert "free wifi" in await turn(policy, "Is there wifi in the waiting room?")
            assert "don't know" in await turn(policy, "Do you sell gift cards?")
        finally:
            await responder.stop()
            await nc.close()

    api.db.run(scenario())
