"""The dialogue brain seam: the rule-based policy is registered as a brain (not an "llm"), old agent
records that name `llm: reception_policy` still get it, per-call objects reach only the factories that
take them (no provider names in the agent), and whether a brain confirms its own mutations survives
every wrapper: a fallback or router vouches only when everything it wraps does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import Any

import pytest

from cells.agents.reception.clinic import default_clinic
from cells.agents.reception.policy import ReceptionPolicy
from cells.providers import registry
from cells.providers.base import Message, ProviderConfigError, TextDelta, ToolCall, ToolSpec
from cells.providers.fallback import FallbackLlm
from cells.providers.llm.router import LlmRouter, RouteRule
from cells.worker.agent import ReceptionAgent, agent_from_spec

CLOCK = lambda: datetime(2026, 3, 2, 9, 0)  # noqa: E731
BOOKING = {"name": "Ann Lee", "service": "cleaning", "start": "2026-03-03T10:00"}


class TalkingLlm:
    """A language model: it never vouches for a confirmation step of its own."""

    confirms_mutations = False

    def __init__(self, reply: str = "Hello.") -> None:
        self.reply = reply

    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        yield TextDelta(self.reply)


class Undeclared:
    """Speaks the protocol but does not say whether it confirms its mutations."""

    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        yield TextDelta("Hi.")


@pytest.fixture
def fakes() -> Iterator[None]:
    registry.register("llm", "talking", TalkingLlm)
    registry.register("llm", "undeclared", Undeclared)
    try:
        yield
    finally:
        registry._TABLE.pop(("llm", "talking"))
        registry._TABLE.pop(("llm", "undeclared"))


def test_the_rule_based_policy_is_a_brain_and_the_default_one() -> None:
    assert "reception_rules" in registry.registered("brain")
    assert "reception_policy" not in registry.registered("llm")
    assert registry.ProviderConfig().resolve("brain") == ("reception_rules", {})
    agent = ReceptionAgent(clock=CLOCK)
    assert isinstance(agent.brain, ReceptionPolicy)
    assert agent.brain.clinic is agent.clinic  # the agent's clinic reached it through the context
    assert agent.tools.confirms_mutations is True


def test_an_agent_record_that_says_llm_reception_policy_still_gets_the_rules() -> None:
    spec = {"id": "a1", "tenant_id": "t1",
            "providers": {"llm": {"name": "reception_policy", "options": {"ask_phone": False}}}}
    agent = agent_from_spec(spec, data_dir=None)
    assert isinstance(agent.brain, ReceptionPolicy)
    assert agent.brain.clinic is agent.clinic
    assert agent.tools.confirms_mutations is True
    # The alias also holds where an LLM chain names it.
    chain = registry.ProviderConfig(tenant={"llm": {"provider": "fallback", "options": {
        "chain": [{"provider": "reception_policy"}]}}})
    brain = registry.build("brain", chain, context={"clinic": agent.clinic, "clock": CLOCK})
    assert isinstance(brain.providers[0][1], ReceptionPolicy) and brain.confirms_mutations is True


def test_an_agent_record_naming_a_language_model_takes_the_llm_path(fakes: None) -> None:
    agent = agent_from_spec({"id": "a2", "providers": {"llm": {"name": "talking"}}}, data_dir=None)
    assert isinstance(agent.brain, TalkingLlm)
    assert agent.tools.confirms_mutations is False
    # A layer above that names a brain wins over an llm named below it, and the reverse.
    config = registry.ProviderConfig(plan={"llm": {"provider": "talking"}},
                                     tenant={"brain": {"provider": "reception_rules"}})
    assert config.resolve("brain") == ("reception_rules", {})
    config = registry.ProviderConfig(plan={"brain": {"provider": "reception_rules"}},
                                     tenant={"llm": {"provider": "talking"}})
    assert isinstance(registry.build("brain", config), TalkingLlm)


def test_a_brain_must_declare_whether_it_confirms_its_mutations(fakes: None) -> None:
    with pytest.raises(ProviderConfigError, match="confirms_mutations"):
        registry.build("brain", registry.ProviderConfig(tenant={"llm": {"provider": "undeclared"}}))


def test_context_reaches_only_the_factories_that_name_it() -> None:
    got: dict[str, Any] = {}

    def with_domain(*, domain: object, sample_rate: int = 8000) -> str:
        got["domain"] = domain
        return "stt-with-domain"

    def without(*, sample_rate: int = 8000, **options: Any) -> str:
        got["without"] = options
        return "stt-plain"

    registry.register("stt", "with_domain", with_domain)
    registry.register("stt", "plain", without)
    try:
        context = {"domain": "the-domain", "clinic": "the-clinic"}
        assert registry.build("stt", registry.ProviderConfig(tenant={"stt": {"provider": "with_domain"}}),
                              context=context) == "stt-with-domain"
        assert got["domain"] == "the-domain"
        assert registry.build("stt", registry.ProviderConfig(tenant={"stt": {"provider": "plain"}}),
                              context=context) == "stt-plain"
        assert got["without"] == {}  # **options is no invitation: only named parameters get context
    finally:
        registry._TABLE.pop(("stt", "with_domain"))
        registry._TABLE.pop(("stt", "plain"))


def book(agent: ReceptionAgent) -> dict[str, Any]:
    """A booking as the call loop runs it when the brain's own confirmation counts."""
    return asyncio.run(agent.tools.call("create_booking", BOOKING, confirmed=agent.tools.confirms_mutations))


def mixed_fallback() -> FallbackLlm:
    return FallbackLlm([("rules", ReceptionPolicy(clock=CLOCK)), ("model", TalkingLlm())])


def mixed_router() -> LlmRouter:
    return LlmRouter({"rules": ReceptionPolicy(clock=CLOCK), "model": TalkingLlm()},
                     [RouteRule(use="model", first_reply=True)], default="rules")


@pytest.mark.parametrize("wrapper", [mixed_fallback, mixed_router])
def test_a_wrapper_of_the_rules_and_a_model_does_not_vouch(wrapper: Any) -> None:
    assert wrapper().confirms_mutations is False


def test_wrappers_of_confirming_brains_only_vouch() -> None:
    rules = lambda: ReceptionPolicy(clock=CLOCK)  # noqa: E731
    assert FallbackLlm([("a", rules()), ("b", rules())]).confirms_mutations is True
    router = LlmRouter({"a": rules(), "b": rules()}, [RouteRule(use="b", first_reply=True)], default="a")
    assert router.confirms_mutations is True
    # Nested wrappers forward it too.
    assert FallbackLlm([("r", router), ("f", FallbackLlm([("c", rules())]))]).confirms_mutations is True
    assert FallbackLlm([("r", router), ("f", mixed_fallback())]).confirms_mutations is False


@pytest.mark.parametrize("kind", ["fallback", "router"])
def test_a_configured_mixed_brain_leaves_the_confirmation_gate_on(fakes: None, kind: str) -> None:
    items = [{"provider": "reception_rules"}, {"provider": "talking"}]
    options: dict[str, Any] = ({"chain": items} if kind == "fallback" else
                               {"routes": {"rules": items[0], "model": items[1]}, "default": "rules"})
    config = registry.ProviderConfig(tenant={"brain": {"provider": kind, "options": options}})
    agent = ReceptionAgent(providers=config, clock=CLOCK)
    inner = agent.brain.providers[0][1] if kind == "fallback" else agent.brain.routes["rules"]
    assert isinstance(inner, ReceptionPolicy) and inner.clinic is agent.clinic  # context passed on
    # The call loop reads this flag: False means it holds the booking for the caller's yes, and the
    # calendar refuses a booking that was not confirmed.
    assert agent.tools.confirms_mutations is False
    result = book(agent)
    assert result["ok"] is False and result["error"] == "confirmation_required", result
    assert agent.calendar.bookings() == []


def test_a_configured_brain_of_rules_only_vouches() -> None:
    config = registry.ProviderConfig(tenant={"brain": {"provider": "fallback", "options": {
        "chain": [{"provider": "reception_rules"}, {"provider": "reception_rules"}]}}})
    agent = ReceptionAgent(providers=config, clinic=default_clinic(), clock=CLOCK)
    assert agent.tools.confirms_mutations is True
    result = book(agent)
    assert result["ok"] is True, result
    assert [b.name for b in agent.calendar.bookings()] == ["Ann Lee"]
