"""The vertical registry: an agent record's `vertical` -> the builder of its running agent.

A record with `flows` runs on the data-defined flow agent whatever its vertical says (its flows are
its behaviour); one without runs its vertical's built-in agent, and a vertical with none is an error
that names the known ones, never a silent clinic. Builders are "module:attribute" strings imported
when chosen, so this module is the only one outside a vertical's package that reaches it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cells.agent.runtime import CallAgent
from cells.contract.knowledge import NatsKnowledgeSearch
from cells.providers import registry

# vertical -> "module:callable" taking (spec, env) and returning a CallAgent.
VERTICALS: dict[str, str] = {
    "reception": "cells.agents.reception.agent:ReceptionAgent.from_record",
}
FLOW_AGENT = "cells.flows.agent:FlowAgent.from_record"
# vertical -> the class of its built-in agent, for processes that run one without a record (the
# embedded demo worker, the load tests' instant profile).
BUILT_IN: dict[str, str] = {"reception": "cells.agents.reception.agent:ReceptionAgent"}


class UnknownVertical(ValueError):
    """The record names a vertical without a built-in agent, and has no flows of its own."""


@dataclass(frozen=True)
class AgentEnv:
    """What the process running the agent supplies (not the record): where its data lives, a worker
    profile's providers (which win over the record's), the transfer number, a clock."""

    data_dir: Path | None = None
    providers: registry.ProviderConfig | None = None
    transfer_number: str | None = None
    store_path: Path | None = None  # a vertical's own data store (the clinic's calendar), if shared
    clock: Callable[[], datetime] = field(default=datetime.now)
    # A tool's secret by the name its record gives (default: the environment variable
    # AUTOSPEAK_SECRET_<NAME>); the record holds names only.
    secrets: Callable[[str], str | None] = field(default=lambda name: env_secret(name))
    # Tools may call private and loopback addresses (the embedded stack and tests only).
    allow_private_tools: bool = field(
        default_factory=lambda: os.environ.get("AUTOSPEAK_TOOLS_ALLOW_PRIVATE") == "1")
    # The agent's knowledge search (cells.contract.knowledge.KnowledgeSearch): over NATS in a cell, an
    # in-memory index in the embedded worker; None when the agent has none.
    knowledge: Any = None
    # Where `record` tools keep what they write (cells.tools.record.RecordStore): the cell's control plane
    # over NATS, or a SQLite file in the embedded worker's data dir.
    records: Any = None


def env_secret(name: str) -> str | None:
    return os.environ.get("AUTOSPEAK_SECRET_" + "".join(c if c.isalnum() else "_" for c in name).upper())


def _load(target: str) -> Callable[..., Any]:
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


def builder_for(spec: Mapping[str, Any]) -> Callable[[Mapping[str, Any], AgentEnv], CallAgent]:
    if spec.get("flows"):
        return _load(FLOW_AGENT)
    vertical = str(spec.get("vertical") or "reception")
    target = VERTICALS.get(vertical)
    if target is None:
        known = ", ".join(sorted(VERTICALS))
        raise UnknownVertical(f"vertical {vertical!r} has no built-in agent (built in: {known}); "
                              "give the agent flows to define its behaviour")
    return _load(target)


def built_in(vertical: str, **kwargs: Any) -> CallAgent:
    """A vertical's built-in agent without a record (the embedded demo)."""
    target = BUILT_IN.get(vertical)
    if target is None:
        raise UnknownVertical(f"vertical {vertical!r} has no built-in agent")
    agent = _load(target)(**kwargs)
    assert isinstance(agent, CallAgent)
    return agent


def provider_layer(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's `providers` ({stt|llm|tts: {name, model?, options}}) as a registry config layer."""
    layer: dict[str, Any] = {}
    for kind in ("stt", "llm", "tts"):
        ref = spec.get(kind)
        if not isinstance(ref, Mapping) or not ref.get("name"):
            continue
        options = dict(ref.get("options") or {})
        if ref.get("model"):
            options["model"] = ref["model"]
        layer[kind] = {"provider": str(ref["name"]), "options": options}
    return layer


def apply_record(agent: CallAgent, spec: Mapping[str, Any]) -> CallAgent:
    """What every agent takes from its record whatever its vertical: persona as the system prompt, the
    voice, the compliance disclosure and whether its calls may be recorded."""
    agent.agent_id = str(spec.get("id") or "")
    agent.tenant_id = str(spec.get("tenant_id") or "")
    assert agent.call is not None
    voice = spec.get("voice") if isinstance(spec.get("voice"), Mapping) else {}
    compliance = spec.get("compliance") if isinstance(spec.get("compliance"), Mapping) else {}
    disclosure = agent.call.disclosure
    if compliance.get("disclosure_text"):
        disclosure = str(compliance["disclosure_text"])
    elif compliance.get("ai_disclosure") is False:
        disclosure = agent.plain_greeting()
    if disclosure != agent.call.disclosure and agent.opening:
        disclosure = f"{disclosure} {agent.opening}"  # a flow's first question follows any disclosure
    voice_id = str(voice["voice_id"]) if voice.get("voice_id") else agent.call.voice_id
    agent.call = replace(agent.call, disclosure=disclosure, voice_id=voice_id,
                         system_prompt=str(spec.get("persona") or ""))
    agent.record_calls = compliance.get("record_calls", True) is not False
    return agent


def record_store(nc: Any, region: str, data_dir: Path | None) -> Any:
    """The store of `record` tools: over NATS in a cell, a SQLite file for the embedded worker."""
    from cells.tools.record_stores import NatsRecordStore, SqliteRecordStore

    return NatsRecordStore.for_worker(nc, region) or (
        SqliteRecordStore(data_dir / "records.sqlite3") if data_dir else None)


def agent_from_spec(spec: Mapping[str, Any], *, data_dir: Path | None,
                    providers: registry.ProviderConfig | None = None,
                    transfer_number: str | None = None, calendar_path: Path | None = None,
                    clock: Callable[[], datetime] = datetime.now, env: AgentEnv | None = None,
                    nc: Any = None, region: str = "") -> CallAgent:
    """The running agent for the control plane's agent record (AgentOut as JSON), built by its
    vertical's builder (or the flow agent). `providers` (a worker profile such as the load tests'
    instant one) wins over the agent's own provider choice; `env` supplies the rest (secrets, clock). A
    cell's worker passes its NATS connection (`nc`) and `region`: the agent then searches its tenant's
    knowledge over NATS."""
    agent_id = str(spec.get("id") or "")
    if not agent_id:
        raise ValueError("the agent spec has no id")
    build = builder_for(spec)
    env = replace(env or AgentEnv(clock=clock), data_dir=data_dir / "agents" / agent_id if data_dir else None,
                  providers=providers or registry.ProviderConfig(
                      tenant=provider_layer(spec.get("providers") or {})),
                  transfer_number=transfer_number, store_path=calendar_path)
    if env.knowledge is None:
        env = replace(env, knowledge=NatsKnowledgeSearch.for_agent(nc, region, spec))
    if env.records is None:
        env = replace(env, records=record_store(nc, region, data_dir))
    return apply_record(build(spec, env), spec)
