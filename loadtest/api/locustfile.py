"""Locust load for the control API's main endpoints, one tenant, one token.

    AUTOSPEAK_LOADTEST_TENANT=<tenant uuid> AUTOSPEAK_LOADTEST_TOKEN=<as_eu_... token> \\
        locust -f loadtest/api/locustfile.py --host http://127.0.0.1:8000

The token needs the admin role (create) and the server a rate limit above the offered load
(AUTOSPEAK_RATE_PER_SECOND / AUTOSPEAK_RATE_BURST, see control.api.asgi), or most requests measure
the 429 path. Each simulated user creates one agent of its own when it starts and reads and patches
that one, so users never contend on a row. Requests are named after their route (ids replaced by
placeholders) so that locust's statistics group by endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from typing import Any, Final

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment

ENV_TENANT: Final = "AUTOSPEAK_LOADTEST_TENANT"
ENV_TOKEN: Final = "AUTOSPEAK_LOADTEST_TOKEN"

# Request names, as they appear in locust's statistics (and in loadtest.api.compare's table).
HEALTHZ: Final = "GET /healthz"
LIST_AGENTS: Final = "GET /v1/tenants/[tenant]/agents"
GET_AGENT: Final = "GET /v1/tenants/[tenant]/agents/[agent]"
CREATE_AGENT: Final = "POST /v1/tenants/[tenant]/agents"
PATCH_AGENT: Final = "PATCH /v1/tenants/[tenant]/agents/[agent]"
OPENAPI: Final = "GET /openapi.json"
ENDPOINTS: Final = (HEALTHZ, LIST_AGENTS, GET_AGENT, CREATE_AGENT, PATCH_AGENT, OPENAPI)

log = logging.getLogger(__name__)


def agent_body(n: int) -> dict[str, Any]:
    """A realistic agent: persona, voice, providers, one tool and compliance settings."""
    return {
        "name": f"Load agent {n}",
        "vertical": "reception",
        "persona": "Warm, brief, never guesses. Books appointments and answers opening-hours questions.",
        "voice": {"provider": "espeak", "voice_id": "en-gb", "language": "en-GB", "speed": 1.0},
        "providers": {"stt": {"name": "pocketsphinx"}, "llm": {"name": "local"}, "tts": {"name": "espeak"}},
        "tools": [{"name": "create_booking", "description": "Book a slot", "requires_confirmation": True,
                   "parameters": {"type": "object", "properties": {"when": {"type": "string"}}}}],
        "compliance": {"record_calls": False, "retention_days": 30},
    }


def credentials() -> tuple[str, str]:
    """(tenant id, token) from the environment; a clear error when either is missing or malformed."""
    tenant = os.environ.get(ENV_TENANT, "").strip()
    token = os.environ.get(ENV_TOKEN, "").strip()
    if not tenant or not token:
        raise RuntimeError(f"set {ENV_TENANT} and {ENV_TOKEN} (a tenant id and an admin or owner token)")
    try:
        uuid.UUID(tenant)
    except ValueError:
        raise RuntimeError(f"{ENV_TENANT} is not a UUID: {tenant!r}") from None
    return tenant, token


@events.test_start.add_listener
def _check_credentials(environment: Environment, **_kwargs: Any) -> None:
    # Fail the run at once rather than letting every user die in on_start with the same error.
    try:
        credentials()
    except RuntimeError as exc:
        log.error("%s", exc)
        environment.process_exit_code = 2
        if environment.runner is not None:
            # Quit from a greenlet of its own: quitting inside the start event leaves the run going on.
            gevent.spawn(environment.runner.quit)


class ApiUser(FastHttpUser):
    # No think time: each user is a closed loop that sends its next request as soon as the last one
    # is answered, so the offered load follows what the server sustains (its throughput and latency).
    wait_time = constant(0)

    tenant: str = ""
    agent_id: str = ""
    created = 0

    def on_start(self) -> None:
        self.tenant, token = credentials()
        self.auth = {"Authorization": f"Bearer {token}"}
        self.prefix = f"/v1/tenants/{self.tenant}/agents"
        self.agent_id = self._create() or ""

    def _create(self) -> str | None:
        ApiUser.created += 1
        headers = {**self.auth, "Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        with self.client.post(self.prefix, data=json.dumps(agent_body(ApiUser.created)), headers=headers,
                              name=CREATE_AGENT, catch_response=True) as resp:
            if resp.status_code != 201:
                resp.failure(f"expected 201, got {resp.status_code}")
                return None
            return str(resp.json()["id"])

    @task(1)
    def healthz(self) -> None:
        self.client.get("/healthz", name=HEALTHZ)

    @task(4)
    def list_agents(self) -> None:
        self.client.get(f"{self.prefix}?limit=20", headers=self.auth, name=LIST_AGENTS)

    @task(4)
    def get_agent(self) -> None:
        if self.agent_id:
            self.client.get(f"{self.prefix}/{self.agent_id}", headers=self.auth, name=GET_AGENT)

    @task(1)
    def create_agent(self) -> None:
        self._create()

    @task(2)
    def patch_agent(self) -> None:
        if self.agent_id:
            body = json.dumps({"persona": f"Patched persona {uuid.uuid4().hex[:8]}"})
            self.client.patch(f"{self.prefix}/{self.agent_id}", data=body, name=PATCH_AGENT,
                              headers={**self.auth, "Content-Type": "application/json"})

    @task(1)
    def openapi(self) -> None:
        self.client.get("/openapi.json", name=OPENAPI)
