"""The worker's way to its agents: through the agent seam (cells.agent), never a vertical directly."""

from __future__ import annotations

from typing import Any

from cells.agent import AgentTools, CallAgent, agent_from_spec, built_in
from cells.agent.verticals import provider_layer


def ReceptionAgent(**kwargs: Any) -> CallAgent:  # the name app.py and the load tests use
    """The embedded demo agent (the clinic) without a record, built through the vertical registry."""
    return built_in("reception", **kwargs)


__all__ = ["AgentTools", "CallAgent", "ReceptionAgent", "agent_from_spec", "provider_layer"]
