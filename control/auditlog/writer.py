"""Audit rows from the three kinds of actor: API tokens, agents (their tool calls) and the system.

A row names the actor by id and role, never by a person's name or contact; `details` carries ids,
counts and outcomes only. Tool arguments and results (a caller's name, number or card digits) and a
client's full IP address are never written: the source is the client's network prefix (/24 for IPv4,
/48 for IPv6), enough to tell an office from an unexpected country without identifying a person.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from control.db.models import AuditLog, Call
from control.db.tenancy import TenantScope

VIA_API: Final = "api"
VIA_AGENT: Final = "agent"
VIA_SYSTEM: Final = "system"
MUTATING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Call event kinds that are an agent's action worth auditing, and the detail keys each may keep.
AGENT_EVENTS: Final = {
    "tool_call": ("agent.tool_call", ("name", "confirmed")),
    "tool_held": ("agent.tool_held", ("name",)),
    "gate_override": ("agent.gate_override", ("gate", "decision", "name")),
}
_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_]+)>")
_PLAIN = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def network_prefix(address: str | None) -> str | None:
    """The client's network (`203.0.113.0/24`, `2001:db8:1::/48`), or None for no or a bad address."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def route_action(method: str, rule: str, prefix: str) -> tuple[str, str]:
    """(`action`, `target_type`) of a request: `DELETE /tokens/{token_id}` and `tokens`."""
    path = rule[len(prefix):] if rule.startswith(prefix) else rule
    path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", path) or "/"
    fixed = [part for part in path.split("/") if part and not part.startswith("{")]
    return f"{method} {path}"[:100], (fixed[0] if fixed else "tenant")[:50]


def target_of(view_args: Mapping[str, Any]) -> str | None:
    """The last id in the URL other than the tenant's (the resource acted on)."""
    ids = [str(v) for k, v in view_args.items() if k != "tenant_id"]
    return ids[-1][:200] if ids else None


def api_request_row(scope: TenantScope, *, token_id: uuid.UUID, role: str, method: str, rule: str,
                    prefix: str, view_args: Mapping[str, Any], status: int,
                    remote_addr: str | None) -> AuditLog:
    action, target_type = route_action(method, rule, prefix)
    outcome = "ok" if status < 400 else ("denied" if status in (401, 403) else "failed")
    return scope.new(AuditLog, actor=f"token:{token_id}", actor_role=role, via=VIA_API,
                     source=network_prefix(remote_addr), action=action, target_type=target_type,
                     target_id=target_of(view_args), details={"status": status, "outcome": outcome},
                     created_at=datetime.now(UTC))


def _plain(value: Any) -> Any:
    """Keep booleans, small numbers and identifier-like strings; anything else is dropped."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and abs(value) < 10**6:
        return value
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    return None


def agent_event_row(scope: TenantScope, kind: str, call: Call, data: Mapping[str, Any],
                    occurred: datetime) -> AuditLog | None:
    """The audit row of an agent's action from one of its call's events, or None for other events."""
    spec = AGENT_EVENTS.get(kind)
    if spec is None:
        return None
    action, keys = spec
    details = {k: _plain(data.get(k)) for k in keys if _plain(data.get(k)) is not None}
    actor = f"agent:{call.agent_id}" if call.agent_id is not None else "agent:unknown"
    return scope.new(AuditLog, actor=actor, actor_role="agent", via=VIA_AGENT, source=None, action=action,
                     target_type="call", target_id=str(call.id), details=details, created_at=occurred)


def record_agent_event(session: AsyncSession, scope: TenantScope, kind: str, call: Call,
                       data: Mapping[str, Any], occurred: datetime) -> None:
    """Hook for the event ingest: in the event's own transaction, so a replayed event adds nothing."""
    row = agent_event_row(scope, kind, call, data, occurred)
    if row is not None:
        session.add(row)


def system_row(scope: TenantScope, action: str, target_type: str, target_id: str | None,
               details: dict[str, Any], *, actor: str = "system:retention") -> AuditLog:
    return scope.new(AuditLog, actor=actor, actor_role="system", via=VIA_SYSTEM, source=None, action=action,
                     target_type=target_type, target_id=target_id, details=details,
                     created_at=datetime.now(UTC))
