"""`autospeak call --agent recruit|stay`: an embedded worker runs the demo agent from its record
(cells/agents/<agent>/agent.json, through `--agent-spec`, with its knowledge files), a scripted eSpeak NG
caller rings it as Twilio would, and what the call wrote to the worker's record store is shown with the
conversation and the script's expected record (a JSON report goes next to the call's files)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from datetime import date
from pathlib import Path
from typing import Any

from cells.simulator.caller import ScriptedCaller
from cells.simulator.run import build_report, demo_knowledge_args, print_report, worker_process
from cells.simulator.twilio_peer import TwilioPeer
from cells.simulator.vertical_scripts import AGENTS_DIR, DEFAULT_SCRIPT, VERTICAL_SCRIPTS, VerticalScript
from cells.speech.espeak import EspeakEngine
from cells.tools.record_stores import SqliteRecordStore

DEMO_TENANT = "demo"
KNOWLEDGE = {"recruit": "job", "stay": "hotel"}


def script_for(agent: str, name: str | None) -> tuple[str, VerticalScript]:
    name = name or DEFAULT_SCRIPT[agent]
    script = VERTICAL_SCRIPTS.get(name)
    if script is None or script.agent != agent:
        names = ", ".join(n for n, s in VERTICAL_SCRIPTS.items() if s.agent == agent)
        raise SystemExit(f"--script {name!r} is not a {agent} caller; choose from {names}")
    return name, script


async def _ring(url: str, token: str, lines: list[Any], voice: str, rate_wpm: int) -> tuple[TwilioPeer, Any]:
    peer = TwilioPeer(url, token)
    await peer.open_stream(await peer.ring())
    result = await ScriptedCaller(peer, lines, engine=EspeakEngine(), voice=voice, rate_wpm=rate_wpm).run()
    return peer, result


def main(agent: str, script_name: str | None = None, data_dir: Path | None = None, voice: str = "en-gb+m3",
         rate_wpm: int = 170) -> int:
    name, script = script_for(agent, script_name)
    data_dir = data_dir or Path("data") / f"calls-{agent}"
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = {"id": f"demo-{agent}", "tenant_id": DEMO_TENANT,
            **json.loads((AGENTS_DIR / agent / "agent.json").read_text())}
    spec_path = data_dir / f"{agent}-agent.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    token = os.environ.get("TWILIO_AUTH_TOKEN") or secrets.token_hex(16)
    today = date.today()
    print(f"Starting an embedded worker running {spec['name']} from {AGENTS_DIR / agent / 'agent.json'} "
          f"(data in {data_dir}) ...", flush=True)
    args = ["--agent-spec", str(spec_path), *demo_knowledge_args(KNOWLEDGE[agent])]
    with worker_process(data_dir, token, args) as (_, url):
        print(f"Calling {url} as Twilio would; the caller ({voice}) speaks in real time ...", flush=True)
        peer, result = asyncio.run(_ring(url, token, script.lines(today), voice, rate_wpm))
    report = build_report(peer, result, data_dir, name)
    store = SqliteRecordStore(data_dir / "records.sqlite3")
    written = [r for r in store.list(DEMO_TENANT, kind=script.kind) if r["call"] == peer.call_sid]
    expected = script.expected(today)
    report["records"], report["expected_record"] = written, expected
    report["as_expected"] = [r["arguments"] for r in written] == ([expected] if expected else [])
    out = data_dir / f"{peer.call_sid}-report.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    print_report(report, [])
    wrote = json.dumps([r["arguments"] for r in written]) if written else "none"
    print(f"\nRecords this call wrote ({script.kind}): {wrote}")
    print(f"Expected: {json.dumps(expected) if expected else 'nothing written'} -> "
          f"{'as the caller meant' if report['as_expected'] else 'WRONG'}")
    print(f"Report: {out}")
    return 0 if report["as_expected"] else 1
