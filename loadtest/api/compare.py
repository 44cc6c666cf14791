"""The control API under load on two ASGI servers: granian vs hypercorn, same app, same database.

Setup: the embedded PostgreSQL in a temporary directory, one fresh migrated database per server with
the same seed (one tenant, its owner token, 20 agents), so that neither server inherits the rows the
other's run created. Each server serves `control.api.asgi` (the REST API alone) from one worker process
on a free port, with the per-token rate limit raised far above the offered load so that the run
measures the server, not the 429 path. Locust (loadtest/api/locustfile.py) then runs headless against
it as a subprocess: N closed-loop users, no think time, for S seconds; its CSV statistics give the
table. Both servers run on asyncio's default loop (uvloop is not a dependency).

On a small machine the load generator, the server and PostgreSQL share the cores: the table compares
the two servers under the same conditions, not either one's ceiling. The CPU each used is printed so
that a saturated load generator can be told apart from a saturated server.

Run: python -m loadtest.api.compare [--users N] [--duration S] [--quick]   (or: autospeak bench api)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from cells.launcher.ports import free_port
from control.api.auth import bootstrap_tenant
from control.api.schemas import AgentCreate
from control.db.migrate import upgrade
from control.db.models import Agent
from control.db.pg_embedded import EmbeddedPostgres
from control.db.session import create_engine, run_transaction, session_factory
from control.db.tenancy import TenantScope

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
SERVERS = ("granian", "hypercorn")
REGION = "eu"
SEED_AGENTS = 20
HIGH_RATE = "1000000"  # requests/s and burst per token: far above anything two cores can offer
READY_TIMEOUT_S = 30.0
QUICK_USERS, QUICK_DURATION_S = 3, 4
TOTAL = "all endpoints"


class BenchError(RuntimeError):
    """A server or the load generator could not run; the message says which and why."""


def note(msg: str) -> None:
    """Progress on stderr, so that stdout carries only the report."""
    print(f"   {msg}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Plain text table: the first `left` columns left-aligned, the figures right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def fmt_row(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    line = fmt_row(headers)
    return "\n".join([line, "-" * len(line), *(fmt_row(r) for r in rows)])


def machine_busy_s() -> float:
    """CPU seconds all processes on the machine have used (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its descendants, live or reaped (a server's master and worker)."""
    import psutil  # a locust dependency, so present wherever this benchmark can run

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            # children_*: descendants that exited and were reaped, e.g. PostgreSQL backends of pool
            # connections that were closed during the run.
            total += t.user + t.system + t.children_user + t.children_system
    return total


def children_cpu_s() -> float:
    """CPU seconds of this process's children that have exited and been waited for (locust)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# -- database ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seed:
    database_url: str
    tenant_id: uuid.UUID
    token: str = field(repr=False)


async def seed_database(admin_url: str, database: str) -> Seed:
    """Create `database` on the embedded server, migrate it, and seed one tenant with agents."""
    from sqlalchemy import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{database}"'))  # name is ours, not user input
    finally:
        await admin.dispose()
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)

        async def boot(session: Any) -> tuple[Any, str]:
            return await bootstrap_tenant(session, "load test", REGION)

        tenant, token = await run_transaction(sessions, boot)
        scope = TenantScope(tenant.id, REGION)

        async def agents(session: Any) -> None:
            now = datetime.now(UTC)
            for n in range(SEED_AGENTS):
                values = AgentCreate(name=f"Seed agent {n}").model_dump(mode="json")
                session.add(scope.new(Agent, id=uuid.uuid4(), created_at=now, updated_at=now, **values))

        await run_transaction(sessions, agents, scope=scope)
    finally:
        await engine.dispose()
    return Seed(url, tenant.id, token)


# -- servers ----------------------------------------------------------------------------------------
def server_command(server: str, port: int) -> list[str]:
    """One worker process each (a master plus one worker for both), asyncio loop, no access log."""
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--loop", "asyncio", "--no-access-log",
                "--log-level", "warning", "control.api.asgi:app"]
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--worker-class", "asyncio", "--log-level", "warning", "control.api.asgi:app()"]
    raise ValueError(f"unknown server {server!r}")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # The project root on the path: the servers import control.api.asgi, locust the locustfile.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _get(url: str, token: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def running_server(server: str, seed: Seed, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = workdir / f"{server}.log"
    env = child_env({
        "AUTOSPEAK_REGION": REGION,
        "AUTOSPEAK_DATABASE_URL": seed.database_url,
        "AUTOSPEAK_CELLS": f"{REGION}={base}",
        "AUTOSPEAK_RATE_PER_SECOND": HIGH_RATE,
        "AUTOSPEAK_RATE_BURST": HIGH_RATE,
    })
    with log_path.open("wb") as log:
        # Its own session, so that the stop below reaches the master and its worker and nothing else.
        proc = subprocess.Popen(server_command(server, port), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        wait_ready(proc, base, seed, log_path)
        note(f"{server}: ready on port {port} in {time.monotonic() - started:.1f} s (pid {proc.pid})")
        yield proc, base
    finally:
        stop(proc)


def wait_ready(proc: subprocess.Popen[bytes], base: str, seed: Seed, log_path: Path) -> None:
    """/healthz answers, then an authenticated read does: the lifespan startup opened the database."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    agents = f"{base}/v1/tenants/{seed.tenant_id}/agents?limit=1"
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"exited with code {proc.returncode} before serving:\n{_tail(log_path)}")
        try:
            status, _ = _get(f"{base}/healthz")
            if status == 200:
                status, body = _get(agents, seed.token)
                if status == 200:
                    return
                # Serving but the database path fails: waiting longer will not fix it.
                raise BenchError(f"authenticated GET answered {status}: {body[:300]!r}\n{_tail(log_path)}")
            last = f"/healthz answered {status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(f"not ready after {READY_TIMEOUT_S:.0f} s ({last}):\n{_tail(log_path)}")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)  # both servers shut down gracefully (lifespan shutdown)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def postmaster_pid(data_dir: Path) -> int | None:
    """The embedded server's postmaster (its backends are its children), to count PostgreSQL's CPU."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


# -- load -------------------------------------------------------------------------------------------
@dataclass
class EndpointStats:
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass
class ServerRun:
    server: str
    endpoints: list[EndpointStats]
    total: EndpointStats
    server_cpu_s: float
    locust_cpu_s: float
    database_cpu_s: float
    machine_cpu_s: float
    wall_s: float
    errors: list[str] = field(default_factory=list)

    @property
    def other_cpu_s(self) -> float:
        return max(0.0, self.machine_cpu_s - self.server_cpu_s - self.locust_cpu_s - self.database_cpu_s)

    def stats(self, name: str) -> EndpointStats | None:
        if name == TOTAL:
            return self.total
        return next((e for e in self.endpoints if e.name == name), None)


def _num(row: dict[str, str], key: str) -> float:
    value = (row.get(key) or "").strip()
    return float(value) if value and value != "N/A" else 0.0


def parse_stats(path: Path, duration_s: float) -> tuple[list[EndpointStats], EndpointStats]:
    """Locust's <prefix>_stats.csv: one row per named request, then the Aggregated row.

    Requests/s is the count over the run time (-t): locust's own column divides by whole seconds
    between the first and the last request, which is off by up to one second.
    """
    rows: list[EndpointStats] = []
    total: EndpointStats | None = None
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stats = EndpointStats(
                name=f"{row['Type']} {row['Name']}".strip() if not row["Name"].startswith(row["Type"])
                else row["Name"],
                requests=int(_num(row, "Request Count")), failures=int(_num(row, "Failure Count")),
                rps=_num(row, "Request Count") / duration_s, p50_ms=_num(row, "50%"), p99_ms=_num(row, "99%"))
            if row["Name"] == "Aggregated":
                stats.name = TOTAL
                total = stats
            else:
                rows.append(stats)
    if total is None:
        raise BenchError(f"{path.name} has no Aggregated row")
    return rows, total


def parse_errors(path: Path) -> list[str]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [f"{r['Occurrences']}x {r['Method']} {r['Name']}: {r['Error']}" for r in csv.DictReader(f)]


def run_locust(server: str, base: str, seed: Seed, users: int, duration_s: int, workdir: Path,
               server_pid: int, pg_pid: int | None) -> ServerRun:
    prefix = workdir / server
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
           "-r", str(users), "-t", f"{duration_s}s", "--csv", str(prefix), "--only-summary",
           "--host", base, "--loglevel", "WARNING", "--stop-timeout", "5"]
    env = child_env({"AUTOSPEAK_LOADTEST_TENANT": str(seed.tenant_id),
                     "AUTOSPEAK_LOADTEST_TOKEN": seed.token})
    log_path = workdir / f"{server}-locust.log"
    note(f"{server}: locust {users} users for {duration_s} s ...")
    def pg_cpu() -> float:
        return tree_cpu_s(pg_pid) if pg_pid else 0.0

    server_cpu0, locust_cpu0, pg_cpu0, machine0 = (tree_cpu_s(server_pid), children_cpu_s(), pg_cpu(),
                                                   machine_busy_s())
    started = time.monotonic()
    with log_path.open("wb") as log:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=duration_s + 90)
        except subprocess.TimeoutExpired:
            raise BenchError(f"locust did not finish:\n{_tail(log_path)}") from None
    wall = time.monotonic() - started
    server_cpu = tree_cpu_s(server_pid) - server_cpu0
    locust_cpu = children_cpu_s() - locust_cpu0
    machine_cpu = machine_busy_s() - machine0
    database_cpu = pg_cpu() - pg_cpu0
    stats_csv = Path(f"{prefix}_stats.csv")
    # Locust exits 1 when any request failed; the CSV still holds the run, and failures are a column.
    if proc.returncode not in (0, 1) or not stats_csv.exists():
        raise BenchError(f"locust exited with code {proc.returncode}:\n{_tail(log_path)}")
    endpoints, total = parse_stats(stats_csv, duration_s)
    run = ServerRun(server, endpoints, total, server_cpu, locust_cpu, database_cpu, machine_cpu, wall,
                    parse_errors(Path(f"{prefix}_failures.csv")))
    note(f"{server}: {total.requests} requests, {total.rps:.0f} req/s, {total.failures} failures")
    return run


# -- report -----------------------------------------------------------------------------------------
def _ratio(a: float, b: float, digits: int = 2) -> str:
    return f"{a / b:.{digits}f}" if a > 0 and b > 0 else "-"


def _ms(v: float) -> str:
    return f"{v:.0f}"


def render(runs: Sequence[ServerRun], users: int, duration_s: int, failed: dict[str, str]) -> str:
    cores = os.cpu_count() or 1
    head = [
        f"Control API under load: {' vs '.join(SERVERS)} ({users} users, {duration_s} s per server, "
        f"{cores} CPU cores, Python {sys.version.split()[0]})",
        "Each server: the same app (control.api.asgi), one worker process, asyncio loop, same seeded "
        "database (fresh per server).",
        f"Locust (one process), the server and PostgreSQL share the {cores} cores: figures compare the "
        "servers under equal conditions, not either one's ceiling.",
        "req/s = requests / run time; p50 and p99 are locust's response-time percentiles (whole ms).",
    ]
    names: list[str] = []
    for r in runs:
        names += [e.name for e in r.endpoints if e.name not in names]
    names.append(TOTAL)
    rows = [[name, r.server, str(e.requests), f"{e.rps:.1f}", _ms(e.p50_ms), _ms(e.p99_ms), str(e.failures)]
            for name in names for r in runs if (e := r.stats(name)) is not None]
    parts = ["\n".join(head)]
    if rows:
        parts.append(table(["endpoint", "server", "requests", "req/s", "p50 ms", "p99 ms", "failures"], rows,
                           left=2))
    by_server = {r.server: r for r in runs}
    g, h = by_server.get("granian"), by_server.get("hypercorn")
    if g is not None and h is not None:
        ratio_rows = [[name, _ratio(ge.rps, he.rps), _ratio(ge.p99_ms, he.p99_ms)] for name in names
                      if (ge := g.stats(name)) is not None and (he := h.stats(name)) is not None]
        parts.append("granian / hypercorn (req/s above 1: granian serves more; p99 below 1: granian's tail "
                     "is shorter)\n" + table(["endpoint", "req/s ratio", "p99 ratio"], ratio_rows))
    cpu_rows = [[r.server, f"{r.wall_s:.1f}", _pct(r.server_cpu_s, r.wall_s), _pct(r.locust_cpu_s, r.wall_s),
                 _pct(r.database_cpu_s, r.wall_s),
                 _pct(r.other_cpu_s, r.wall_s),
                 _pct(r.machine_cpu_s, r.wall_s * cores)] for r in runs if r.wall_s > 0]
    if cpu_rows:
        cpu_head = ["server", "wall s", "server", "locust", "postgres", "other", "machine"]
        parts.append(f"CPU during each run (100% = one core; machine: busy share of all {cores} cores; "
                     "other: processes outside this benchmark)\n" + table(cpu_head, cpu_rows))
    for r in runs:
        if r.errors:
            parts.append(f"{r.server} failures:\n" + "\n".join(f"  {e}" for e in r.errors[:10]))
    for server, why in failed.items():
        parts.append(f"{server} FAILED: {why}")
    return "\n\n".join(parts)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else "-"


def compare(users: int, duration_s: int, servers: Sequence[str] = SERVERS) -> tuple[str, int]:
    """Run the comparison; (report, exit code: 1 if a server failed to start or to be measured)."""
    for tool in ("granian", "hypercorn", "locust"):
        if shutil.which(tool) is None and not _importable(tool):
            raise BenchError(f"{tool} is not installed (pip install -e '.[dev]')")
    started = time.monotonic()
    runs: list[ServerRun] = []
    failed: dict[str, str] = {}
    workdir = Path(tempfile.mkdtemp(prefix="autospeak-apibench-"))
    pg = EmbeddedPostgres(workdir / "pg", database="autospeak_bench")
    try:
        note("starting the embedded PostgreSQL ...")
        pg.start()
        admin_url = pg.url
        for server in servers:
            note(f"{server}: migrating and seeding a fresh database ...")
            seed = asyncio.run(seed_database(admin_url, f"bench_{server}"))
            try:
                with running_server(server, seed, workdir) as (proc, base):
                    runs.append(run_locust(server, base, seed, users, duration_s, workdir, proc.pid,
                                           postmaster_pid(pg.data_dir)))
            except BenchError as exc:
                note(f"{server}: FAILED: {exc}")
                failed[server] = str(exc).splitlines()[0]
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report = render(runs, users, duration_s, failed)
    report += f"\n\n(measured in {time.monotonic() - started:.0f} s)"
    return report, 1 if failed else 0


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run(users: int | None = None, duration_s: int | None = None, quick: bool = False) -> int:
    users = users if users is not None else (QUICK_USERS if quick else 20)
    duration_s = duration_s if duration_s is not None else (QUICK_DURATION_S if quick else 20)
    if users < 1 or duration_s < 1:
        print("--users and --duration must be at least 1", file=sys.stderr)
        return 2
    try:
        report, code = compare(users, duration_s)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report, flush=True)
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=None, help="concurrent locust users (default 20)")
    parser.add_argument("--duration", type=int, default=None, help="seconds of load per server (default 20)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_USERS} users for {QUICK_DURATION_S} s per server (a smoke run)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.api.compare",
                                     description=(__doc__ or "").split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.users, args.duration, args.quick)


if __name__ == "__main__":
    raise SystemExit(main())
