"""A cell's control app served over real HTTP (hypercorn, its own thread and loop) on the embedded
PostgreSQL, for the browser tests: tenant `a` with owner, operator and viewer tokens, tenant `b` with
an owner, and helpers that put calls in through the real event ingest (the workers' `turn` events)."""

from __future__ import annotations

import asyncio
import io
import math
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import uuid
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from control_api_fixtures import CELLS
from db_fixtures import Database, embedded_database
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession

from cells.contract.envelope import CallEventEnvelope
from control.api import ControlSettings, bootstrap_tenant, create_control_app
from control.api.auth import make_token_row
from control.db.migrate import upgrade
from control.db.session import run_transaction
from control.db.tenancy import TenantScope
from control.events import ingest_event
from regions.objectstore import RegionStore

# Debian's chromium; Playwright drives it (no browser download).
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")


SHOTS = Path(os.environ.get("AUTOSPEAK_REPORTS", Path(__file__).resolve().parents[1] / "reports")) / "console"


def require_browser() -> tuple[Any, str]:
    """(playwright.sync_api, chromium's path) for a browser test module, or skip it: only on a
    developer's machine. Under CI (the CI variable set, as .ci/run does) a missing piece fails."""

    def absent(reason: str) -> NoReturn:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}; the browser tests must run", pytrace=False)
        pytest.skip(reason, allow_module_level=True)

    try:
        import playwright.sync_api as playwright
    except ImportError:
        absent("playwright is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        absent("chromium is not installed (apt-get install -y chromium)")
    return playwright, path


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def chromium_path() -> str | None:
    for path in CHROMIUM_PATHS:
        if shutil.which(path):
            return path
    return shutil.which("chromium")


@dataclass
class Site:
    db: Database
    url: str
    tenants: dict[str, uuid.UUID] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # "a:owner" -> plaintext
    store_root: Path = Path()
    app: Quart | None = None

    def scope(self, label: str) -> TenantScope:
        return TenantScope(self.tenants[label], "eu")

    def api(self, method: str, label_role: str, rest: str = "", **kw: Any) -> httpx.Response:
        tenant = self.tenants[label_role.split(":")[0]]
        headers = {"Authorization": f"Bearer {self.tokens[label_role]}"}
        url = f"{self.url}/v1/tenants/{tenant}{rest}"
        return httpx.request(method, url, headers=headers, timeout=30, **kw)

    def recording(self, label: str, call_id: uuid.UUID, seconds: float = 1.0) -> None:
        """A WAV (a 440 Hz tone, 8 kHz) in the region's store and the worker's recording_ready event."""
        scope = self.scope(label)
        rate = 8000
        frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
                          for n in range(int(rate * seconds)))
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(frames)
        key = RegionStore.key(scope.tenant_id, f"{call_id}.wav")
        size = RegionStore(self.store_root, "eu").put(key, out.getvalue())
        self.ingest(CallEventEnvelope.new(
            call_id=str(call_id), tenant_id=str(scope.tenant_id), region="eu", kind="recording_ready",
            event_id=f"{call_id}:recording", source="test", data={
                "object_key": key, "duration_ms": int(seconds * 1000), "size_bytes": size}))

    def ingest(self, envelope: CallEventEnvelope) -> None:
        # On a thread of its own: Playwright's sync API keeps an event loop running on the test's thread,
        # where the database's loop cannot run.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(self.db.run, ingest_event(self.db.sessions, envelope)).result()

    def call(self, label: str, agent_id: str, *, worker: str = "eu-w1", turns: list[dict[str, float]],
             end: bool = True, at: float | None = None) -> uuid.UUID:
        """A call as the workers report one: created, started on `worker`, one `turn` event per timing
        dict (ms after the caller's end of speech per stage), a transcript, then ended (if `end`)."""
        scope, call_id = self.scope(label), uuid.uuid4()
        t0 = time.time() - 60 if at is None else at
        c = str(call_id)

        def env(kind: str, n: int, data: dict[str, Any], offset: float) -> CallEventEnvelope:
            return CallEventEnvelope.new(call_id=c, tenant_id=str(scope.tenant_id), region="eu", kind=kind,
                                         event_id=f"{c}:{n}", data=data, occurred_at=t0 + offset,
                                         source="test")

        self.ingest(env("call_created", 0, {"direction": "inbound", "from": "+4915112345678",
                                            "to": "+442071234567", "agent_id": agent_id,
                                            "call_sid": "CA" + call_id.hex[:30], "carrier": "twilio"}, 0))
        self.ingest(env("call_started", 1, {"call_sid": "CA" + call_id.hex[:30], "stream_sid": "MZ1",
                                             "worker_id": worker, "resumed": False}, 0.5))
        n = 2
        for i, stages in enumerate(turns, start=1):
            speech_end = 2.0 + 4.0 * i
            self.ingest(env("transcript", n, {"text": f"caller line {i}", "turn": i}, speech_end))
            self.ingest(env("agent_said", n + 1, {"text": f"agent line {i}", "interrupted": False,
                                                  "start_ms": int(speech_end * 1000) + 400,
                                                  "end_ms": int(speech_end * 1000) + 2000}, speech_end + 2))
            self.ingest(env("turn", n + 2, {"index": i, "caller_text": "x", "agent_text": "y",
                                            "at_ms": {"speech_end": int(speech_end * 1000)},
                                            "ms_after_speech_end": stages}, speech_end + 2))
            n += 3
        if end:
            ended = {"disposition": "booked", "turns": len(turns)}
            self.ingest(env("call_ended", n, ended, 4.0 * len(turns) + 8))
        return call_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serving(settings: ControlSettings) -> Iterator[tuple[str, Quart]]:
    app = create_control_app(settings)
    port = _free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(
        serve(app, config, shutdown_trigger=stop.wait)), daemon=True)  # type: ignore[arg-type]
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the console's server did not start")
        time.sleep(0.1)
    try:
        yield url, app
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


@contextmanager
def console_site() -> Iterator[Site]:
    with embedded_database() as db, tempfile.TemporaryDirectory(prefix="autospeak-web-") as store:
        db.run(upgrade(db.engine))
        settings = ControlSettings(region="eu", database_url=db.url, cells=CELLS,
                                   object_store_root=Path(store))
        with _serving(settings) as (url, app):
            site = Site(db, url, store_root=Path(store), app=app)
            for label in ("a", "b"):
                async def boot(session: AsyncSession, label: str = label) -> tuple[Any, str]:
                    return await bootstrap_tenant(session, f"Clinic {label.upper()}", "eu")

                tenant, owner = db.run(run_transaction(db.sessions, boot))
                site.tenants[label], site.tokens[f"{label}:owner"] = tenant.id, owner
            for role in ("operator", "viewer"):
                async def mint(session: AsyncSession, role: str = role) -> str:
                    row, plaintext = make_token_row(site.scope("a"), role, ttl=None)
                    session.add(row)
                    return plaintext

                site.tokens[f"a:{role}"] = db.run(run_transaction(db.sessions, mint, scope=site.scope("a")))
            yield site
