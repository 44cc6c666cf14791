"""What the worker keeps of each call: its events as they happen and, at hang-up, a JSON record
with the transcript, per-turn stage timings and disposition (the control plane takes these
over from NATS events in the regional cells)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cells.call.session import CallSession
from cells.contract.call_redaction import CallRedactor, redact_history


@dataclass
class CallRecord:
    call_id: str
    tenant_id: str
    agent_id: str
    call_sid: str
    path: Path | None
    started_at: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append({"t": round(time.time() - self.started_at, 3), "kind": kind, **data})

    def close(self, session: CallSession) -> dict[str, Any]:
        doc = {
            "call_id": self.call_id, "tenant_id": self.tenant_id, "agent_id": self.agent_id,
            "call_sid": self.call_sid, "started_at": self.started_at,
            "duration_s": round(time.time() - self.started_at, 3),
            "disposition": session.state.disposition,
            "bad_messages": session.state.bad_messages,
            "turns": _turns(session),
            "history": redact_history([
                {"role": m.role, "content": m.content,
                 "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls]}
                for m in session.history]),
            "events": self.events,
        }
        if self.path is not None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1, default=str))
            tmp.chmod(0o600)
            tmp.replace(self.path)
        return doc


def _turns(session: CallSession) -> list[dict[str, Any]]:
    """The turns with their texts redacted in order (a card read across two turns is masked in both)."""
    redactor = CallRedactor(pii=False)
    out = []
    for t in session.turns:
        d = t.as_dict()
        d["caller_text"] = redactor.caller(str(d.get("caller_text") or ""))
        d["agent_text"] = redactor.agent(str(d.get("agent_text") or ""))
        out.append(redactor.payload(d))
    return out


class CallLog:
    def __init__(self, data_dir: Path | None) -> None:
        self.dir = data_dir / "calls" if data_dir else None

    def open(self, call_id: str, tenant_id: str, agent_id: str, call_sid: str) -> CallRecord:
        path = self.dir / f"{call_sid or call_id}.json" if self.dir else None
        n = 2
        # A call that comes back on a new stream (an unanswered transfer) keeps its first record.
        while path is not None and path.exists():
            path = path.with_name(f"{call_sid or call_id}-{n}.json")
            n += 1
        return CallRecord(call_id, tenant_id, agent_id, call_sid, path)
