"""The `record` tool kind: what a call produced (a screen result, a reservation) kept by the tenant's store.

A record tool writes its arguments as one record of its `record_kind` through a `RecordStore`: over
NATS to the cell's control plane, which stores it in the tenant's regional database
(cells.contract.records), or a local SQLite file for a single embedded worker. The write names the call
it came from; the call is bound by the per-call tool box (`CallTools`) around each run, so one agent
shared by many calls never mixes them up. The result is `{"ok": true, "record_id": ...}` only when the
store said it stored the record; a store that is down, slow or refuses gives `{"ok": false, ...}`,
never done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from cells.contract.records import STORE_BUDGET_S, Capacity, RecordRefused, RecordWrite
from cells.tools.base import ToolAdapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRef:
    call: str  # the carrier's call sid
    call_id: str | None = None  # the platform's call id, when known


CURRENT_CALL: ContextVar[CallRef | None] = ContextVar("autospeak_current_call", default=None)


class RecordStore(Protocol):
    async def put(self, write: RecordWrite) -> tuple[dict[str, Any], bool]:
        """Stores the write (once per key); (the stored record, whether this write created it).
        Raises RecordRefused for a write it will never store, anything else when it is unavailable."""
        ...


class RecordTool(ToolAdapter):
    def __init__(self, name: str, description: str, parameters: dict[str, Any], *, kind: str,
                 store: RecordStore | None, tenant_id: str, agent_id: str, mutating: bool,
                 capacity: Capacity | None = None, budget_s: float = STORE_BUDGET_S) -> None:
        self.name, self.description, self.parameters = name, description, parameters
        self.kind, self.store, self.mutating, self.capacity = kind, store, mutating, capacity
        self.tenant_id, self.agent_id, self.budget_s = tenant_id, agent_id, budget_s

    async def call(self, args: Mapping[str, Any]) -> dict[str, Any]:
        ref = CURRENT_CALL.get()
        if ref is None or not ref.call:
            return {"ok": False, "error": "no_call", "message": f"{self.name} runs only within a call"}
        if self.store is None:
            return {"ok": False, "error": "record_store_unavailable", "message": f"{self.name} has no store"}
        write = RecordWrite(self.tenant_id, self.agent_id, ref.call, self.name, self.kind, dict(args),
                            ref.call_id, self.capacity)
        try:
            record, created = await asyncio.wait_for(self.store.put(write), self.budget_s)
        except RecordRefused as e:
            return {"ok": False, "error": e.code, "message": e.message}
        except Exception as exc:  # down, slow, a malformed answer: not stored, and said so
            log.warning("record tool %s: store failed: %s", self.name, type(exc).__name__)
            return {"ok": False, "error": "record_store_unavailable",
                    "message": f"{self.name} could not be saved just now"}
        return {"ok": True, "status": "stored" if created else "already_stored",
                "record_id": str(record.get("id") or "")}


class CallTools:
    """One call's view of its agent's shared tools: runs each tool with the call bound (CURRENT_CALL)."""

    def __init__(self, tools: Any, session: Any, call_id: str | None = None) -> None:
        self.inner, self.session, self.call_id = tools, session, call_id
        self.confirms_mutations = tools.confirms_mutations

    def specs(self) -> Sequence[Any]:
        return self.inner.specs()

    def is_mutating(self, name: str) -> bool:
        return bool(self.inner.is_mutating(name))

    def validate(self, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        return self.inner.validate(name, arguments)

    async def call(self, name: str, arguments: dict[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        token = CURRENT_CALL.set(CallRef(str(self.session.call_sid or ""), self.call_id))
        try:
            return dict(await self.inner.call(name, arguments, confirmed=confirmed))
        finally:
            CURRENT_CALL.reset(token)


def record_tool(tool: Mapping[str, Any], env: Any, spec: Mapping[str, Any]) -> RecordTool:
    """The adapter of a declared `record` tool (cells.contract.flow_rules checks the declaration); its
    store is the environment's (`AgentEnv.records`): the cell's over NATS, or the embedded file."""
    cap = tool.get("capacity")
    return RecordTool(str(tool.get("name") or ""), str(tool.get("description") or ""),
                      dict(tool.get("parameters") or {"type": "object", "properties": {}}),
                      kind=str(tool.get("record_kind") or ""), store=getattr(env, "records", None),
                      tenant_id=str(spec.get("tenant_id") or ""), agent_id=str(spec.get("id") or ""),
                      mutating=bool(tool.get("requires_confirmation")),
                      capacity=Capacity.from_json(cap) if cap else None)
