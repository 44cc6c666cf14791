"""`autospeak up` as a user runs it: the three cells come up, answer, keep their data across a
restart, start over with --fresh, and stop cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

import httpx
import pytest

from regions.catalogue import get_region


def _free_base() -> int:
    """A base port whose whole embedded layout (3 regions x NATS, API, one worker) is free now."""
    for _ in range(50):
        base = random.randrange(20000, 40000, 1000)
        ports = [p for r in ("eu", "in", "us") for p in astuple(get_region(r).ports(base))]
        with contextlib.ExitStack() as stack:
            try:
                for port in ports:
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise RuntimeError("no free port range")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="autospeak-up-test-"))
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


def _up(data_dir: Path, base: int, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cells.cli", "up", "--data-dir", str(data_dir), "--base-port", str(base),
         "--profile", "instant", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line.rstrip())
        if "Press Ctrl-C" in line or time.monotonic() > deadline:
            break
    assert any("Press Ctrl-C" in line for line in lines), "\n".join(lines)
    return proc, lines


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_up_serves_three_cells_keeps_data_and_stops_on_ctrl_c(data_dir: Path) -> None:
    base = _free_base()
    proc, lines = _up(data_dir, base)
    try:
        text = "\n".join(lines)
        demo = json.loads((data_dir / "demo.json").read_text())
        for region in ("eu", "in", "us"):
            api = f"http://127.0.0.1:{get_region(region).ports(base).api}"
            assert api in text and demo[region]["number"] in text
            assert httpx.get(f"{api}/healthz").json()["region"] == region
            # The seeded owner token works on its home cell.
            agents = httpx.get(f"{api}/v1/tenants/{demo[region]['tenant_id']}/agents",
                               headers={"Authorization": f"Bearer {demo[region]['owner_token']}"})
            assert agents.status_code == 200 and agents.json()["items"][0]["name"] == "Reception"
            # The clinic's knowledge files are seeded for its agent (the cell embeds them in the background).
            owner = {"Authorization": f"Bearer {demo[region]['owner_token']}"}
            docs = httpx.get(f"{api}/v1/tenants/{demo[region]['tenant_id']}/knowledge/documents",
                             headers=owner).json()["items"]
            # ... and the hotel's for the front desk in eu, the job's for the phone screen in us.
            others = {"eu": ["demo:hotel.html"], "in": [], "us": ["demo:job.md", "demo:job_faq.csv"]}[region]
            assert sorted(d["source_uri"] for d in docs) == ["demo:clinic.md", "demo:clinic_faq.csv", *others]
            owners = {d["source_uri"]: d["agent_id"] for d in docs}
            clinic = agents.json()["items"][0]["id"]
            assert {owners["demo:clinic.md"], owners["demo:clinic_faq.csv"]} == {clinic}
            vertical = {"eu": "stay", "us": "recruit"}.get(region)
            if vertical:
                assert {owners[o] for o in others} == {demo[region]["agents"][vertical]["agent_id"]}
            assert {d["status"] for d in docs} <= {"queued", "processing", "ready"}
        _worker_asks_the_clinic_knowledge(base, demo["eu"])
        _a_killed_worker_comes_back(data_dir, base)
    finally:
        out = _stop(proc)
    assert "stopped" in out
    assert "worker-eu-1 exited with -9; restarting in 1 s" in out and "worker-eu-1 restarted" in out, out
    eu_api = get_region("eu").ports(base).api
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{eu_api}/healthz", timeout=2)

    # Restarted on the same data directory: the same tenants (the database survived).
    proc, _ = _up(data_dir, base)
    _stop(proc)
    assert json.loads((data_dir / "demo.json").read_text()) == demo

    # --fresh starts over.
    proc, _ = _up(data_dir, base, "--fresh")
    _stop(proc)
    fresh = json.loads((data_dir / "demo.json").read_text())
    assert fresh["eu"]["tenant_id"] != demo["eu"]["tenant_id"]


def _a_killed_worker_comes_back(data_dir: Path, base: int) -> None:
    """The supervisor starts a worker that was killed again, on the same port."""
    import os

    before = json.loads((data_dir / "stack.json").read_text())["children"]["worker-eu-1"]
    os.kill(before, signal.SIGKILL)
    worker = f"http://127.0.0.1:{get_region('eu').ports(base).worker}/healthz"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        after = json.loads((data_dir / "stack.json").read_text())["children"]["worker-eu-1"]
        with contextlib.suppress(httpx.TransportError):
            if after != before and httpx.get(worker, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError("the killed worker was not restarted within 120 s")


def _worker_asks_the_clinic_knowledge(base: int, demo: dict[str, str]) -> None:
    """As a worker does during a call: the eu cell answers from the seeded clinic files over NATS, once
    its background job has embedded them."""
    import asyncio

    import nats

    from cells.contract.knowledge import NatsKnowledgeSearch

    api = f"http://127.0.0.1:{get_region('eu').ports(base).api}"
    owner = {"Authorization": f"Bearer {demo['owner_token']}"}
    for _ in range(600):
        docs = httpx.get(f"{api}/v1/tenants/{demo['tenant_id']}/knowledge/documents", headers=owner).json()
        if {d["status"] for d in docs["items"]} == {"ready"}:
            break
        assert "failed" not in {d["status"] for d in docs["items"]}, docs
        time.sleep(0.2)

    async def ask() -> None:
        nc = await nats.connect(f"nats://127.0.0.1:{get_region('eu').ports(base).nats_client}")
        try:
            search = NatsKnowledgeSearch(nc, "eu", demo["tenant_id"], demo["agent_id"], budget_s=30)
            answer = await search.search("how much is teeth whitening")
            assert answer.known and "whitening" in answer.hits[0].text.lower(), answer
        finally:
            await nc.close()

    asyncio.run(ask())
