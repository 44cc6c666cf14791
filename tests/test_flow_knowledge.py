"""The data-defined demo agents (Stay, Recruit) answer a caller's question from their own knowledge files
in the middle of their flow (real MiniLM, in memory), then ask their question again; a question the
files do not cover is "I don't know", never a guess; and the flow goes on to its record as before.
Turn by turn through the call loop's Reply and confirmation gate (tests/verticals_harness.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from verticals_harness import TENANT, TextCall, record

from cells.agent import AgentEnv, agent_from_spec
from cells.knowledge.local import LocalKnowledgeSearch
from cells.tools.record_stores import SqliteRecordStore

NOW = datetime(2026, 3, 2, 9, 0)  # a Monday
DEMO = Path(__file__).resolve().parents[1] / "cells" / "launcher" / "demo_knowledge"
ARRIVAL = "What date would you like to arrive?"


@pytest.fixture(scope="module")
def hotel(tmp_path_factory: pytest.TempPathFactory) -> LocalKnowledgeSearch:
    search = LocalKnowledgeSearch(sorted(DEMO.glob("hotel*")), cache_dir=tmp_path_factory.mktemp("vectors"))
    search.load()
    return search


def stay(tmp_path: Path, knowledge: LocalKnowledgeSearch | None, store: SqliteRecordStore) -> TextCall:
    env = AgentEnv(clock=lambda: NOW, records=store, knowledge=knowledge)
    agent = agent_from_spec(record("stay"), data_dir=tmp_path, env=env)
    if agent.brain.knowledge is not None:
        agent.brain.knowledge.budget_s = 30.0  # a loaded test machine; the budget is tested elsewhere
    return TextCall(agent)


def test_a_question_mid_flow_is_answered_from_the_hotels_files_and_the_flow_goes_on(
        tmp_path: Path, hotel: LocalKnowledgeSearch) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    call = stay(tmp_path, hotel, store)
    assert ARRIVAL in call.agent.call.disclosure
    said = call.caller("Is breakfast included?")
    assert "breakfast" in said.lower() and "don't know" not in said and said.endswith(ARRIVAL)
    said = call.caller("Do you sell gift cards?")
    assert "don't know" in said and said.endswith(ARRIVAL) and "gift" not in said.lower()
    for text in ["March the twelfth.", "On March 15th.", "Two of us.", "The harbour double please.",
                 "Tom Becker.", "Five five five, nine eight one four.", "Yes please."]:
        said = call.caller(text)
    assert "You're booked in the harbour double" in said
    [booked] = store.list(TENANT, kind="reservation")
    assert booked["arguments"]["check_in"] == "2026-03-12" and booked["arguments"]["guests"] == 2


def test_without_knowledge_a_question_is_an_unclear_answer_as_before(tmp_path: Path) -> None:
    call = stay(tmp_path, None, SqliteRecordStore(tmp_path / "r.sqlite3"))
    said = call.caller("Is breakfast included?")
    assert said.startswith("Sorry, I didn't catch that.") and "breakfast" not in said.lower()


def test_the_job_screen_answers_from_the_jobs_files(tmp_path: Path) -> None:
    job = LocalKnowledgeSearch(sorted(DEMO.glob("job*")), cache_dir=tmp_path / "vectors")
    env = AgentEnv(clock=lambda: NOW, records=SqliteRecordStore(tmp_path / "r.sqlite3"), knowledge=job)
    agent = agent_from_spec(record("recruit"), data_dir=tmp_path, env=env)
    agent.brain.knowledge.budget_s = 30.0
    call = TextCall(agent)
    call.caller("Yes, now is fine.")  # the consent; then it asks for the name
    said = call.caller("What does the job pay?")
    assert "17" in said and "name" in said.lower()


def test_the_embedded_worker_gives_an_agent_record_its_knowledge_files(tmp_path: Path) -> None:
    """`python -m cells.worker --agent-spec FILE --knowledge ...` (what `autospeak call --agent stay`
    runs): the record's brain gets the files, checked without serving a call."""
    code = (
        "import sys; from pathlib import Path; from cells.worker.__main__ import _agent_from_file, "
        "local_knowledge; k = local_knowledge([Path(sys.argv[2])], Path(sys.argv[3])); "
        "a = _agent_from_file(Path(sys.argv[1]), Path(sys.argv[3]), None, k); "
        "print(a.brain.knowledge.search is k)")
    spec = tmp_path / "stay.json"
    spec.write_text(json.dumps(record("stay")))
    out = subprocess.run([sys.executable, "-c", code, str(spec), str(DEMO / "hotel.html"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.strip() == "True", out.stderr
