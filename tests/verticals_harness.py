"""Text-level calls to the demo's data-defined agents (Recruit, Stay): each turn runs through the call
loop's own Reply and ConfirmationGate with the agent's tools bound to one call, as a session binds them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cells.agent import AgentEnv, agent_from_spec
from cells.call.confirmation import ConfirmationGate
from cells.call.reply import Reply
from cells.call.timeline import TurnTiming
from cells.dialogue.chunker import SentenceChunker
from cells.providers.base import Message, ToolCall
from cells.tools.record import CallTools

AGENTS = Path(__file__).resolve().parents[1] / "cells" / "agents"
TENANT = "0b5c5f4e-0000-4000-8000-000000000001"


def record(vertical: str, agent_id: str = "agent-1", tenant_id: str = TENANT) -> dict[str, Any]:
    data = json.loads((AGENTS / vertical / "agent.json").read_text())
    return {"id": agent_id, "tenant_id": tenant_id, **data}


@dataclass
class FakeSession:
    call_sid: str


class Speaker:
    def __init__(self) -> None:
        self.said: list[str] = []

    async def say(self, text: str, timing: Any = None, clock: Any = None) -> None:
        self.said.append(text)


class TextCall:
    def __init__(self, agent: Any, call_sid: str = "CA0001") -> None:
        self.agent, self.gate, self.speaker = agent, ConfirmationGate(), Speaker()
        self.tools = CallTools(agent.tools, FakeSession(call_sid))
        self.history = [Message("assistant", agent.call.disclosure)]
        self.controls: list[str] = []

    def caller(self, text: str) -> str:
        self.history.append(Message("user", text))
        before = len(self.speaker.said)

        async def control(call: ToolCall) -> dict[str, Any]:
            self.controls.append(call.name)
            return {"ok": True}

        reply = Reply(self.agent.brain, self.tools, self.speaker, SentenceChunker, self.history,
                      TurnTiming(0), lambda: 0.0, control, lambda kind, data: None, self.gate)
        asyncio.run(reply.run())
        return " ".join(self.speaker.said[before:])


def build(vertical: str, data_dir: Path, now: datetime, store: Any = None, **spec: Any) -> Any:
    env = AgentEnv(clock=lambda: now, records=store)
    return agent_from_spec({**record(vertical), **spec}, data_dir=data_dir, env=env)
