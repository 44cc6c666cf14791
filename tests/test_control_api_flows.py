"""Agent records whose flows cannot run are refused by the API with a 422 that names the problem (never
at call time), on create and on update (where the merged record is checked), and nothing is stored; a
record that runs comes back as JSON the worker's vertical registry builds into its agent."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from bike_shop import SECRET, SECRET_NAME, bike_shop_record
from control_api_fixtures import FAST, Api, control_api

from cells.agent import AgentEnv, agent_from_spec
from cells.flows.agent import FlowAgent

URL = "http://127.0.0.1:9/book"


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with control_api(**FAST) as api:
        yield api


def post(api: Api, body: dict[str, Any]) -> Any:
    return api.call("POST", api.tenant_path("a", "/agents"), token=api.tokens["a:admin"], json=body)


def names(api: Api) -> list[str]:
    out: list[str] = []
    offset: int | None = 0
    while offset is not None:
        r = api.call("GET", api.tenant_path("a", f"/agents?offset={offset}"), token=api.tokens["a:admin"])
        assert r.status == 200, r.text
        out += [a["name"] for a in r.body["items"]]
        offset = r.body["next_offset"]
    return out


def broken(change: str) -> dict[str, Any]:
    body = copy.deepcopy(bike_shop_record(URL))
    body["name"] = f"broken {change}"
    states = body["flows"]["main"]["states"]
    if change == "node":
        states["intake"]["next"] = ["checkout"]
    elif change == "tool":
        states["book"]["tool"] = "charge_card"
    elif change == "start":
        body["flows"]["main"]["start"] = "hello"
    elif change == "vertical":
        body["flows"] = {}
    return body


@pytest.mark.parametrize(("change", "says"), [
    ("node", "undefined states: ['checkout']"), ("tool", "'charge_card', which the agent does not declare"),
    ("start", "undefined states: ['hello']"), ("vertical", "no built-in agent")])
def test_a_record_with_a_broken_flow_is_422_and_nothing_is_stored(api: Api, change: str, says: str) -> None:
    r = post(api, broken(change))
    assert r.status == 422, r.text
    assert says in r.text, r.text
    assert f"broken {change}" not in names(api)


def test_an_update_that_breaks_the_flow_is_422_and_the_agent_is_unchanged(api: Api) -> None:
    created = post(api, bike_shop_record(URL))
    assert created.status == 201, created.text
    path = api.tenant_path("a", f"/agents/{created.body['id']}")
    tools = [{**created.body["tools"][0], "name": "other_tool"}]
    r = api.call("PATCH", path, token=api.tokens["a:admin"], json={"tools": tools})
    assert r.status == 422 and "'book_repair', which the agent does not declare" in r.text, r.text
    got = api.call("GET", path, token=api.tokens["a:admin"]).body
    assert got["tools"] == created.body["tools"] and got["updated_at"] == created.body["updated_at"]


def test_the_record_the_api_returns_is_the_agent_the_worker_runs(api: Api) -> None:
    r = post(api, {**bike_shop_record(URL), "name": "Riverside again"})
    assert r.status == 201, r.text
    env = AgentEnv(secrets={SECRET_NAME: SECRET}.get, allow_private_tools=True)
    agent = agent_from_spec(r.body, data_dir=None, env=env)
    assert isinstance(agent, FlowAgent) and agent.agent_id == r.body["id"]
    assert agent.tools.is_mutating("book_repair") and agent.flow.start == "intake"
