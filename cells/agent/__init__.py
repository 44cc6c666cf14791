"""The agent seam: the one interface the call loop runs (`CallAgent`) and the vertical registry that
builds it from the control plane's agent record (`agent_from_spec`)."""

from cells.agent.runtime import AgentTools, CallAgent
from cells.agent.verticals import AgentEnv, UnknownVertical, agent_from_spec, built_in

__all__ = ["AgentEnv", "AgentTools", "CallAgent", "UnknownVertical", "agent_from_spec", "built_in"]
