"""An agent defined by its record alone: the flow contract refuses what would strand a call, the vertical
registry builds the flow agent from the record, and its turns run through the call loop's own reply and
confirmation gate against the shop's real HTTP tool (signed, checked, failing honestly)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from bike_shop import BOOK_REPAIR_SCHEMA, SECRET, SECRET_NAME, SHOP, ToolServer, bike_shop_record, tool_server

from cells.agent import AgentEnv, UnknownVertical, agent_from_spec
from cells.agent.verticals import VERTICALS
from cells.call.confirmation import ConfirmationGate
from cells.call.reply import Reply
from cells.call.timeline import TurnTiming
from cells.contract.flows import BUILT_IN_VERTICALS, FlowError, agent_problems, read_flows
from cells.dialogue.chunker import SentenceChunker
from cells.flows.agent import FlowAgent
from cells.flows.brain import FlowRules
from cells.providers.base import Message, ToolCall
from cells.tools.http import HttpTool

NOW = datetime(2026, 3, 2, 9, 0)  # a Monday
ENV = AgentEnv(clock=lambda: NOW, secrets={SECRET_NAME: SECRET}.get, allow_private_tools=True)


def spec(url: str, **changes: Any) -> dict[str, Any]:
    return {"id": "bike-1", "tenant_id": "t1", **bike_shop_record(url), **changes}


@pytest.fixture()
def shop() -> Iterator[ToolServer]:
    with tool_server() as server:
        yield server


class Speaker:
    def __init__(self) -> None:
        self.said: list[str] = []

    async def say(self, text: str, timing: Any = None, clock: Any = None) -> None:
        self.said.append(text)


class Call:
    """One call's turns through the call loop's Reply and ConfirmationGate, as the session runs them."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.gate = ConfirmationGate()
        assert agent.call is not None
        self.history = [Message("assistant", agent.call.disclosure)]
        self.controls: list[str] = []
        self.speaker = Speaker()

    def caller(self, text: str) -> str:
        self.history.append(Message("user", text))
        before = len(self.speaker.said)

        async def control(call: ToolCall) -> dict[str, Any]:
            self.controls.append(call.name)
            return {"ok": True}

        reply = Reply(self.agent.brain, self.agent.tools, self.speaker, SentenceChunker, self.history,
                      TurnTiming(0), lambda: 0.0, control, lambda kind, data: None, self.gate)
        asyncio.run(reply.run())
        return " ".join(self.speaker.said[before:])


def build(url: str, env: AgentEnv = ENV, **changes: Any) -> FlowAgent:
    agent = agent_from_spec(spec(url, **changes), data_dir=None, env=env)
    assert isinstance(agent, FlowAgent)
    return agent


# --- the contract ---------------------------------------------------------------------------------------

def test_the_contract_names_every_way_a_flow_would_strand_a_call() -> None:
    record = bike_shop_record("http://127.0.0.1:9/book")
    assert agent_problems("bike_repair", record["flows"], record["tools"]) == []
    broken = copy.deepcopy(record["flows"])
    states = broken["main"]["states"]
    states["intake"]["next"] = ["checkout"]
    states["book"]["tool"] = "charge_card"
    states["book"]["arguments"]["colour"] = "colour"
    problems = agent_problems("bike_repair", broken, record["tools"])
    assert any("undefined node 'checkout'" in p for p in problems), problems
    assert any("'charge_card', which the agent does not declare" in p for p in problems), problems
    assert any("slot 'colour'" in p for p in problems), problems
    with pytest.raises(FlowError, match="checkout"):
        read_flows(broken, record["tools"])
    kindless = [{**record["tools"][0], "kind": None}]
    assert any("whose kind" in p for p in agent_problems("bike_repair", record["flows"], kindless))
    assert agent_problems("bike_repair", {}, []) != []  # no built-in agent and no flows
    assert agent_problems("reception", {}, []) == []


def test_the_registry_builds_each_record_as_its_own_agent() -> None:
    assert set(BUILT_IN_VERTICALS) == set(VERTICALS)  # the API's list and the worker's agree
    agent = build("http://127.0.0.1:9/book")
    assert isinstance(agent.brain, FlowRules) and agent.tools.confirms_mutations is False
    assert agent.tools.is_mutating("book_repair")
    assert agent.call is not None and agent.call.disclosure.startswith(f"Thank you for calling {SHOP}.")
    assert "Which day would you like to bring it in?" in agent.call.disclosure
    assert "Dental" not in agent.call.disclosure
    clinic = agent_from_spec({"id": "c1", "vertical": "reception"}, data_dir=None)
    assert type(clinic).__name__ == "ReceptionAgent" and "Bright Smile Dental" in clinic.call.disclosure
    with pytest.raises(UnknownVertical, match="stay"):
        agent_from_spec({"id": "s1", "vertical": "stay"}, data_dir=None)
    with pytest.raises(FlowError, match="undefined node"):
        bad = spec("http://127.0.0.1:9/book")
        bad["flows"]["main"]["start"] = "nowhere"
        agent_from_spec(bad, data_dir=None, env=ENV)
    with pytest.raises(ValueError, match="signing secret 'bike_shop'"):
        agent_from_spec(spec("http://127.0.0.1:9/book"), data_dir=None,
                        env=AgentEnv(secrets=lambda name: None, allow_private_tools=True))


def test_a_custom_disclosure_still_asks_the_first_question() -> None:
    agent = build("http://127.0.0.1:9/book", compliance={"disclosure_text": "Hi, an AI answers here."})
    assert agent.call is not None
    assert agent.call.disclosure == ("Hi, an AI answers here. I can book your bike in for a repair. "
                                     "Which day would you like to bring it in?")


# --- calls ----------------------------------------------------------------------------------------------

def test_the_tool_gets_the_slot_values_only_after_the_callers_yes(shop: ToolServer) -> None:
    call = Call(build(shop.url))
    assert call.agent.expectation(call.history) == "date"
    assert call.caller("Thursday please.") == "At what time?"
    assert call.agent.expectation(call.history) == "time"
    assert call.caller("At eleven.") == "What name should I put it under?"
    readback = call.caller("My name is Ann Lee.")
    assert readback.startswith("Just to confirm: book repair") and "Thursday, March 5th" in readback
    assert "11 a.m." in readback and "Ann Lee" in readback
    assert shop.received == [] and call.agent.expectation(call.history) == "yes_no"
    done = call.caller("Yes please.")
    assert shop.received == [{"tool": "book_repair", "idempotency_key": shop.received[0]["idempotency_key"],
                              "arguments": {"day": "2026-03-05", "time": "11:00", "name": "Ann Lee"}}]
    assert shop.unsigned == 0
    assert done.startswith("Your repair is booked for Thursday, March 5th at 11 a.m.")
    assert call.controls == ["end_call"]


def test_several_slots_in_one_breath_and_a_no_at_the_read_back(shop: ToolServer) -> None:
    call = Call(build(shop.url))
    assert call.caller("Wednesday at half past two.") == "What name should I put it under?"
    assert call.caller("It's Tom Baker.").startswith("Just to confirm")
    said = call.caller("No, don't book it.")
    assert shop.received == []
    assert "I haven't done that" in said and said.endswith("Which day would you like to bring it in?")
    assert "booked" not in said


def test_an_answer_that_is_not_there_is_asked_again_then_the_caller_is_put_through(shop: ToolServer) -> None:
    call = Call(build(shop.url))
    again = call.caller("Hmm, let me think.")
    assert again == "Sorry, I didn't catch that. Which day would you like to bring it in?"
    call.caller("I am not sure.")
    said = call.caller("Whatever.")
    assert "put you through" in said and call.controls == ["transfer_to_human"] and shop.received == []


@pytest.mark.parametrize(("mode", "error"), [("error", "tool_http_error"), ("refuse", "tool_http_error"),
                                             ("slow", "tool_timeout")])
def test_a_tool_that_fails_is_never_reported_as_done(mode: str, error: str) -> None:
    with tool_server(mode) as shop:
        record = spec(shop.url)
        record["tools"][0]["timeout_s"] = 0.5
        agent = agent_from_spec(record, data_dir=None, env=ENV)
        call = Call(agent)
        call.caller("Friday at ten.")
        call.caller("My name is Ann Lee.")
        said = call.caller("Yes.")
    held, result, ended = [json.loads(m.content) for m in call.history if m.role == "tool"]
    assert held["status"] == "awaiting_caller_confirmation" and ended == {"ok": True}  # end_call
    assert result["ok"] is False and result["error"] == error, result
    assert "booked for" not in said and "could not make that appointment" in said, said
    assert call.controls == ["end_call"]


def test_a_wrong_signature_is_refused_by_the_shop_and_reported_as_failed(shop: ToolServer) -> None:
    env = AgentEnv(clock=lambda: NOW, secrets=lambda name: "not-the-shop-secret", allow_private_tools=True)
    call = Call(build(shop.url, env=env))
    call.caller("Friday at ten.")
    call.caller("My name is Ann Lee.")
    said = call.caller("Yes.")
    assert shop.unsigned == 1 and shop.received == []
    assert "could not make that appointment" in said


def test_a_private_address_is_refused_unless_the_environment_allows_it(shop: ToolServer) -> None:
    env = AgentEnv(clock=lambda: NOW, secrets={SECRET_NAME: SECRET}.get, allow_private_tools=False)
    agent = build(shop.url, env=env)
    args = {"day": "2026-03-06", "time": "10:00", "name": "Ann"}
    result = asyncio.run(agent.tools.call("book_repair", args, confirmed=True))
    assert result["ok"] is False and result["error"] == "tool_address_refused", result
    assert shop.received == [] and shop.unsigned == 0


def test_arguments_the_schema_refuses_never_reach_the_shop(shop: ToolServer) -> None:
    agent = build(shop.url)
    bad = {"day": "next week", "time": "11:00", "name": "Ann Lee"}
    assert agent.tools.validate("book_repair", bad) is not None
    result = asyncio.run(agent.tools.call("book_repair", bad, confirmed=True))
    assert result["ok"] is False and result["error"] == "invalid_argument"
    unconfirmed = asyncio.run(agent.tools.call("book_repair", {"day": "2026-03-06", "time": "10:00",
                                                               "name": "Ann Lee"}))
    assert unconfirmed["error"] == "confirmation_required" and shop.received == []


PRIVATE = "not a public address"


@pytest.mark.parametrize(("url", "message"), [
    ("https://127.0.0.1:9/book", PRIVATE), ("https://localhost:9/book", PRIVATE),
    ("https://10.1.2.3/book", PRIVATE), ("https://169.254.169.254/latest", PRIVATE),
    ("https://[::1]:9/book", PRIVATE), ("http://example.com/book", "must use https")])
def test_the_address_guard_refuses_what_is_not_public(url: str, message: str) -> None:
    tool = HttpTool("book_repair", "", BOOK_REPAIR_SCHEMA, url=url, secret=b"s", mutating=True, timeout_s=0.5)
    result = asyncio.run(tool.call({"day": "2026-03-06", "time": "10:00", "name": "Ann Lee"}))
    assert result["ok"] is False and result["error"] == "tool_address_refused", result
    assert message in result["message"]


def test_the_recogniser_model_uses_the_sentences_an_agent_declares_and_no_clinics_by_default() -> None:
    from cells.providers.stt.context import Domain
    from cells.providers.stt.domain_lm import GENERAL, domain_sentences

    plain = domain_sentences(Domain(services=["repair"], names=["sam jones"]), size=3000)
    declared = domain_sentences(Domain(services=["repair"], names=["sam jones"],
                                       templates=["bring my bike in on {date}"]), size=3000)
    assert not any("appointment" in s for s in plain)  # the clinic's booking sentences are the clinic's
    assert any(s.startswith("bring my bike in on ") for s in declared)
    assert not any(s.startswith("bring my bike in on ") for s in plain)
    clinic = agent_from_spec({"id": "c1", "vertical": "reception"}, data_dir=None)
    assert any("appointment" in t for t in clinic.domain.templates)  # the clinic declares its own
    bare = domain_sentences(Domain(), size=3000)  # an agent that declares nothing (a flow of typed slots)
    assert not any(w in s for s in bare for w in ("appointment", "doctor")), [
        s for s in bare if "appointment" in s or "doctor" in s][:5]
    # Nor does the general English every agent's model mixes in speak of teeth.
    assert not any(w in GENERAL for w in ("tooth", "filling", "gums"))


def test_a_flow_agent_declares_the_options_it_offers_to_the_recogniser() -> None:
    """The flow agent's vocabulary is its choice slots' options (the hotel's room types); a flow of
    typed slots only (the bike shop) declares none, and no clinic's."""
    from cells.contract.flows import main_flow, read_flows
    from cells.flows.agent import flow_domain
    from cells.providers.stt.whisper_prompt import domain_prompt

    flow = main_flow(read_flows({"main": {"start": "ask", "states": {"ask": {
        "slots": [{"name": "wheel", "type": "choice", "ask": "Front or back?",
                   "options": ["front wheel", {"value": "back wheel", "words": ["rear"]}]}],
        "end": True}}}}, []))
    assert flow_domain(flow).services == ["back wheel", "front wheel"]
    assert domain_prompt(flow_domain(flow)) == "Back wheel, Front wheel."
    shop = build("http://127.0.0.1:9/book")
    assert shop.domain.services == [] and shop.domain.names == []


def test_whisper_hears_each_agent_with_its_own_examples_and_no_clinics_by_default() -> None:
    """The prompt Whisper continues at each turn (WhisperStt.transcribe: turn_prompt over the agent's
    Domain) names the clinic's services only for the clinic: the bike shop's open and choice turns are
    prompted with neutral words, the clinic's with the examples it declares."""
    from cells.providers.stt.context import HINTS
    from cells.providers.stt.whisper_prompt import domain_prompt, turn_prompt

    def prompts(agent: Any) -> list[str]:
        return [turn_prompt(domain_prompt(agent.domain), hint, agent.domain.examples) or ""
                for hint in (None, *HINTS)]

    dental = ("check-up", "cleaning", "filling")
    bike = prompts(build("http://127.0.0.1:9/book"))
    assert not [p for p in bike if any(w in p.lower() for w in dental)], bike
    assert "Monday at 10" in bike[0]  # the neutral open-question example: a day, a time, a name
    clinic = agent_from_spec({"id": "c1", "vertical": "reception"}, data_dir=None)
    open_turn, service = prompts(clinic)[0], prompts(clinic)[1 + HINTS.index("service")]
    assert "come in for a check-up on Monday" in open_turn and "A cleaning, please." in service
