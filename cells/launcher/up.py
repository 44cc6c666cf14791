"""`autospeak up`: start the embedded stack, print where everything is, serve until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from regions.catalogue import DEFAULT_BASE_PORT


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start the three regional cells, NATS and PostgreSQL on this machine")
    up.add_argument("--data-dir", type=Path, default=Path("autospeak-data"),
                    help="where the database, JetStream, recordings and logs live (kept across restarts)")
    up.add_argument("--fresh", action="store_true", help="delete the data directory first")
    up.add_argument("--workers", type=int, default=1, help="media worker processes per region")
    up.add_argument("--capacity", type=int, default=8, help="concurrent calls per worker")
    up.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                    help="ports are base + 0/100/200 per region (+10 API, +20.. workers)")
    up.add_argument("--profile", choices=("embedded", "instant"), default="embedded",
                    help="worker providers: embedded speech (default) or instant (load tests only)")
    up.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cells.launcher.stack import EmbeddedStack, StackError, run_until_interrupted

    try:
        stack = EmbeddedStack(args.data_dir, workers=args.workers, capacity=args.capacity,
                              base_port=args.base_port, profile=args.profile, fresh=args.fresh)
    except ValueError as exc:
        print(f"autospeak up: {exc}")
        return 2
    try:
        stack.start(progress=True)
    except StackError as exc:
        print(f"autospeak up failed: {exc}")
        return 1
    except KeyboardInterrupt:  # start() has already stopped what it started
        return 130
    try:
        print(stack.summary(), flush=True)
        return run_until_interrupted(stack)
    finally:
        stack.stop()  # a no-op after a clean stop; covers an interrupt before the handlers were set


def call_stack(data_dir: Path, region: str, script: str, agent: str = "reception") -> int:
    """Call the demo number of `region` on a running `autospeak up`, as Twilio would, then show what
    the control plane stored: the transcript, per-turn latency, the recording and the usage record."""
    import asyncio
    import json
    import time

    import httpx

    from cells.simulator.caller import ScriptedCaller
    from cells.simulator.twilio_peer import TwilioPeer
    from cells.speech.espeak import EspeakEngine

    try:
        cells = json.loads((data_dir / "stack.json").read_text())["cells"]
        secrets = json.loads((data_dir / "secrets.json").read_text())
        demo = json.loads((data_dir / "demo.json").read_text())[region]
    except (OSError, ValueError, KeyError) as exc:
        print(f"no running stack with region {region} in {data_dir} ({exc}); start one with `autospeak up`")
        return 1
    base = cells[region]
    number, lines = _agent_line(demo, region, agent, script)
    if number is None:
        return 1
    peer = TwilioPeer(base, secrets["twilio_auth_token"], to_number=number)

    async def run() -> None:
        target = await peer.ring()
        await peer.open_stream(target)
        voice = "en-us+f2" if agent == "reception" else "en-gb+m3"  # what the scripts were measured with
        await ScriptedCaller(peer, lines, engine=EspeakEngine(), voice=voice).run()

    print(f"Calling {number} ({agent}) through the {region} cell ({base}); the caller speaks in real "
          "time ...", flush=True)
    try:
        asyncio.run(run())
    except (OSError, httpx.HTTPError) as exc:
        print(f"the {region} cell at {base} did not take the call ({exc}); is `autospeak up` running?")
        return 1
    api = httpx.Client(base_url=f"{base}/v1/tenants/{demo['tenant_id']}",
                       headers={"Authorization": f"Bearer {demo['owner_token']}"}, timeout=10)
    deadline = time.monotonic() + 30
    call = None
    while call is None or call["status"] not in ("completed", "failed", "busy", "no_answer", "canceled"):
        if time.monotonic() > deadline:
            print("the control plane has not stored the call's end yet; see GET /calls later")
            return 1
        time.sleep(0.5)
        items = api.get("/calls", params={"limit": 20}).json()["items"]
        call = next((c for c in items if c["carrier_call_sid"] == peer.call_sid), None)
    turns = api.get(f"/calls/{call['id']}/transcript").json()["turns"]
    print(f"\nCall {call['id']} ({call['disposition']}), as the {region} cell stored it:\n")
    for turn in turns:
        who = "agent " if turn["speaker"] == "agent" else "caller"
        print(f"  {who}: {turn['text']}{' [interrupted]' if turn['interrupted'] else ''}")
    v2v = (call.get("latency") or {}).get("summary", {}).get("voice_to_voice_ms")
    if v2v:
        print(f"\nVoice-to-voice: p50 {v2v['p50']:.0f} ms, p95 {v2v['p95']:.0f} ms")
    kept = api.get(f"/calls/{call['id']}/records").json()["items"]
    for item in kept:
        print(f"Record kept ({item['kind']}): {item['arguments']}")
    usage = api.get("/usage").json()["totals"]
    print(f"Usage this month: {usage}")
    print(f"Recording: GET {base}/v1/tenants/{demo['tenant_id']}/calls/{call['id']}/recording")
    return 0


def _agent_line(demo: dict[str, Any], region: str, agent: str,
                script: str) -> tuple[str | None, list[Any]]:
    """The demo number of `agent` in `region` and its caller's lines (None when it lives elsewhere)."""
    from datetime import date

    from cells.simulator.scripts import SCRIPTS
    from cells.simulator.vertical_scripts import DEFAULT_SCRIPT, VERTICAL_SCRIPTS

    line = (demo.get("agents") or {}).get(agent)
    if line is None and agent == "reception":
        line = {"number": demo["number"]}
    if line is None:
        from cells.launcher.seed import VERTICAL_AGENTS

        home = VERTICAL_AGENTS.get(agent, ("?",))[0]
        print(f"the {agent} agent is not seeded in {region}; it lives in {home} (--region {home})")
        return None, []
    if agent == "reception":
        return line["number"], SCRIPTS[script]
    chosen = VERTICAL_SCRIPTS.get(script if script != "booking" else DEFAULT_SCRIPT[agent])
    if chosen is None or chosen.agent != agent:
        print(f"--script {script!r} is not a {agent} caller")
        return None, []
    return line["number"], chosen.lines(date.today())
