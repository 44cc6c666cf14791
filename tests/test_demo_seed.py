"""`autospeak up`'s demo seed: every region gets the clinic, eu the hotel front desk (Stay) and us the
warehouse phone screen (Recruit), each agent on its own number, stored from its data file as the API
would accept it; seeding again (a restart) creates nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

from db_fixtures import embedded_database
from sqlalchemy import select

from cells.launcher.seed import VERTICAL_AGENTS, seed_demo
from control.db.migrate import upgrade
from control.db.models import Agent, PhoneNumber


def test_the_three_demo_agents_are_seeded_once_each_on_its_own_number(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    with embedded_database() as db:
        db.run(upgrade(db.engine))
        first = db.run(seed_demo(db.sessions, path))
        again = db.run(seed_demo(db.sessions, path))

        async def rows() -> tuple[list[PhoneNumber], list[Agent]]:
            async with db.sessions() as s:
                numbers = list(await s.scalars(select(PhoneNumber)))
                agents = list(await s.scalars(select(Agent).execution_options(autospeak_unscoped="test")))
                return numbers, agents

        numbers, agents = db.run(rows())
    assert first == again
    assert {r: sorted(d.agents) for r, d in first.items()} == {
        "eu": ["reception", "stay"], "in": ["reception"], "us": ["reception", "recruit"]}
    lines = {a["number"]: (r, v, a["agent_id"]) for r, d in first.items() for v, a in d.agents.items()}
    assert len(lines) == 5 == len(numbers)  # five agents, five numbers
    assert {n.e164: (n.region, str(n.agent_id)) for n in numbers} == {
        k: (r, a) for k, (r, _, a) in lines.items()}
    by_id = {str(a.id): a for a in agents}
    stay = by_id[first["eu"].agents["stay"]["agent_id"]]
    assert stay.vertical == "stay" and stay.tools[0]["kind"] == "record"
    assert stay.flows["main"]["start"] == "arrival"
    assert VERTICAL_AGENTS["recruit"][1] == first["us"].agents["recruit"]["number"]
    assert json.loads(path.read_text())["eu"]["agents"]["stay"]["number"] == "+442079460002"
