"""Knowledge over the control API on the real embedded PostgreSQL + pgvector, with the real MiniLM
encoder: every upload type reaches `ready` with chunks, duplicates are idempotent, delete is hard,
tenants are isolated, bad input is a problem+json that writes nothing, URLs inside the network are
refused, and search finds paraphrases and abstains on what the knowledge does not hold."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from control_api_fixtures import FAST, Api, api_with, control_api, fetch, insert
from knowledge_fixtures import http_server, make_pdf

from cells.knowledge.chunker import Chunk
from cells.knowledge.embedder import MiniLmEmbedder
from cells.knowledge.scoring import IndexedChunk, VectorIndex
from control.db.models import KnowledgeChunk, KnowledgeDocument
from control.knowledge.settings import KnowledgeSettings

LIMITS = KnowledgeSettings(max_document_bytes=200_000, max_documents=8)

CLINIC_MD = """# Bright Smile Dental

## Opening hours
We are open Monday to Friday from 8 am to 6 pm, and Saturday from 9 am to 1 pm. We are closed on Sundays.

## Prices
| Treatment | Price |
|---|---|
| Check-up and cleaning | $95 |
| Teeth whitening | $350 |
| Filling | from $120 |

## Cancellation policy
Please give us 24 hours notice to cancel or move an appointment. Late cancellations cost $40.
"""

HOTEL_HTML = """<html><body><h1>Harbour House</h1>
<h2>Parking</h2><p>Guests park free of charge in our garage on Quay Street.</p>
<h2>Pets</h2><p>Dogs are welcome in ground floor rooms for a fee of 25 dollars a night.</p>
</body></html>"""

FAQ_CSV = (
    "question,answer\nDo you offer night shifts?,Yes: night shifts run 10 pm to 6 am.\n"
    "Is there a uniform?,We provide safety boots and a hi-vis vest.\n"
)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST, knowledge=LIMITS) as api:
        yield api


def owner(api: Api, label: str = "a") -> str:
    return api.tokens[f"{label}:owner"]


def upload(api: Api, body: dict[str, Any], label: str = "a", token: str | None = None) -> Any:
    return api.call(
        "POST", api.tenant_path(label, "/knowledge/documents"), token=token or owner(api, label), json=body
    )


def wait_done(api: Api, doc_id: str, label: str = "a") -> dict[str, Any]:
    for _ in range(600):
        reply = api.call(
            "GET", api.tenant_path(label, f"/knowledge/documents/{doc_id}"), token=owner(api, label)
        )
        assert reply.status == 200, reply.text
        if reply.body["status"] in ("ready", "failed"):
            return reply.body
        api.db.run(asyncio.sleep(0.05))
    raise AssertionError(f"job {doc_id} never finished: {reply.body}")


def search(api: Api, question: str, label: str = "a", **extra: Any) -> dict[str, Any]:
    reply = api.call(
        "POST",
        api.tenant_path(label, "/knowledge/search"),
        token=owner(api, label),
        json={"question": question, **extra},
    )
    assert reply.status == 200, reply.text
    return reply.body


def docs(api: Api) -> list[Any]:
    return fetch(api, KnowledgeDocument)


@pytest.fixture(scope="module")
def loaded(api: Api) -> dict[str, str]:
    """One ready document of each type for tenant a."""
    ids = {}
    bodies = {
        "markdown": {"title": "Clinic", "content_type": "text/markdown", "text": CLINIC_MD},
        "html": {"title": "Hotel", "content_type": "text/html", "text": HOTEL_HTML},
        "csv": {"title": "Job FAQ", "content_type": "text/csv", "text": FAQ_CSV},
        "plain": {
            "title": "Notes",
            "content_type": "text/plain",
            "text": "The warehouse canteen serves hot lunches for three pounds.\n\nLockers are free.",
        },
        "pdf": {
            "title": "Policy PDF",
            "content_type": "application/pdf",
            "content_base64": base64.b64encode(
                make_pdf(["Payslips are sent by email every second Friday."])
            ).decode(),
        },
    }
    for kind, body in bodies.items():
        reply = upload(api, body)
        assert reply.status == 202, reply.text
        assert reply.body["status"] == "queued"
        ids[kind] = reply.body["id"]
    for kind, doc_id in ids.items():
        done = wait_done(api, doc_id)
        assert done["status"] == "ready", (kind, done)
        assert done["chunk_count"] >= 1 and done["embedding_model"] == "all-MiniLM-L6-v2"
    return ids


def test_every_type_becomes_ready_with_chunks_in_the_home_partition(api: Api, loaded: dict[str, str]) -> None:
    for kind, doc_id in loaded.items():
        chunks = fetch(api, KnowledgeChunk, document_id=uuid.UUID(doc_id))
        assert chunks, kind
        assert {c.region for c in chunks} == {"eu"} and {c.tenant_id for c in chunks} == {api.tenants["a"]}
        assert all(len(c.embedding) == 384 for c in chunks)
    # A table row is one chunk that keeps its column names and its section.
    rows = [
        c
        for c in fetch(api, KnowledgeChunk, document_id=uuid.UUID(loaded["markdown"]))
        if "whitening" in c.text.lower()
    ]
    assert len(rows) == 1 and "Price: $350" in rows[0].text and rows[0].section.endswith("Prices")
    faq = fetch(api, KnowledgeChunk, document_id=uuid.UUID(loaded["csv"]))
    assert sorted(c.text for c in faq)[0].startswith("Q: Do you offer night shifts? A: Yes")
    # The upload's bytes are dropped once the job is done.
    held = api.db.run(
        _scalar(
            api, "SELECT count(*) FROM knowledge_documents WHERE content IS NOT NULL AND status = 'ready'"
        )
    )
    assert held == 0


async def _scalar(api: Api, sql: str, **params: Any) -> Any:
    from sqlalchemy import text

    async with api.db.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


def test_paraphrased_questions_find_their_chunk(api: Api, loaded: dict[str, str]) -> None:
    cases = {
        "how much do you charge to make my teeth whiter": "whitening",
        "can I leave my car somewhere at the hotel": "park free",
        "what happens if I cancel the same day": "24 hours",
        "is the dentist open on saturdays": "saturday",
        "when do I get paid": "payslips",
        "can I bring my dog": "dogs are welcome",
    }
    for question, needle in cases.items():
        answer = search(api, question)
        assert answer["known"], (question, answer)
        assert (
            needle in answer["hits"][0]["text"].lower() or needle in answer["hits"][0]["section"].lower()
        ), (question, answer["hits"][0])
        assert answer["hits"][0]["document_title"]


def test_questions_outside_the_knowledge_come_back_below_the_threshold(
    api: Api, loaded: dict[str, str]
) -> None:
    for question in (
        "who won the football last night",
        "what is the capital of peru",
        "can you recommend a good mortgage broker",
    ):
        answer = search(api, question)
        assert not answer["known"], (question, answer["hits"][:1])
        assert answer["hits"][0]["score"] < answer["threshold"]


def test_pgvector_cosine_equals_numpy_cosine(api: Api, loaded: dict[str, str]) -> None:
    """The service (pgvector's HNSW cosine, then the re-ranking) and the benchmark's in-memory twin
    (numpy dot products of the same vectors, the same re-ranking) return the same hits and scores."""
    question = "what are your opening hours"
    answer = search(api, question, top_k=20)
    rows = fetch(api, KnowledgeChunk, tenant_id=api.tenants["a"])
    titles = {str(d.id): d.title for d in docs(api)}
    items = [
        IndexedChunk(Chunk(r.seq, r.text, r.section, "text"), str(r.document_id), titles[str(r.document_id)])
        for r in rows
    ]
    index = VectorIndex(items, np.asarray([r.embedding for r in rows], dtype=np.float32))
    query = MiniLmEmbedder().encode([question])[0]
    twin = index.search(question, query, 20)
    got = [(h["text"], h["document_id"]) for h in answer["hits"]]
    assert got == [(h.text, h.document_id) for h in twin]
    assert np.allclose([h["score"] for h in answer["hits"]], [h.score for h in twin], atol=1e-4)
    # Scores are cosine similarities: the numpy dot product of the stored unit vectors.
    by_text = {r.text: float(np.dot(np.asarray(r.embedding, dtype=np.float32), query)) for r in rows}
    assert all(abs(h["score"] - by_text[h["text"]]) < 1e-4 for h in answer["hits"])


def test_duplicate_upload_is_idempotent(api: Api, loaded: dict[str, str]) -> None:
    before = len(docs(api))
    again = upload(api, {"title": "Clinic again", "content_type": "text/markdown", "text": CLINIC_MD})
    assert again.status == 200 and again.body["id"] == loaded["markdown"] and again.body["title"] == "Clinic"
    assert len(docs(api)) == before


def test_other_tenants_can_neither_see_nor_search(api: Api, loaded: dict[str, str]) -> None:
    got = api.call(
        "GET", api.tenant_path("b", f"/knowledge/documents/{loaded['markdown']}"), token=owner(api, "b")
    )
    assert got.status == 404
    listed = api.call("GET", api.tenant_path("b", "/knowledge/documents"), token=owner(api, "b"))
    assert listed.status == 200 and listed.body["items"] == []
    # c is homed in us: this eu cell sends it to its own cell, which holds none of eu's rows.
    got = api.call(
        "GET", api.tenant_path("c", f"/knowledge/documents/{loaded['markdown']}"), token=owner(api, "c")
    )
    assert got.status == 307 and got.body["home_region"] == "us"
    answer = search(api, "how much is teeth whitening", label="b")
    assert answer["hits"] == [] and not answer["known"]
    # b's token on a's path is refused outright.
    cross = api.call(
        "POST",
        api.tenant_path("a", "/knowledge/search"),
        token=owner(api, "b"),
        json={"question": "whitening"},
    )
    assert cross.status == 401
    deleting = api.call(
        "DELETE", api.tenant_path("b", f"/knowledge/documents/{loaded['markdown']}"), token=owner(api, "b")
    )
    assert deleting.status == 404 and fetch(api, KnowledgeDocument, id=uuid.UUID(loaded["markdown"]))


def test_a_viewer_may_search_but_not_upload(api: Api, loaded: dict[str, str]) -> None:
    refused = upload(
        api, {"title": "x", "content_type": "text/plain", "text": "hello"}, token=api.tokens["a:viewer"]
    )
    assert refused.status == 403


def _assert_refused(api: Api, body: dict[str, Any], status: int, slug: str) -> Any:
    before = len(docs(api))
    reply = upload(api, body)
    assert reply.status == status, reply.text
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.body["type"].endswith(slug), reply.body
    assert len(docs(api)) == before
    return reply


def test_bad_uploads_are_problems_that_write_nothing(api: Api) -> None:
    _assert_refused(api, {"title": "empty", "content_type": "text/plain", "text": ""}, 422, "validation")
    _assert_refused(
        api, {"title": "blank", "content_type": "text/markdown", "text": "\n\n  \n"}, 422, "validation"
    )
    garbage = base64.b64encode(bytes(range(256)) * 8).decode()
    bad = _assert_refused(
        api, {"title": "junk", "content_type": "text/plain", "content_base64": garbage}, 422, "validation"
    )
    assert "not UTF-8" in bad.body["detail"] or "binary" in bad.body["detail"]
    broken_pdf = base64.b64encode(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage").decode()
    bad = _assert_refused(
        api,
        {"title": "pdf", "content_type": "application/pdf", "content_base64": broken_pdf},
        422,
        "validation",
    )
    assert "PDF" in bad.body["detail"]
    not_pdf = base64.b64encode(b"just words").decode()
    _assert_refused(
        api, {"title": "pdf", "content_type": "application/pdf", "content_base64": not_pdf}, 422, "validation"
    )
    _assert_refused(
        api, {"title": "word", "content_type": "application/msword", "text": "hi"}, 422, "validation"
    )
    _assert_refused(
        api,
        {"title": "two", "content_type": "text/plain", "text": "a", "url": "https://x.example"},
        422,
        "validation",
    )
    _assert_refused(
        api, {"title": "b64", "content_type": "text/plain", "content_base64": "***"}, 422, "validation"
    )
    huge = "word " * 50_000  # 250 kB > the 200 kB limit of this app
    _assert_refused(
        api, {"title": "huge", "content_type": "text/plain", "text": huge}, 413, "document-too-large"
    )
    _assert_refused(
        api,
        {"title": "csv", "content_type": "text/csv", "text": "question,answer\nonly a question,\n"},
        422,
        "validation",
    )
    assert not [d for d in docs(api) if d.status in ("queued", "processing")]


def test_urls_inside_the_network_are_refused(api: Api) -> None:
    with http_server({"/doc.txt": (200, {"Content-Type": "text/plain"}, b"Secret internal page.")}) as base:
        reply = _assert_refused(api, {"title": "internal", "url": f"{base}/doc.txt"}, 422, "validation")
        assert "public" in reply.body["detail"]
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/x",
        "http://10.0.0.5/",
        "http://[::1]/",
        "file:///etc/passwd",
        "http://db/",
    ):
        _assert_refused(api, {"title": "internal", "url": url}, 422, "validation")


def test_a_url_upload_is_fetched_when_the_operator_allows_private_targets(api: Api) -> None:
    page = b"<h1>Staff canteen</h1><p>The canteen opens at 7 am for the early shift.</p>"
    with (
        http_server(
            {
                "/menu": (302, {"Location": "/menu.html"}, b""),
                "/menu.html": (200, {"Content-Type": "text/html; charset=utf-8"}, page),
                "/bin": (200, {"Content-Type": "application/octet-stream"}, b"\x00\x01"),
            }
        ) as base,
        api_with(api, knowledge=KnowledgeSettings(allow_private_urls=True)) as lan,
    ):
        reply = upload(lan, {"title": "Canteen", "url": f"{base}/menu"})
        assert reply.status == 202, reply.text
        assert reply.body["content_type"] == "text/html" and reply.body["source_uri"] == f"{base}/menu"
        assert wait_done(lan, reply.body["id"])["status"] == "ready"
        wrong = upload(lan, {"title": "bin", "url": f"{base}/bin"})
        assert wrong.status == 422 and "content type" in wrong.body["detail"]


def test_delete_is_a_hard_delete(api: Api) -> None:
    reply = upload(
        api, {"title": "Temp", "content_type": "text/plain", "text": "Temporary note about fire drills."}
    )
    doc_id = reply.body["id"]
    assert wait_done(api, doc_id)["status"] == "ready"
    assert fetch(api, KnowledgeChunk, document_id=uuid.UUID(doc_id))
    gone = api.call("DELETE", api.tenant_path("a", f"/knowledge/documents/{doc_id}"), token=owner(api))
    assert gone.status == 204
    assert fetch(api, KnowledgeDocument, id=uuid.UUID(doc_id)) == []
    assert fetch(api, KnowledgeChunk, document_id=uuid.UUID(doc_id)) == []
    assert (
        api.call("DELETE", api.tenant_path("a", f"/knowledge/documents/{doc_id}"), token=owner(api)).status
        == 404
    )


def test_replace_swaps_the_chunks(api: Api) -> None:
    reply = upload(api, {"title": "Gym", "content_type": "text/plain", "text": "The gym opens at 6 am."})
    doc_id = reply.body["id"]
    wait_done(api, doc_id)
    put = api.call(
        "PUT",
        api.tenant_path("a", f"/knowledge/documents/{doc_id}"),
        token=owner(api),
        json={"title": "Gym", "content_type": "text/plain", "text": "The gym is closed for repairs."},
    )
    assert put.status == 202 and put.body["status"] == "queued"
    assert wait_done(api, doc_id)["status"] == "ready"
    assert [c.text for c in fetch(api, KnowledgeChunk, document_id=uuid.UUID(doc_id))] == [
        "The gym is closed for repairs."
    ]
    api.call("DELETE", api.tenant_path("a", f"/knowledge/documents/{doc_id}"), token=owner(api))


def test_document_quota(api: Api, loaded: dict[str, str]) -> None:
    with api_with(api, knowledge=KnowledgeSettings(max_documents=len(docs(api)))) as full:
        reply = upload(full, {"title": "one more", "content_type": "text/plain", "text": "Over quota."})
        assert reply.status == 409 and reply.body["type"].endswith("knowledge-quota")


def test_a_job_cut_by_a_crash_is_resumed_and_stale_vectors_are_reembedded(
    api: Api, loaded: dict[str, str]
) -> None:
    scope_region = "eu"
    doc = KnowledgeDocument(
        id=uuid.uuid4(),
        tenant_id=api.tenants["a"],
        region=scope_region,
        title="Crashed",
        content_type="text/plain",
        status="processing",
        content_hash="f" * 64,
        size_bytes=30,
        chunk_count=0,
        content=b"Forklift training is on Mondays.",
    )
    insert(api, "a", doc)
    stale = fetch(api, KnowledgeChunk, document_id=uuid.UUID(loaded["plain"]))[0]

    async def age() -> None:
        from sqlalchemy import text

        async with api.db.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE knowledge_chunks SET embedding_model = 'old-model', "
                    "embedding = array_fill(0, ARRAY[384])::vector WHERE id = :id"
                ),
                {"id": stale.id},
            )

    api.db.run(age())
    with api_with(api, knowledge=LIMITS) as restarted:  # a second app starting on the same database
        assert wait_done(restarted, str(doc.id))["status"] == "ready"
        for _ in range(200):
            row = fetch(api, KnowledgeChunk, id=stale.id)[0]
            if row.embedding_model != "old-model":
                break
            api.db.run(asyncio.sleep(0.05))
    assert row.embedding_model == "all-MiniLM-L6-v2"
    assert np.allclose(row.embedding, stale.embedding, atol=1e-5)


def test_the_residency_audit_covers_knowledge_rows(api: Api, loaded: dict[str, str]) -> None:
    from sqlalchemy import text

    from control.audit.residency import region_mismatch_query
    from control.db.base import regional_models

    assert {KnowledgeDocument, KnowledgeChunk} <= set(regional_models())

    async def mismatches() -> list[Any]:
        async with api.db.sessions() as session:
            return [
                row
                for model in (KnowledgeDocument, KnowledgeChunk)
                for row in (await session.execute(region_mismatch_query(model))).all()
            ]

    assert api.db.run(mismatches()) == []
    # A chunk of eu tenant a written into the us partition (foreign keys bypassed, as a bug or a manual
    # copy could): the audit names it.
    stray = uuid.uuid4()

    async def execute(sql: str, **params: Any) -> None:
        async with api.db.engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(sql), params)

    insert_sql = (
        "INSERT INTO knowledge_chunks (id, region, tenant_id, document_id, seq, text, embedding, section, "
        "embedding_model) VALUES (:id, 'us', :t, :d, 99, 'stray', array_fill(0, ARRAY[384])::vector, '', '')"
    )
    api.db.run(execute(insert_sql, id=stray, t=api.tenants["a"], d=uuid.UUID(loaded["plain"])))
    try:
        found = api.db.run(mismatches())
        assert [(r[0], r[2], r[3]) for r in found] == [(stray, "us", "eu")]
    finally:
        api.db.run(execute("DELETE FROM knowledge_chunks WHERE id = :id", id=stray))


def test_only_document_uploads_get_the_larger_body_limit(api: Api) -> None:
    # 90 kB of document (120 kB as base64, over the app's 64 KiB) passes the upload route, whose limit
    # follows the documents' (three long table rows: three chunks, quick to embed)...
    cell = "spare conveyor belt parts " * 1150
    table = "part,aisle,notes\n" + "".join(f"shelf {i},{i},{cell}\n" for i in range(3))
    body = {
        "title": "Parts",
        "content_type": "text/csv",
        "content_base64": base64.b64encode(table.encode()).decode(),
    }
    reply = upload(api, body)
    assert reply.status == 202, reply.text
    assert wait_done(api, reply.body["id"])["chunk_count"] == 3
    api.call("DELETE", api.tenant_path("a", f"/knowledge/documents/{reply.body['id']}"), token=owner(api))
    # ...while every other route keeps the app's 64 KiB limit.
    big_agent = {"name": "x", "persona": "y" * 100_000}
    refused = api.call("POST", api.tenant_path("a", "/agents"), token=owner(api), json=big_agent)
    assert refused.status == 413


def test_a_document_past_the_chunk_quota_fails_with_its_reason_and_writes_no_chunks(
    api: Api, loaded: dict[str, str]
) -> None:
    held = len(fetch(api, KnowledgeChunk, tenant_id=api.tenants["a"]))
    text = "\n\n".join(f"Locker {i} is on floor {i}. It opens with a key from reception." for i in range(4))
    with api_with(api, knowledge=KnowledgeSettings(max_chunks=held + 1)) as tight:
        reply = upload(tight, {"title": "Lockers", "content_type": "text/markdown", "text": "# A\n" + text})
        # Four paragraphs under one heading merge into one chunk: within the quota.
        assert wait_done(tight, reply.body["id"])["status"] == "ready"
        rows = "\n".join(f"| {i} | floor {i} |" for i in range(3))
        table = {
            "title": "Locker table",
            "content_type": "text/markdown",
            "text": f"| locker | where |\n|---|---|\n{rows}\n",
        }
        reply = upload(tight, table)
        done = wait_done(tight, reply.body["id"])
    assert done["status"] == "failed" and "quota" in done["error"] and done["chunk_count"] == 0
    assert fetch(api, KnowledgeChunk, document_id=uuid.UUID(reply.body["id"])) == []
    assert (
        api.db.run(
            _scalar(
                api,
                "SELECT count(*) FROM knowledge_documents WHERE content IS NOT NULL "
                "AND status IN ('ready', 'failed')",
            )
        )
        == 0
    )
    for doc in docs(api):
        if doc.title in ("Lockers", "Locker table"):
            api.call("DELETE", api.tenant_path("a", f"/knowledge/documents/{doc.id}"), token=owner(api))
