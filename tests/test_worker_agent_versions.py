"""A worker builds one agent per published version: a call holds the agent it started with, and a
newer version (or an edited unpublished record) gets a new one (cells/worker/coordinated.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from cells.worker import coordinated
from cells.worker.coordinated import Coordination


def test_agents_are_cached_per_version(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[dict[str, Any]] = []

    def build(spec: dict[str, Any], **_: Any) -> Any:
        built.append(spec)
        return SimpleNamespace(stt=None, brain=None, tts=None, persona=spec["persona"])

    monkeypatch.setattr(coordinated, "agent_from_spec", build)
    worker = Coordination(nats_url="nats://unused", region="eu", worker_id="w1", stream_url="ws://unused",
                          capacity=2, data_dir=None, object_store=None)
    worker.telemetry = SimpleNamespace(watch_providers=lambda *a: None)  # type: ignore[assignment]
    v1 = {"id": "A", "version": 1, "updated_at": "t1", "persona": "one"}
    first = worker._agent_for(v1)
    # The record's draft was edited (updated_at moved) but v1 is immutable: the same agent.
    assert worker._agent_for({**v1, "updated_at": "t2"}) is first and len(built) == 1
    second = worker._agent_for({"id": "A", "version": 2, "updated_at": "t2", "persona": "two"})
    assert second is not first and second.persona == "two" and first.persona == "one"
    # An unpublished record is told apart by updated_at.
    draft = {"id": "B", "version": None, "updated_at": "t1", "persona": "d1"}
    assert worker._agent_for(draft) is worker._agent_for(draft)
    assert worker._agent_for({**draft, "updated_at": "t3", "persona": "d2"}).persona == "d2"
    assert len(built) == 4
