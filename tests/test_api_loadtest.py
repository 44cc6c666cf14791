"""The ASGI entry point of the control API and `autospeak bench api` (granian vs hypercorn under locust).

Figures are measured, so only their presence is checked (rows, nonzero counts, no failures), never their
size. Locust is imported only in subprocesses: importing it monkey-patches the process with gevent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from db_fixtures import Database, embedded_database

from control.api import asgi
from loadtest.api import compare

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ["GET /healthz", "GET /v1/tenants/[tenant]/agents", "GET /v1/tenants/[tenant]/agents/[agent]",
             "POST /v1/tenants/[tenant]/agents", "PATCH /v1/tenants/[tenant]/agents/[agent]",
             "GET /openapi.json"]


@pytest.fixture(scope="module")
def db() -> Iterator[Database]:
    with embedded_database() as database:
        yield database


@pytest.fixture(scope="module")
def seed(db: Database) -> compare.Seed:
    return db.run(compare.seed_database(db.url, "asgi_factory"))


def _env(seed: compare.Seed, **extra: str) -> dict[str, str]:
    return {"AUTOSPEAK_REGION": "eu", "AUTOSPEAK_DATABASE_URL": seed.database_url, **extra}


def test_settings_come_from_the_environment() -> None:
    s = asgi.settings_from_env({
        "AUTOSPEAK_REGION": "eu", "AUTOSPEAK_DATABASE_URL": "postgresql+asyncpg://u@h/db",
        "AUTOSPEAK_CELLS": "eu=http://eu.test:1/, in=http://in.test:2,us=https://us.test",
        "AUTOSPEAK_RATE_PER_SECOND": "1000.5", "AUTOSPEAK_RATE_BURST": "2000",
    })
    assert (s.region, s.database_url) == ("eu", "postgresql+asyncpg://u@h/db")
    assert s.cells == {"eu": "http://eu.test:1", "in": "http://in.test:2", "us": "https://us.test"}
    assert (s.rate_per_second, s.rate_burst) == (1000.5, 2000)
    defaults = asgi.settings_from_env({"AUTOSPEAK_REGION": "in", "AUTOSPEAK_DATABASE_URL": "x://y"})
    assert defaults.cells == {} and defaults.rate_burst == 40


@pytest.mark.parametrize(("env", "message"), [
    ({}, "AUTOSPEAK_REGION and AUTOSPEAK_DATABASE_URL"),
    ({"AUTOSPEAK_REGION": "eu"}, "AUTOSPEAK_DATABASE_URL"),
    ({"AUTOSPEAK_REGION": "mars", "AUTOSPEAK_DATABASE_URL": "x://y"}, "mars"),
    ({"AUTOSPEAK_REGION": "eu", "AUTOSPEAK_DATABASE_URL": "x://y", "AUTOSPEAK_CELLS": "eu"}, "region=URL"),
    ({"AUTOSPEAK_REGION": "eu", "AUTOSPEAK_DATABASE_URL": "x://y", "AUTOSPEAK_CELLS": "eu=ftp://x"}, "ftp"),
    ({"AUTOSPEAK_REGION": "eu", "AUTOSPEAK_DATABASE_URL": "x://y", "AUTOSPEAK_RATE_BURST": "many"},
     "AUTOSPEAK_RATE_BURST must be an integer"),
    ({"AUTOSPEAK_REGION": "eu", "AUTOSPEAK_DATABASE_URL": "x://y", "AUTOSPEAK_RATE_PER_SECOND": "0"},
     "positive"),
])
def test_bad_environment_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        asgi.settings_from_env(env)


def test_factory_app_serves_healthz_and_an_authenticated_read(
        db: Database, seed: compare.Seed, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _env(seed).items():
        monkeypatch.setenv(name, value)
    app = asgi.app()

    async def go() -> list[Any]:
        # The test app runs the lifespan (before_serving opens the database), as an ASGI server does.
        async with app.test_app() as test_app:
            client = test_app.test_client()
            health = await client.get("/healthz")
            agents = await client.get(f"/v1/tenants/{seed.tenant_id}/agents",
                                      headers={"Authorization": f"Bearer {seed.token}"})
            anonymous = await client.get(f"/v1/tenants/{seed.tenant_id}/agents")
            return [health.status_code, await health.get_json(), agents.status_code,
                    len((await agents.get_json())["items"]), anonymous.status_code]

    assert db.run(go()) == [200, {"status": "ok", "region": "eu"}, 200, compare.SEED_AGENTS, 401]


def test_granian_serves_the_factory_with_its_lifespan(seed: compare.Seed) -> None:
    # running_server waits for /healthz and then an authenticated read, which needs the engine that
    # Quart's before_serving opens: it only answers 200 if granian ran the ASGI lifespan.
    with tempfile.TemporaryDirectory() as tmp, \
            compare.running_server("granian", seed, Path(tmp)) as (proc, base):
        status, body = compare._get(f"{base}/v1/tenants/{seed.tenant_id}/agents?limit=2", seed.token)
        assert status == 200 and len(json.loads(body)["items"]) == 2
        assert compare._get(f"{base}/openapi.json")[0] == 200
    assert proc.returncode is not None  # stopped with the block


def test_locustfile_defines_the_named_requests() -> None:
    probe = (
        "import json; from loadtest.api import locustfile as lf; "
        "print(json.dumps({'endpoints': list(lf.ENDPOINTS), "
        "'tasks': sorted({t.__name__ for t in lf.ApiUser.tasks}), "
        "'fast': issubclass(lf.ApiUser, __import__('locust').FastHttpUser)}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["fast"]
    assert info["tasks"] == sorted(["healthz", "list_agents", "get_agent", "create_agent", "patch_agent",
                                    "openapi"])
    assert info["endpoints"] == ENDPOINTS


# endpoint, server, requests, req/s, p50 ms, p99 ms, failures
ROW = re.compile(r"^((?:GET|POST|PATCH) \S+|all endpoints)\s+(granian|hypercorn)\s+(\d+)\s+([\d.]+)\s+"
                 r"(\d+)\s+(\d+)\s+(\d+)$")


def test_quick_comparison_runs_end_to_end() -> None:
    done = subprocess.run([sys.executable, "-m", "loadtest.api.compare", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=150,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [m.groups() for line in done.stdout.splitlines() if (m := ROW.match(line))]
    seen = {(name, server) for name, server, *_ in rows}
    assert seen == {(e, s) for e in [*ENDPOINTS, "all endpoints"] for s in compare.SERVERS}, done.stdout
    for name, server, requests, _rps, _p50, _p99, failures in rows:
        assert int(requests) > 0 and int(failures) == 0, (name, server)
    assert "granian / hypercorn" in done.stdout and "3 users, 4 s per server" in done.stdout
    assert "share the" in done.stdout  # the load generator's share of the cores is stated
    assert "granian: ready" in done.stderr and "hypercorn: ready" in done.stderr  # progress lines
