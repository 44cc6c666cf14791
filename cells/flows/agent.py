"""The flow agent: an agent defined by its record alone (flows and declared tools), on the agent seam.

Its brain is FlowRules (embedded, deterministic) unless the record or the worker profile names
another; its tools are the record's, each run by the adapter of its `kind` (today `http`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from cells.agent.runtime import CallAgent
from cells.agent.verticals import AgentEnv
from cells.contract.flows import TOOL_KINDS, Flow, main_flow, read_flows
from cells.flows.brain import FlowRules
from cells.providers import registry
from cells.providers.stt.context import Domain
from cells.tools.base import ToolAdapter
from cells.tools.http import DEFAULT_TIMEOUT_S, HttpTool
from cells.tools.record import CallTools, record_tool
from cells.tools.vendors import VENDOR_KINDS, build_vendor_tool


def build_tool(tool: Mapping[str, Any], env: AgentEnv) -> ToolAdapter:
    """The adapter for one declared tool; a tool that cannot run is an error now, not mid-call."""
    name = str(tool.get("name") or "")
    kind = tool.get("kind")
    if kind not in TOOL_KINDS:
        raise ValueError(f"tool {name!r} has kind {kind!r}; this worker runs {', '.join(TOOL_KINDS)}")
    if kind in VENDOR_KINDS:  # a vendor's own API, credentials by name (cells/tools/vendors/)
        return build_vendor_tool(tool, env.secrets, env.allow_private_tools)
    secret_name = str(tool.get("secret") or "")
    secret = env.secrets(secret_name) if secret_name else None
    if not secret:
        raise ValueError(f"tool {name!r} needs its signing secret {secret_name or '(unnamed)'!r}, "
                         "which this worker does not have")
    parameters = dict(tool.get("parameters") or {"type": "object", "properties": {}})
    return HttpTool(name, str(tool.get("description") or ""), parameters, url=str(tool.get("url") or ""),
                    secret=secret.encode(), mutating=bool(tool.get("requires_confirmation")),
                    timeout_s=float(tool.get("timeout_s") or DEFAULT_TIMEOUT_S),
                    allow_private=env.allow_private_tools)


def flow_domain(flow: Flow) -> Domain:
    """What the flow tells the recogniser: the options its choice slots offer, in the words callers
    choose them by (the hotel's room types). Its other answers are typed (a date, a number, a yes), and
    the call loop hints those turn by turn."""
    offered = {value for node in flow.nodes.values() for slot in node.slots for value, _ in slot.options}
    return Domain(services=sorted(offered))


def _providers(env: AgentEnv) -> registry.ProviderConfig:
    """The worker's providers, with the flow's rules as the brain where the defaults would pick one."""
    config = env.providers or registry.ProviderConfig()
    if config.defaults is registry.DEFAULTS:
        config = replace(config, defaults={**registry.DEFAULTS, "brain": {"provider": "flow_rules",
                                                                          "options": {}}})
    return config


class FlowAgent(CallAgent):
    def __init__(self, *, name: str, flow: Flow, tools: Sequence[ToolAdapter], env: AgentEnv) -> None:
        self.agent_id = ""
        self.tenant_id = ""
        self.record_calls = True
        self.call = None
        self.flow = flow
        self.opening = FlowRules(flow, env.clock).opening()
        greeting = f"Thank you for calling {name}. I'm an AI assistant, and this call may be recorded."
        self.assemble(name=name, domain=flow_domain(flow), tools=tools,
                      greeting=f"{greeting} {self.opening}".strip(), providers=_providers(env),
                      context={"flow": flow, "clock": env.clock, "knowledge": env.knowledge},
                      transfer_number=env.transfer_number)

    def plain_greeting(self) -> str:
        return f"Thank you for calling {self.name}."  # the flow's opening question follows

    def new_session(self, transport: Any, **kwargs: Any) -> Any:
        """A session whose tools know its call (a `record` tool names the call it writes for)."""
        session = super().new_session(transport, **kwargs)
        sink = getattr(kwargs.get("on_event"), "__self__", None)
        call_id = getattr(getattr(sink, "lease", None), "call_id", None)
        session.tools = CallTools(self.tools, session, str(call_id) if call_id else None)
        return session

    @classmethod
    def from_record(cls, spec: Mapping[str, Any], env: AgentEnv) -> FlowAgent:
        tools = list(spec.get("tools") or [])
        flow = main_flow(read_flows(spec.get("flows") or {}, tools))
        # A declared tool no node calls and no worker can run (no kind) is not offered to the brain.
        called = {n.tool for n in flow.nodes.values()}
        runnable = [t for t in tools if t.get("kind") or t.get("name") in called]
        built = [record_tool(t, env, spec) if t.get("kind") == "record" else build_tool(t, env)
                 for t in runnable]
        return cls(name=str(spec.get("name") or "us"), flow=flow, tools=built, env=env)
