"""Bodies of the agent version and eval-run routes (control/api/routes/agent_versions.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from control.api.schemas import Input, Output

ConfigHash = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of an agent configuration")
OverrideReason = Field(default=None, min_length=1, max_length=500,
                       description="Owner only: publish without a passing eval run; written to the audit log")


class VersionPublish(Input):
    override_reason: str | None = OverrideReason


class VersionOut(Output):
    id: uuid.UUID
    agent_id: uuid.UUID
    version: int
    config_hash: str
    gate: str = Field(description="eval_run, or override (an owner's, in the audit log)")
    snapshot: dict[str, Any]
    created_at: datetime


class VersionList(Output):
    items: list[VersionOut]
    next_offset: int | None


class EvalRunCreate(Input):
    """Both JSON reports of `autospeak eval run` on the agent's suite; the API runs the gate's comparison
    itself (`autospeak eval gate`, same margins), so the recorded verdict is the gate's, not the client's.
    Only `suite`, `summary` and each run's `scenario` and `passed` are read: a report larger than the
    API's body limit (64 KiB by default) may be sent with just those."""

    config_hash: str = ConfigHash
    baseline: dict[str, Any] = Field(description="The report of the current configuration")
    candidate: dict[str, Any] = Field(description="The report of the configuration named by config_hash")
    margins: str | None = Field(default=None, max_length=300,
                                description='As `autospeak eval gate --margins`, e.g. "task_success=0.05"')


class EvalRunOut(Output):
    id: uuid.UUID
    agent_id: uuid.UUID
    config_hash: str
    suite: str
    passed: bool
    verdict: dict[str, Any]
    created_at: datetime


class EvalRunList(Output):
    items: list[EvalRunOut]
    next_offset: int | None
